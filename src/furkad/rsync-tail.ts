// The idle tail of a pulling rsync client: once its receiver fork has exited, the client only sleeps until
// it notices (20 ms sleeps, rsync's main.c wait_process_with_flush) and exits. Seeing that moment lets furkad
// end a clean run at once instead of paying 20 ms per pull cycle (F9).
import { readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Watches the rsync client `pid` (only a real rsync binary: a wrapper script given as rsync_path must be left
 * to finish on its own) and calls `onTail` once, when the child it forked has exited. Does nothing where the
 * kernel has no /proc/PID/task/TID/children. Returns a function that stops watching.
 */
export function watchTail(pid: number, onTail: () => void, intervalMs = 1): () => void {
  const children = `/proc/${pid}/task/${pid}/children`;
  let forked = false;
  const timer = setInterval(() => {
    let list: string;
    try {
      list = readFileSync(children, 'latin1');
    } catch {
      stop(); // gone already, or no such file on this kernel
      return;
    }
    if (list.trim() !== '') {
      if (!forked && !isRsync(pid)) stop();
      forked = true;
      return;
    }
    if (!forked) return; // still connecting or listing: the receiver is not forked yet
    stop();
    onTail();
  }, intervalMs);
  const stop = (): void => clearInterval(timer);
  return stop;
}

function isRsync(pid: number): boolean {
  try {
    return path.basename(readlinkSync(`/proc/${pid}/exe`)) === 'rsync';
  } catch {
    return false;
  }
}

// The idle tail of a pulling rsync client: once its receiver fork has exited, the client only sleeps until
// it notices (20 ms sleeps, rsync's main.c wait_process_with_flush) and exits. Seeing that moment lets furkad
// end a clean run at once instead of paying 20 ms per pull cycle (F9).
import { readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Watches the rsync client `pid` (only a real rsync binary: a wrapper script given as rsync_path must be left
 * to finish on its own) and calls `onTail` once, when the child it forked has exited and been reaped. Does
 * nothing where the kernel has no /proc/PID/task/TID/children. Returns a function that stops watching.
 * `gate`: the `sh -c` script `pid` runs until it execs the client (rsync.ts); meanwhile it is waited for.
 */
export function watchTail(pid: number, onTail: () => void, gate?: string, intervalMs = 1): () => void {
  const children = `/proc/${pid}/task/${pid}/children`;
  let checked = false;
  const timer = setInterval(() => {
    try {
      if (!checked) {
        if (gate !== undefined && stillGated(pid, gate)) return undefined;
        if (!isRsync(pid)) return stop();
        checked = true;
      }
      if (readFileSync(children, 'latin1').trim() !== '') return undefined; // the receiver is still at work
      // No child now, and one has been reaped: the receiver is done. Judged from the kernel's counters rather
      // than from having seen the child, which a busy machine may never schedule this timer in time for.
      if (!reapedChild(pid)) return undefined; // still connecting or listing: the receiver is not forked yet
    } catch {
      return stop(); // gone already, or no such file on this kernel
    }
    stop();
    onTail();
    return undefined;
  }, intervalMs);
  const stop = (): void => clearInterval(timer);
  return stop;
}

/** Whether `pid` still runs `sh -c gate` (its exec of the client has not happened yet). */
function stillGated(pid: number, gate: string): boolean {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
  return argv[1] === '-c' && argv[2] === gate;
}

function isRsync(pid: number): boolean {
  return path.basename(readlinkSync(`/proc/${pid}/exe`)) === 'rsync';
}

/** Whether `pid` has waited for a child: cminflt (minor faults of reaped children, proc(5)) is above 0. */
function reapedChild(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // Fields after the command name (which may hold spaces and parentheses): state is field 3, cminflt 11.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11 - 3]) > 0;
}

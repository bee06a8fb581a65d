// A run that has stopped moving: furkad's own watch over an rsync client, since rsync's --timeout misses a
// detector daemon that goes silent in the middle of a file (F10, F1).
//
// Why rsync's own timeout does not fire (rsync 3.1 up to 3.5, io.c check_timeout): on the pulling side only the
// generator judges timeouts, never the receiver, and it counts its own writes as I/O. While the receiver waits
// for data that does not come, the generator sends the sender a keep-alive every timeout/2 s; the socket's
// send buffer takes those few bytes whether or not the peer reads them, so each one counts as I/O and the
// generator never times out. The run then waits until TCP gives up (many minutes) or the link returns.
//
// Progress is what the client and its receiver read (/proc/PID/io rchar): bytes from the socket, and from
// basis files. It moves with every chunk of a huge file, however slowly it comes. While the daemon is silent it
// moves by a few bytes only: the generator's keep-alives to the sender are writes, but the client and its
// receiver each read a 4-byte message over their own pipe every timeout/2 s; counted as progress, those kept a run
// whose daemon had gone silent waiting for ever (hostile tester h15: a PPU ramdisk out of inodes, the daemon
// silent after "building file list"). So only MIN_PROGRESS_BYTES or more within the timeout count, or a process
// of the run starting or ending. The client's output counts too.
import { readFileSync } from 'node:fs';

export interface StallWatch {
  /** Something came from the run (output): progress. */
  progress(): void;
  stop(): void;
}

/** The children of `pid` (rsync's client runs one thread; its receiver is its only child). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** `pid` and every process below it: a wrapper given as rsync_path has the client, and its receiver, below it. */
export function descendantsOf(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length && all.length < 64; i++) all.push(...childrenOf(all[i]!));
  return all;
}

/**
 * The fewest bytes a run's processes must read within the timeout to count as moving: far above the keep-alives of a
 * silent daemon (4 bytes per process every timeout/2 s), far below any file list entry or data block a working run
 * reads in that time.
 */
export const MIN_PROGRESS_BYTES = 512;

/** Bytes `pid` has read so far, or undefined if the kernel does not say (no /proc/PID/io, or gone). */
function bytesRead(pid: number): number | undefined {
  try {
    const m = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Watches the rsync client `pid` and calls `onStall` once if, for `timeoutMs`, it and the processes below it read fewer
 * than MIN_PROGRESS_BYTES together, none of them starts or ends, and `progress()` is not called. Where the kernel keeps no read counts (no /proc/PID/io), only output
 * and the receiver starting or ending count, so a silent run is still ended, and so is one receiving a single
 * file for longer than that (see README).
 */
export function watchStall(pid: number, timeoutMs: number, onStall: () => void, intervalMs = Math.max(50, Math.min(1000, timeoutMs / 4))): StallWatch {
  /** The run's processes, and the bytes they had read, when it last made progress. */
  let pids: string | undefined;
  let base = 0;
  let since = performance.now();
  const timer = setInterval(() => {
    const now = descendantsOf(pid);
    const read = now.reduce((n, p) => n + (bytesRead(p) ?? 0), 0);
    const these = now.join(' ');
    if (these !== pids || read - base >= MIN_PROGRESS_BYTES) {
      pids = these;
      base = read;
      since = performance.now();
      return;
    }
    if (performance.now() - since < timeoutMs) return;
    stop();
    onStall();
  }, intervalMs);
  timer.unref(); // the run's own process keeps furkad running, never this watch
  const stop = (): void => clearInterval(timer);
  return { progress: () => { since = performance.now(); }, stop };
}

/** Write system calls `pid` has made so far, or undefined if the kernel does not say. */
function writesMade(pid: number): number | undefined {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Calls `onSilent` if, `ms` after the rsync client `pid` was released, its daemon has not greeted it: a daemon that
 * accepted the connection and says nothing (stopped, hung), which rsync's --contimeout (the TCP connect only) does
 * not cover. Told by the client's writes: its own greeting is its one write until the daemon's comes, then it names
 * the module at once. Called while `pid` still waits at its gate (the shell that execs rsync, which writes nothing),
 * so that what was written before (the spawn's own) is left out. Anything else that writes in the process tree (a
 * wrapper as rsync_path), or no counts from the kernel, and nothing is ever called: watchStall alone watches the run.
 */
export function watchGreeting(pid: number, ms: number, onSilent: () => void): () => void {
  const before = writesMade(pid);
  const timer = setTimeout(() => {
    const writes = descendantsOf(pid).map(writesMade);
    if (before === undefined || writes.some((w) => w === undefined)) return;
    if ((writes as number[]).reduce((a, b) => a + b, 0) - before <= 1) onSilent();
  }, ms);
  timer.unref();
  return () => clearTimeout(timer);
}


// A copy thread: makes the copies its storage hands it, a batch at a time (G3, BENCHMARKS.md). See copy-threads.ts.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { copyMany } from './copier.js';
import type { CopyWork } from './copy-job.js';
import { prepareCopies } from './copy-check.js';
import { COUNTER_PROGRESS, COUNTER_TID, replyOf, type ThreadData } from './copy-threads.js';

const { base, options, counters } = workerData as ThreadData;
const shared = new Int32Array(counters);

/** This thread's id in the kernel ('<pid>/task/<tid>', Linux 3.17 on), for its CPU time (copy-watch.ts); 0 unknown. */
function kernelTid(): number {
  try {
    return Number(/\/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
Atomics.store(shared, COUNTER_TID, kernelTid());

/**
 * Copy threads yield the CPU to delivery (F9): online processing waits on the file reaching the PPU ramdisk, not on
 * its storage copy, and a copy is checksummed (I2), which on a machine with few cores would otherwise take
 * the CPU furkad needs to place the next image (measured on 2 cores: agent p50 at 100 Hz x 1 MB several times
 * worse). Linux keeps a nice value per thread: setpriority(PRIO_PROCESS, 0) here lowers this thread only, never
 * grimseld's event loop (its bus, status and fill guards). Lowering one's own priority needs no privilege.
 */
export const COPY_THREAD_NICE = 10;
try {
  setPriority(0, COPY_THREAD_NICE);
} catch {
  // Not fatal: the copies are the same, only their share of a busy CPU differs.
}

// Every step counted where the main thread can read it while this one is inside a copy (copy-watch.ts).
const progress = (): void => { Atomics.add(shared, COUNTER_PROGRESS, 1); };

// Hashers and the attribute module are made once, before the first copy (copy-check.ts); a batch that comes
// sooner waits for them. Should they fail, every copy fails, said and retried (nothing is copied unchecked).
const ready = prepareCopies();
parentPort!.on('message', (jobs: CopyWork[]) => {
  // A throw out of copyMany is an unhandled rejection, which ends the thread as a throw did: the copies are retried.
  void ready.then(
    () => parentPort!.postMessage(copyMany(jobs, base, options, progress).map(replyOf)),
    (e: unknown) => parentPort!.postMessage(jobs.map(() => replyOf(e instanceof Error ? e : new Error(String(e))))),
  );
});

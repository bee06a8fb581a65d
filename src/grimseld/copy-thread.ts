// A copy thread: makes the copies its storage hands it, a batch at a time (SPEC G3, issue 7). See copy-threads.ts.
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { copyMany, type CopyJob } from './copier.js';
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

// Every step counted where the main thread can read it while this one is inside a copy (copy-watch.ts).
const progress = (): void => { Atomics.add(shared, COUNTER_PROGRESS, 1); };

parentPort!.on('message', (jobs: CopyJob[]) => {
  parentPort!.postMessage(copyMany(jobs, base, options, progress).map(replyOf));
});

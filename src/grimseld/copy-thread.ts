// A copy thread: makes the copies its storage hands it, a batch at a time (SPEC G3, issue 7). See copy-threads.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { copyMany, type CopyJob } from './copier.js';
import { replyOf, type CopyThreadData } from './copy-threads.js';

const { base, options } = workerData as CopyThreadData;

parentPort!.on('message', (jobs: CopyJob[]) => {
  parentPort!.postMessage(copyMany(jobs, base, options).map(replyOf));
});

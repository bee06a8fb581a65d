// A copy thread: makes the copies its storage hands it, one at a time (SPEC G3, issue 7). See copy-threads.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { copyAtomic, SourceChanged } from './copier.js';
import { UnsafePath } from './safe-path.js';
import type { CopyRequest, CopyResponse, CopyThreadData } from './copy-threads.js';

const { base, options } = workerData as CopyThreadData;

parentPort!.on('message', (job: CopyRequest) => {
  let reply: CopyResponse;
  try {
    reply = { outcome: copyAtomic(job.src, job.dest, base, options, job.expect, job.sweep) };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const kind = err instanceof SourceChanged ? 'SourceChanged' : err instanceof UnsafePath ? 'UnsafePath' : 'Error';
    reply = { error: { kind, message: err.message, code: (err as NodeJS.ErrnoException).code } };
  }
  parentPort!.postMessage(reply);
});

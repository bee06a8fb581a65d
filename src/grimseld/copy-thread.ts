// A copy thread: makes the copies its storage hands it, a batch at a time (SPEC G3, issue 7). See copy-threads.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { copyMany, SourceChanged, type CopyJob } from './copier.js';
import { UnsafePath } from './safe-path.js';
import type { CopyReply, CopyThreadData } from './copy-threads.js';

const { base, options } = workerData as CopyThreadData;

parentPort!.on('message', (jobs: CopyJob[]) => {
  const replies: CopyReply[] = copyMany(jobs, base, options).map((r) => {
    if (!(r instanceof Error)) return { outcome: r };
    const kind = r instanceof SourceChanged ? 'SourceChanged' : r instanceof UnsafePath ? 'UnsafePath' : 'Error';
    return { error: { kind, message: r.message, code: (r as NodeJS.ErrnoException).code } };
  });
  parentPort!.postMessage(replies);
});

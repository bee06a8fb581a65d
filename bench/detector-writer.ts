// A detector writing images at a fixed rate, in a worker thread so that its work never delays the arrival watch.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { placeImage } from '../test/fixtures/files.js';

export interface WriteJob {
  dir: string;
  prefix: string;
  count: number;
  hz: number;
  bytes: number;
}

/** Wall-clock ms at which each file got its final name, by file name. */
export type NamedAt = Map<string, number>;

export function fileName(job: WriteJob, i: number): string {
  return `${job.prefix}_${String(i).padStart(6, '0')}.raw`;
}

/** Writes `job` in a worker; resolves once the last file is named. */
export function writeAtRate(job: WriteJob): Promise<NamedAt> {
  return new Promise((resolve, reject) => {
    const w = new Worker(__filename, { workerData: job });
    w.once('message', (m: Array<[string, number]>) => resolve(new Map(m)));
    w.once('error', reject);
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`detector writer exited with ${code}`)); });
  });
}

async function writeInWorker(job: WriteJob): Promise<void> {
  const data = new Uint8Array(job.bytes).fill(0x5a);
  const period = 1000 / job.hz;
  const start = performance.now();
  const named: Array<[string, number]> = [];
  for (let i = 0; i < job.count; i++) {
    const due = start + i * period;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait - 0.5));
    while (performance.now() < due) { /* the last half millisecond, for an even rate */ }
    const name = fileName(job, i);
    named.push([name, placeImage(job.dir, name, data).namedAtMs]);
  }
  parentPort!.postMessage(named);
}

if (!isMainThread && parentPort) void writeInWorker(workerData as WriteJob);

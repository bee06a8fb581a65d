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

function writeInWorker(job: WriteJob): void {
  const data = new Uint8Array(job.bytes).fill(0x5a);
  const period = 1000 / job.hz;
  // Sleeps with a futex (Atomics.wait, allowed in a worker), which wakes within a few tens of µs: a timer
  // wakes only to the ms, and spinning out the rest cost a third of a core at 500 Hz, taken from the
  // processes under test on a 2-core machine.
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const start = performance.now();
  const named: Array<[string, number]> = [];
  for (let i = 0; i < job.count; i++) {
    const due = start + i * period;
    const wait = due - performance.now();
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
    const name = fileName(job, i);
    named.push([name, placeImage(job.dir, name, data).namedAtMs]);
  }
  parentPort!.postMessage(named);
}

if (!isMainThread && parentPort) writeInWorker(workerData as WriteJob);

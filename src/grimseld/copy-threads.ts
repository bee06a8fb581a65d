// The threads a storage copies with (G1, G3; BENCHMARKS.md). Each makes whole copies with blocking system
// calls, as a cp process would, so a small file costs at most one message each way instead of a dozen
// trips through libuv's pool, and a batch of them one message. A thread is started when a writer has a
// copy to make and none is free, and ends after `idleMs` without work: each costs about 7 MB, which an
// idle grimseld (or one whose storage is not mounted) does not keep. Each busy thread is watched for a
// copy that makes no progress (copy-watch.ts): one that spins stops the watchdog's pings.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { ChecksumMismatch, SourceChanged, type CopyOptions, type CopyResult } from './copier.js';
import type { MismatchAt } from './copy-check.js';
import type { CopyWork } from './copy-job.js';
import { CopyWatch, type CopyVerdict } from './copy-watch.js';
import { UnsafePath } from '../common/dir-fd.js';
import { NotMounted, RefusedDir } from './copy-dirs.js';

export interface CopyThreadData {
  base: string;
  options: CopyOptions;
}

/** What a thread is started with: its storage's data, and counters it shares with the main thread. */
export interface ThreadData extends CopyThreadData {
  /** Int32 counters: COUNTER_PROGRESS (steps done, copier.ts Progress) and COUNTER_TID (its kernel thread id, 0 unknown). */
  counters: SharedArrayBuffer;
}
export const COUNTER_PROGRESS = 0;
export const COUNTER_TID = 1;

/** A busy thread that has made no progress for a while (see copy-watch.ts). */
export interface Stall {
  verdict: Exclude<CopyVerdict, 'moving'>;
  stalledMs: number;
  /** First report of this stall with this verdict. */
  news: boolean;
}

/** Linux's USER_HZ: /proc reports CPU times in ticks of 10 ms on every architecture Node runs on. */
const MS_PER_TICK = 10;

/** CPU time (user + system) a thread of this process has used, from /proc; undefined if unknown. */
function threadCpuMs(tid: number): number | undefined {
  if (tid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    // After the command in parentheses: state (field 3) … utime (14), stime (15).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * MS_PER_TICK : undefined;
  } catch {
    return undefined;
  }
}

/** What became of one copy, as it crosses from the thread (an Error's class does not cross by itself). */
export type CopyReply =
  | CopyResult
  | { error: { kind: 'SourceChanged' | 'UnsafePath' | 'NotMounted' | 'RefusedDir' | 'Error'; message: string; code: string | undefined } }
  | { error: { kind: 'ChecksumMismatch'; message: string; at: MismatchAt; expected: string; got: string } };

/** One copy's outcome as the thread sends it (replyOf) and as the storage gets it back (outcomeOf). */
export function replyOf(r: CopyResult | Error): CopyReply {
  if (!(r instanceof Error)) return r;
  if (r instanceof ChecksumMismatch) return { error: { kind: 'ChecksumMismatch', message: r.message, at: r.at, expected: r.expected, got: r.got } };
  const kind = r instanceof SourceChanged ? 'SourceChanged' : r instanceof UnsafePath ? 'UnsafePath' : r instanceof NotMounted ? 'NotMounted'
    : r instanceof RefusedDir ? 'RefusedDir' : 'Error';
  return { error: { kind, message: r.message, code: (r as NodeJS.ErrnoException).code } };
}

function outcomeOf(r: CopyReply): CopyResult | Error {
  if ('outcome' in r) return r;
  const e = r.error;
  if (e.kind === 'ChecksumMismatch') return new ChecksumMismatch(e.at, e.expected, e.got, e.message);
  const err = e.kind === 'SourceChanged' ? new SourceChanged(e.message) : e.kind === 'UnsafePath' ? new UnsafePath(e.message)
    : e.kind === 'NotMounted' ? new NotMounted(e.message) : e.kind === 'RefusedDir' ? new RefusedDir(e.message) : new Error(e.message);
  if (e.code !== undefined) (err as NodeJS.ErrnoException).code = e.code;
  return err;
}

const THREAD_SCRIPT = path.join(__dirname, 'copy-thread.js');
/** A copy thread holds a job and a few paths: a small heap bounds what a fault could make it hold. */
const LIMITS = { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 };

interface Thread {
  worker: Worker;
  counters: Int32Array;
  watch: CopyWatch;
  /** Settles the batch in hand: its replies, or the thread's death. */
  settle: ((r: CopyReply[] | Error) => void) | undefined;
  idleTimer?: NodeJS.Timeout | undefined;
}

export class CopyThreads {
  #idle: Thread[] = [];
  #all = new Set<Thread>();

  constructor(private readonly data: CopyThreadData, private readonly idleMs = 10_000) {}

  /** Threads alive now (busy or idle). */
  get size(): number {
    return this.#all.size;
  }

  /** Makes one copy in a free thread (started if none is free). Rejects as copyAtomic would throw. */
  async copy(job: CopyWork): Promise<CopyResult> {
    const [r] = await this.copyMany([job]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /** Makes a batch of copies in one free thread (see copyMany); each outcome or error in the jobs' order. */
  async copyMany(jobs: CopyWork[]): Promise<Array<CopyResult | Error>> {
    let t: Thread;
    try {
      t = this.#idle.pop() ?? this.#start();
    } catch (e) {
      // No thread to be had (the system refused one): these copies fail and are retried, nothing is lost.
      const err = new Error(`cannot start a copy thread for ${this.data.base}: ${(e as Error).message}`);
      return jobs.map(() => err);
    }
    clearTimeout(t.idleTimer);
    t.worker.ref();
    const replies = await new Promise<CopyReply[] | Error>((resolve) => {
      t.settle = resolve;
      t.worker.postMessage(jobs);
    });
    t.settle = undefined;
    if (replies instanceof Error) return jobs.map(() => replies); // the thread died; it is gone from the pool
    this.#release(t);
    return replies.map(outcomeOf);
  }

  /** Ends every thread; call once no copy is in hand any more. */
  /**
   * Busy threads that have made no progress for STALL_MS, each with its verdict (copy-watch.ts). Called now
   * and then (main.ts); a thread stuck in a copy never answers a message, so it is read from the counters.
   */
  stalls(now: number): Stall[] {
    const out: Stall[] = [];
    for (const t of this.#all) {
      if (!t.settle) {
        t.watch.idle();
        continue;
      }
      const { verdict, stalledMs, news } = t.watch.look(now, Atomics.load(t.counters, COUNTER_PROGRESS),
        threadCpuMs(Atomics.load(t.counters, COUNTER_TID)));
      if (verdict !== 'moving') out.push({ verdict, stalledMs, news });
    }
    return out;
  }

  async close(): Promise<void> {
    const threads = [...this.#all];
    this.#all.clear();
    this.#idle = [];
    await Promise.all(threads.map((t) => {
      clearTimeout(t.idleTimer);
      return t.worker.terminate();
    }));
  }

  #start(): Thread {
    const counters = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
    const workerData: ThreadData = { ...this.data, counters };
    const worker = new Worker(THREAD_SCRIPT, { workerData, resourceLimits: LIMITS, stdout: false, stderr: false });
    const t: Thread = { worker, counters: new Int32Array(counters), watch: new CopyWatch(), settle: undefined };
    worker.on('message', (r: CopyReply[]) => t.settle?.(r));
    const died = (why: string): void => {
      this.#forget(t);
      t.settle?.(new Error(`copy thread for ${this.data.base} ${why}; the copy is retried`));
    };
    worker.on('error', (e) => died(`failed: ${e.message}`));
    worker.on('exit', (code) => died(`exited with ${code}`));
    this.#all.add(t);
    return t;
  }

  #release(t: Thread): void {
    if (!this.#all.has(t)) return;
    this.#idle.push(t);
    t.worker.unref(); // an idle thread never keeps the process alive
    t.idleTimer = setTimeout(() => {
      this.#forget(t);
      void t.worker.terminate();
    }, this.idleMs);
    t.idleTimer.unref();
  }

  #forget(t: Thread): void {
    clearTimeout(t.idleTimer);
    this.#all.delete(t);
    this.#idle = this.#idle.filter((x) => x !== t);
  }
}

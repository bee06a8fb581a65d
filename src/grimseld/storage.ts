// One storage and its pool of writers (G1, G13): a slow or unmounted storage never holds back another.
import { replicatedPath } from '../common/paths.js';
import { sleep, wakeOrAbort } from '../common/abort.js';
import type { CopyJob as ThreadJob, CopyOptions, CopyOutcome, CopyResult, Identity } from './copier.js';
import { CopyThreads, type Stall } from './copy-threads.js';
import { isMountPoint } from './mounts.js';
import type { StorageConfig, StorageType } from './config.js';

export interface CopyJob {
  id: number;
  /** Where to read the file now (ramdisk original, or the internal copy once the original is gone). */
  src: string;
  /** The trusted directory `src` is reached from without following links (copier.ts CopyJob). */
  root: string;
  /** Path replicated below the storage target (G4). */
  rel: string;
  expect: Identity;
  /** An earlier attempt may have died mid-copy (replay, retry): remove its temp file first. */
  sweep?: boolean;
  /** The file's checksum (hex) the copy is checked against (I2), and its shift and detector (I3): copier.ts. */
  checksum?: ThreadJob['checksum'];
  provenance?: ThreadJob['provenance'];
}

export interface CopyReport {
  storage: Storage;
  job: CopyJob;
  /** Where the copy is: `destOf(job.rel)`, or a numbered name beside a different file there (copier.ts). */
  dest: string;
  outcome: CopyOutcome | Error;
  /** A copy made or found: what the copier says of it (checksum, verified, attributes). */
  result?: CopyResult;
}

export interface StorageEvents {
  /** A copy finished or failed. */
  report(r: CopyReport): void;
  /** Result of every mount check of a storage with a mount point. */
  mountState(storage: Storage, mounted: boolean): void;
  /** Makes the job for file `id` at the moment it is copied (where to read it now); undefined drops it (nothing left to do). */
  resolve(storage: Storage, id: number, sweep: boolean): CopyJob | undefined;
}

const MOUNT_RECHECK_MS = 1000;
/**
 * A writer takes up to this many waiting files, or this many bytes, at once (BENCHMARKS.md): they are flushed
 * together (copyMany). Only what waits beyond one file per writer is batched, so a live stream is still
 * copied a file at a time, each the moment it comes.
 */
const BATCH_FILES = 16;
const BATCH_BYTES = 16 << 20;

export class Storage {
  readonly type: StorageType;
  readonly target: string;
  readonly mountpoint: string | undefined;
  /** File ids, negated when an earlier attempt may have left a temp file: 8 bytes a queued file (BENCHMARKS.md). */
  #queue: number[] = [];
  #head = 0;
  #wake: Array<() => void> = [];
  #active = 0;
  #mounted: { ok: boolean; at: number } | undefined;
  readonly #threads: CopyThreads;

  constructor(
    readonly id: string,
    config: StorageConfig,
    readonly writers: number,
    options: CopyOptions,
    private readonly events: StorageEvents,
  ) {
    this.type = config.type;
    this.target = config.target;
    this.mountpoint = config.mountpoint;
    this.#threads = new CopyThreads({ base: this.target, options });
  }

  get queued(): number {
    return this.#queue.length - this.#head + this.#active;
  }

  /** Copy threads of this storage that have made no progress for a while (copy-watch.ts). */
  stalls(now: number): Stall[] {
    return this.#threads.stalls(now);
  }

  destOf(rel: string): string {
    return replicatedPath(this.target, rel);
  }

  /** Queues file `id` (`sweep`: an earlier attempt may have died mid-copy). */
  enqueue(id: number, sweep = false): void {
    this.#queue.push(sweep ? -id : id);
    this.#wake.shift()?.();
  }

  #take(): number | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const job = this.#queue[this.#head++];
    // Compact now and then instead of shift()ing an array of 100 000 jobs.
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return job;
  }

  /** The next jobs for one writer (see BATCH_FILES); undefined when nothing waits. */
  #takeBatch(): CopyJob[] | undefined {
    const first = this.#take();
    if (first === undefined) return undefined;
    const share = Math.floor((this.#queue.length - this.#head) / this.writers);
    const jobs: CopyJob[] = [];
    let bytes = 0;
    for (let queued: number | undefined = first; queued !== undefined; queued = this.#take()) {
      const job = this.events.resolve(this, Math.abs(queued), queued < 0);
      if (job) {
        jobs.push(job);
        bytes += job.expect.size;
      }
      if (jobs.length >= Math.min(BATCH_FILES, 1 + share) || bytes >= BATCH_BYTES) break;
    }
    return jobs;
  }

  /** G13: a configured mount point must be mounted before anything is written (checked at most once a second). */
  async #mountOk(): Promise<boolean> {
    if (!this.mountpoint) return true;
    const now = Date.now();
    if (!this.#mounted || now - this.#mounted.at > MOUNT_RECHECK_MS) {
      this.#mounted = { ok: await isMountPoint(this.mountpoint), at: now };
      this.events.mountState(this, this.#mounted.ok);
    }
    return this.#mounted.ok;
  }

  /** Runs `writers` workers until `signal` aborts; a copy in flight finishes (or rolls back) first. */
  async run(signal: AbortSignal): Promise<void> {
    const worker = async (): Promise<void> => {
      while (!signal.aborted) {
        if (!(await this.#mountOk())) {
          await sleep(MOUNT_RECHECK_MS, signal);
          continue;
        }
        const batch = this.#takeBatch();
        if (batch === undefined) {
          await wakeOrAbort((wake) => this.#wake.push(wake), signal);
          continue;
        }
        if (batch.length === 0) continue;
        this.#active += batch.length;
        const dests = batch.map((job) => this.destOf(job.rel));
        const outcomes = await this.#threads.copyMany(batch.map((job, i): ThreadJob => ({ src: job.src, root: job.root, dest: dests[i]!, expect: job.expect,
          sweep: job.sweep ?? false, checksum: job.checksum, ...(job.provenance ? { provenance: job.provenance } : {}) })));
        this.#active -= batch.length;
        batch.forEach((job, i) => {
          const r = outcomes[i]!;
          this.events.report(r instanceof Error ? { storage: this, job, dest: dests[i]!, outcome: r } : { storage: this, job, dest: r.dest, outcome: r.outcome, result: r });
        });
      }
    };
    try {
      await Promise.all(Array.from({ length: this.writers }, worker));
    } finally {
      await this.#threads.close();
    }
  }
}

// One storage's pool of writers (G1, G13): each takes jobs from the storage's feed (the dispatcher's plan,
// mount check included), copies them in a copy thread, and hands the results back to the feed, once each.
// A slow or unmounted storage never holds back another. Knows nothing of records, retries or messages.
import { reportOf } from './copy-job.js';
import type { CopyOptions, CopyResult } from './copier.js';
import type { CopyWork } from './copy-job.js';
import { CopyThreads, type Stall } from './copy-threads.js';
import type { JobFeed } from './dispatcher.js';
import type { StorageInfo } from './storage-info.js';

/** What makes the copies (copy-threads.ts; a fake in tests). */
export interface Copier {
  /** Each job's result or error, in the jobs' order. */
  copyMany(jobs: CopyWork[]): Promise<Array<CopyResult | Error>>;
  stalls(now: number): Stall[];
  /** Ends the copier; called once no copy is in hand any more. */
  close(): Promise<void>;
}

export class Storage {
  readonly #threads: Copier;

  constructor(
    readonly info: StorageInfo,
    options: CopyOptions,
    private readonly feed: JobFeed,
    copier?: Copier,
  ) {
    this.#threads = copier ?? new CopyThreads({ base: info.target, options });
  }

  get id(): string {
    return this.info.id;
  }

  /** Copy threads of this storage that have made no progress for a while (copy-watch.ts). */
  stalls(now: number): Stall[] {
    return this.#threads.stalls(now);
  }

  /** Runs the writers until `signal` aborts; a copy in flight finishes (or rolls back) first. */
  async run(signal: AbortSignal): Promise<void> {
    const writer = async (): Promise<void> => {
      while (!signal.aborted) {
        const batch = await this.feed.next(signal);
        if (batch.length === 0) continue;
        const outcomes = await this.#threads.copyMany(batch);
        this.feed.done(batch.map((job, i) => reportOf(job, outcomes[i]!)));
      }
    };
    try {
      await Promise.all(Array.from({ length: this.info.writers }, writer));
    } finally {
      await this.#threads.close();
    }
  }
}

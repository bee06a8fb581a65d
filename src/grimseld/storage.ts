// One storage and its pool of writers (SPEC G1): a slow storage never holds back another.
import { replicatedPath } from '../common/paths.js';
import { copyAtomic, type CopyOptions, type CopyOutcome } from './copier.js';
import type { StorageConfig, StorageType } from './config.js';

export interface CopyJob {
  /** Real path of the file on the ramdisk (or wherever an operator added it from). */
  src: string;
  /** Path replicated below the storage target (G4). */
  rel: string;
  usertime: bigint;
}

export interface CopyReport {
  storage: Storage;
  job: CopyJob;
  dest: string;
  outcome: CopyOutcome | Error;
}

export class Storage {
  readonly type: StorageType;
  readonly target: string;
  #queue: CopyJob[] = [];
  #head = 0;
  #wake: Array<() => void> = [];
  #active = 0;

  constructor(
    readonly id: string,
    config: StorageConfig,
    readonly writers: number,
    private readonly options: CopyOptions,
    private readonly report: (r: CopyReport) => void,
  ) {
    this.type = config.type;
    this.target = config.target;
  }

  get queued(): number {
    return this.#queue.length - this.#head + this.#active;
  }

  enqueue(job: CopyJob): void {
    this.#queue.push(job);
    this.#wake.shift()?.();
  }

  #take(): CopyJob | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const job = this.#queue[this.#head++];
    // Compact now and then instead of shift()ing an array of 100 000 jobs.
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return job;
  }

  /** Runs `writers` workers until `signal` aborts; a copy in flight finishes (or rolls back) first. */
  async run(signal: AbortSignal): Promise<void> {
    const worker = async (): Promise<void> => {
      while (!signal.aborted) {
        const job = this.#take();
        if (!job) {
          await new Promise<void>((r) => {
            this.#wake.push(r);
            signal.addEventListener('abort', () => r(), { once: true });
          });
          continue;
        }
        this.#active++;
        const dest = replicatedPath(this.target, job.rel);
        let outcome: CopyOutcome | Error;
        try {
          outcome = await copyAtomic(job.src, dest, this.target, this.options);
        } catch (e) {
          outcome = e instanceof Error ? e : new Error(String(e));
        }
        this.#active--;
        this.report({ storage: this, job, dest, outcome });
      }
    };
    await Promise.all(Array.from({ length: this.writers }, worker));
  }
}

// One storage's queue of files still to copy there, by record id (BENCHMARKS.md: 8 bytes a queued file), in
// the order they came, and the writers waiting for one.
import { wakeOrAbort } from '../common/abort.js';

export class CopyQueue {
  /** Record id × 2, plus 1 when an earlier attempt may have left a temp file: one number a file. */
  #entries: number[] = [];
  #head = 0;
  #wake: Array<() => void> = [];

  get length(): number {
    return this.#entries.length - this.#head;
  }

  /** Queues file `id` (`sweep`: an earlier attempt may have died mid-copy) and wakes a waiting writer. */
  push(id: number, sweep: boolean): void {
    this.#entries.push(id * 2 + (sweep ? 1 : 0));
    this.#wake.shift()?.();
  }

  /** The next file, or undefined when none waits. */
  take(): { id: number; sweep: boolean } | undefined {
    if (this.#head >= this.#entries.length) return undefined;
    const e = this.#entries[this.#head++]!;
    // Compact now and then instead of shift()ing an array of 100 000 entries.
    if (this.#head > 4096 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    return { id: Math.floor(e / 2), sweep: e % 2 === 1 };
  }

  /** The ids waiting, in order. */
  ids(): number[] {
    return this.#entries.slice(this.#head).map((e) => Math.floor(e / 2));
  }

  /** Resolves when a file is queued (or `signal` aborts). */
  wait(signal: AbortSignal): Promise<void> {
    return wakeOrAbort((wake) => this.#wake.push(wake), signal);
  }
}

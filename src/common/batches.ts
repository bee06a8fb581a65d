// Group commit for a stream of items: what arrives while a batch is being handled forms the next batch, so a
// burst costs one write (one fsync, one hand-over) per batch, and a lone item waits for nothing.

export class Batches<T> {
  #waiting: T[] = [];
  #chain: Promise<void> = Promise.resolve();

  /** `handle` takes one batch at a time, in order; it deals with its own errors (it must not reject). */
  constructor(private readonly handle: (batch: T[]) => Promise<void>, private readonly max = Infinity) {}

  /** Items not yet handed to `handle`. */
  get waiting(): number {
    return this.#waiting.length;
  }

  push(...items: T[]): void {
    if (items.length === 0) return;
    const idle = this.#waiting.length === 0;
    this.#waiting.push(...items);
    if (idle) this.#chain = this.#chain.then(() => this.#take());
  }

  /** Resolves once everything pushed so far has been handled (batches chained meanwhile included). */
  async drained(): Promise<void> {
    for (let chain = this.#chain; ; chain = this.#chain) {
      await chain;
      if (chain === this.#chain) return;
    }
  }

  async #take(): Promise<void> {
    const batch = this.#waiting.splice(0, this.max);
    if (this.#waiting.length > 0) this.#chain = this.#chain.then(() => this.#take());
    await this.handle(batch);
  }
}

// The licence's effect on detectors (F8): unlimited parallel transfers, or one at a time across all detectors.

/** A counting gate every detector loop passes for each rsync run; `limit` Infinity costs nothing. */
export class TransferGate {
  #active = 0;
  #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Resolves with the function that lets the next waiting run go. */
  async acquire(): Promise<() => void> {
    if (this.#active >= this.limit) await new Promise<void>((r) => this.#waiting.push(r));
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      // FIFO: a detector waiting longest runs next, so none starves in single-thread mode.
      this.#waiting.shift()?.();
    };
  }
}

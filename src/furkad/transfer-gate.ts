// The licence's effect on detectors (F8): unlimited parallel transfers, or one at a time across all detectors.

/** A counting gate every detector loop passes for each rsync run; `limit` Infinity costs nothing. */
export class TransferGate {
  #active = 0;
  #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Another run waits for a slot: a run that could go on taking new work should end instead (fairness, F8). */
  get contended(): boolean {
    return this.#waiting.length > 0;
  }

  /** Resolves with the function that lets the next waiting run go. */
  async acquire(): Promise<() => void> {
    // A released slot passes straight to the longest waiter, so a newcomer cannot slip in between.
    if (this.#active < this.limit) this.#active++;
    else await new Promise<void>((r) => this.#waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    };
  }
}

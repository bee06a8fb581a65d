// How many requests each peer of a service gets answered at once and then per second (G9): a script that asks
// now and then is answered at once; a peer that floods waits its turn, one request at a time, so answering never
// takes the one event loop from the copies' bookkeeping, whatever a local user sends.

export class RequestBudget {
  /** Per peer: answers left (a fraction while refilling) and when that was reckoned. */
  readonly #peers = new Map<string, { left: number; at: number }>();

  constructor(readonly burst: number, readonly perSecond: number, private readonly now: () => number = () => performance.now()) {}

  /** Takes one answer for `peer`: 0 when it may be answered now, else the milliseconds until it may. */
  take(peer: string): number {
    const now = this.now();
    const b = this.#peers.get(peer) ?? { left: this.burst, at: now };
    b.left = Math.min(this.burst, b.left + ((now - b.at) * this.perSecond) / 1000);
    b.at = now;
    if (b.left >= 1) {
      b.left -= 1;
      this.#peers.set(peer, b);
      this.#forgetFull(now);
      return 0;
    }
    this.#peers.set(peer, b);
    return Math.ceil(((1 - b.left) * 1000) / this.perSecond);
  }

  /** Drops peers whose budget is whole again (they are as new), once the table grows: it stays small. */
  #forgetFull(now: number): void {
    if (this.#peers.size < 256) return;
    for (const [peer, b] of this.#peers) {
      if (b.left + ((now - b.at) * this.perSecond) / 1000 >= this.burst) this.#peers.delete(peer);
    }
  }
}

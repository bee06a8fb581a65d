// Live file records by id (issue 7). Ids are handed out in order and files mostly leave in order, so an
// array indexed from the oldest live id costs 8 bytes a file where a Map costs about 37. A straggler (a
// record that stays while many younger ones come and go) moves to a Map, so that the array never spans
// many more ids than it holds.

/** Ids the array may span beyond twice what it holds before its oldest entries move to the Map. */
const SLACK = 4096;

export class IdIndex<T> {
  /** `#slots[i]` is id `#base + i`; entries before `#head` are gone or moved to `#stragglers`. */
  #slots: Array<T | undefined> = [];
  #base = 0;
  #head = 0;
  #inSlots = 0;
  #stragglers = new Map<number, T>();

  get size(): number {
    return this.#inSlots + this.#stragglers.size;
  }

  get(id: number): T | undefined {
    const i = id - this.#base;
    return (i >= this.#head && i < this.#slots.length ? this.#slots[i] : undefined) ?? this.#stragglers.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  set(id: number, value: T): void {
    if (this.#inSlots === 0) {
      this.#slots = [];
      this.#base = id;
      this.#head = 0;
    }
    const i = id - this.#base;
    if (i < this.#head || this.#stragglers.has(id)) {
      this.#stragglers.set(id, value); // older than the array (a journal replayed out of order)
      return;
    }
    while (this.#slots.length < i) this.#slots.push(undefined);
    if (this.#slots[i] === undefined) this.#inSlots++;
    this.#slots[i] = value;
    this.#spread();
  }

  delete(id: number): boolean {
    const i = id - this.#base;
    if (i >= this.#head && i < this.#slots.length && this.#slots[i] !== undefined) {
      this.#slots[i] = undefined;
      this.#inSlots--;
      this.#skipGone();
      this.#spread();
      return true;
    }
    return this.#stragglers.delete(id);
  }

  /** Stragglers first (they are the oldest), then the array, each in id order as far as it goes. */
  *values(): Generator<T> {
    yield* this.#stragglers.values();
    for (let i = this.#head; i < this.#slots.length; i++) {
      const v = this.#slots[i];
      if (v !== undefined) yield v;
    }
  }

  #skipGone(): void {
    while (this.#head < this.#slots.length && this.#slots[this.#head] === undefined) this.#head++;
    // Drop the gone front now and then rather than shifting the array at every delete.
    if (this.#head > SLACK && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
  }

  /** Moves the oldest entries to the Map while the array spans far more ids than it holds. */
  #spread(): void {
    while (this.#slots.length - this.#head > 2 * this.#inSlots + SLACK) {
      const v = this.#slots[this.#head]!;
      this.#stragglers.set(this.#base + this.#head, v);
      this.#slots[this.#head] = undefined;
      this.#inSlots--;
      this.#skipGone();
    }
  }
}

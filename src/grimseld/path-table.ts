// The source paths of the catalog's records (BENCHMARKS.md): UTF-8 bytes back to back in one buffer, found again by
// path through an open-addressing hash table. A path costs its bytes and about 14 more, where a string and
// a Map entry cost ~120 (and a string built by path arithmetic is a tree of pieces until something copies
// it); a path read back is always a fresh string of its own.

const INITIAL_PATHS = 256;

/** FNV-1a over `bytes[from, to)`. */
function hashOf(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

export class PathTable {
  #bytes: Buffer = Buffer.alloc(INITIAL_PATHS * 64);
  /** Path `i` is `#bytes[#start[i], #start[i + 1])`. */
  #start: Uint32Array = new Uint32Array(INITIAL_PATHS + 1);
  #length = 0;
  /** Open addressing, linear probing: path number + 1, 0 for an empty bucket; at most half full. */
  #buckets: Uint32Array = new Uint32Array(2 * INITIAL_PATHS);

  /** Paths held: they are numbered 0 .. length - 1 in the order they came. */
  get length(): number {
    return this.#length;
  }

  /** Appends `path` as number `length`. */
  push(path: string): void {
    const size = Buffer.byteLength(path, 'utf8');
    const from = this.#start[this.#length]!;
    if (from + size > this.#bytes.length) this.#bytes = grownBuffer(this.#bytes, from, from + size);
    this.#bytes.write(path, from, size, 'utf8');
    if (this.#length + 2 > this.#start.length) this.#start = grown(this.#start, this.#length + 2);
    this.#start[++this.#length] = from + size;
    if (2 * this.#length > this.#buckets.length) this.#rehash(this.#buckets.length * 2);
    else this.#index(this.#length - 1);
  }

  /** Path `i`, from its byte `from` on. */
  at(i: number, from = 0): string {
    return this.#bytes.toString('utf8', this.#start[i]! + from, this.#start[i + 1]);
  }

  /** The highest-numbered path equal to `path` for which `wanted` holds. */
  find(path: string, wanted: (i: number) => boolean): number | undefined {
    const key = Buffer.from(path, 'utf8');
    const mask = this.#buckets.length - 1;
    let found: number | undefined;
    for (let b = hashOf(key, 0, key.length) & mask; this.#buckets[b] !== 0; b = (b + 1) & mask) {
      const i = this.#buckets[b]! - 1;
      if ((found === undefined || i > found) && this.#equals(i, key) && wanted(i)) found = i;
    }
    return found;
  }

  /** Keeps only the paths numbered `keep`, renumbered 0, 1, … in that order. */
  retain(keep: ArrayLike<number>): void {
    if (keep.length === 0 && this.#buckets.length === 2 * INITIAL_PATHS) {
      // Nothing left and nothing grown: start over in place.
      this.#length = 0;
      this.#buckets.fill(0);
      return;
    }
    let bytes = 0;
    for (let k = 0; k < keep.length; k++) bytes += this.#start[keep[k]! + 1]! - this.#start[keep[k]!]!;
    const paths = Math.max(INITIAL_PATHS, Math.ceil(keep.length * 1.5));
    const next = Buffer.alloc(Math.max(INITIAL_PATHS * 64, Math.ceil(bytes * 1.5)));
    const start = new Uint32Array(paths + 1);
    for (let k = 0; k < keep.length; k++) {
      const i = keep[k]!;
      const end = start[k]! + this.#bytes.copy(next, start[k]!, this.#start[i]!, this.#start[i + 1]!);
      start[k + 1] = end;
    }
    this.#bytes = next;
    this.#start = start;
    this.#length = keep.length;
    let buckets = 2 * INITIAL_PATHS;
    while (buckets < 2 * paths) buckets *= 2;
    this.#rehash(buckets);
  }

  #equals(i: number, key: Buffer): boolean {
    const from = this.#start[i]!;
    const to = this.#start[i + 1]!;
    return to - from === key.length && this.#bytes.compare(key, 0, key.length, from, to) === 0;
  }

  #index(i: number): void {
    const mask = this.#buckets.length - 1;
    let b = hashOf(this.#bytes, this.#start[i]!, this.#start[i + 1]!) & mask;
    while (this.#buckets[b] !== 0) b = (b + 1) & mask;
    this.#buckets[b] = i + 1;
  }

  #rehash(buckets: number): void {
    this.#buckets = new Uint32Array(buckets);
    for (let i = 0; i < this.#length; i++) this.#index(i);
  }
}

/** A copy of typed array `a` with room for at least `need` elements, and at least half as many again. */
export function grown<T extends Float64Array | Uint32Array | Uint16Array | Uint8Array>(a: T, need: number): T {
  const next = new (a.constructor as new (n: number) => T)(Math.max(need, Math.ceil(a.length * 1.5)));
  next.set(a);
  return next;
}

function grownBuffer(b: Buffer, used: number, need: number): Buffer {
  const next = Buffer.alloc(Math.max(need, Math.ceil(b.length * 1.5)));
  b.copy(next, 0, 0, used);
  return next;
}

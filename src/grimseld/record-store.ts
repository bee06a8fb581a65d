// The catalog's file records in columns (BENCHMARKS.md). As objects, 100 000 pending files cost ~300 bytes each (an
// object, four boxed numbers, a path string, a Map entry); here a file is a row: its path's bytes and ~75
// more. Ids are handed out in order, so rows are appended in id order and found by binary search; rows of
// settled records are dropped once they outnumber the live ones (all at once when none is left live).
// A checksum is its 16 bytes in a column (a hex string would be ~60), a detector a number naming it.
import { grown, PathTable } from './path-table.js';
import { tagged, untagged } from '../common/checksum.js';
import { FileRecord, RecordGone, type NewFile, type Origin } from './file-record.js';
import type { PackedStates } from './copy-states.js';

const INITIAL_ROWS = 256;
/** Settled rows are dropped only this many at a time or more (or when nothing is left live). */
const DROP_AT_LEAST = 1024;

/** The numbers of a file's identity, four a row. */
const NUMBERS = { size: 0, mtimeMs: 1, ino: 2, dev: 3 } as const;
const NUMBERS_PER_ROW = 4;
export type NumberField = keyof typeof NUMBERS;

const ORIGINS: readonly Origin[] = ['present', 'linked', 'deleted', 'gone'];
/** A row's bits: 0-1 ramdisk origin, 2-3 internal origin (indexes into ORIGINS), then these. */
const ORIGIN_SHIFT = { ramdisk: 0, internal: 2 } as const;
const ON_RAMDISK = 1 << 4;
const LIVE = 1 << 5;
/** The row's checksum bytes are set. */
const HAS_CHECKSUM = 1 << 6;
/** An operator's file (NewFile.copyOnly). */
const COPY_ONLY = 1 << 7;
/** XXH3-128: 16 bytes a row. */
const CHECKSUM_BYTES = 16;

/** Where `rel` starts in `src`, in bytes, when it is the end of it after a '/' (always, for checked paths); else 0. */
function relOffset(src: string, rel: string): number {
  const at = src.length - rel.length;
  return at > 0 && src[at - 1] === '/' && src.endsWith(rel) ? Buffer.byteLength(src) - Buffer.byteLength(rel) : 0;
}

export class RecordStore {
  /** Rows in use, live or settled. */
  #rows = 0;
  #live = 0;
  /** Bumped whenever rows move: a walk in progress finds its place again. */
  #generation = 0;
  /** Ascending. */
  #ids: Float64Array = new Float64Array(INITIAL_ROWS);
  #numbers: Float64Array = new Float64Array(INITIAL_ROWS * NUMBERS_PER_ROW);
  #bits: Uint8Array = new Uint8Array(INITIAL_ROWS);
  /** relOffset() of the row's paths; 0: `rel` is kept in #oddRels. */
  #relAt: Uint32Array = new Uint32Array(INITIAL_ROWS);
  #oddRels = new Map<number, string>();
  /** The checksum's bytes (I1), valid where the row has HAS_CHECKSUM. */
  #checksums: Uint8Array = new Uint8Array(INITIAL_ROWS * CHECKSUM_BYTES);
  /** 1 + the index of the row's detector in #detectorNames; 0: none. */
  #detectors: Uint16Array = new Uint16Array(INITIAL_ROWS);
  /** Detector ids as they came (a few; never dropped). */
  #detectorNames: string[] = [];
  #detectorIndex = new Map<string, number>();
  /** Small integers (a Smi each: no allocation) up to 15 storages, byte arrays beyond (copy-states.ts). */
  #states: PackedStates[] = [];
  /** The shift's bigint, shared by all of its records. */
  #usertimes: bigint[] = [];
  #paths = new PathTable();

  /** Live records. */
  get size(): number {
    return this.#live;
  }

  /** Takes a new record; `id` must not be live already. */
  add(id: number, usertime: bigint, f: NewFile, states: PackedStates, onRamdisk: boolean): FileRecord {
    if (this.has(id)) throw new Error(`file record ${id} is held already`);
    const inOrder = this.#rows === 0 || id > this.#ids[this.#rows - 1]!;
    if (this.#rows === this.#ids.length) this.#grow();
    const r = this.#rows++;
    this.#ids[r] = id;
    const n = r * NUMBERS_PER_ROW;
    this.#numbers[n + NUMBERS.size] = f.size;
    this.#numbers[n + NUMBERS.mtimeMs] = f.mtimeMs;
    this.#numbers[n + NUMBERS.ino] = f.ino;
    this.#numbers[n + NUMBERS.dev] = f.dev;
    // A checksum of another algorithm, or malformed, is not kept: the file counts as one without (the intake says so).
    const sum = f.checksum === undefined ? undefined : untagged(f.checksum);
    if (sum !== undefined) this.#checksums.set(Buffer.from(sum, 'hex'), r * CHECKSUM_BYTES);
    this.#detectors[r] = f.detector ? this.#detectorNumber(f.detector) : 0;
    this.#bits[r] = LIVE | (onRamdisk ? ON_RAMDISK : 0) | (sum !== undefined ? HAS_CHECKSUM : 0) | (f.copyOnly ? COPY_ONLY : 0);
    this.#relAt[r] = relOffset(f.src, f.rel);
    if (this.#relAt[r] === 0) this.#oddRels.set(id, f.rel);
    this.#states[r] = states;
    this.#usertimes[r] = usertime;
    this.#paths.push(f.src);
    this.#live++;
    // Only a journal written out of order gets here (ours are in id order); sorting restores the order.
    if (!inOrder) this.#keep(this.#liveRows().sort((a, b) => this.#ids[a]! - this.#ids[b]!));
    return new FileRecord(id, r, this);
  }

  /** Settles a record: it is no longer held, and every handle on it throws from now on. */
  remove(rec: FileRecord): void {
    const r = this.#rowOf(rec);
    this.#bits[r] = this.#bits[r]! & ~LIVE;
    this.#states[r] = 0; // a byte array (more than 15 storages) goes now
    this.#oddRels.delete(rec.id);
    this.#live--;
    const settled = this.#rows - this.#live;
    if (this.#live === 0 || (settled >= DROP_AT_LEAST && settled > this.#live)) this.#keep(this.#liveRows());
  }

  get(id: number): FileRecord | undefined {
    const r = this.#find(id);
    return r >= 0 && this.#isLive(r) ? new FileRecord(id, r, this) : undefined;
  }

  has(id: number): boolean {
    const r = this.#find(id);
    return r >= 0 && this.#isLive(r);
  }

  /** Whether `rec` is still held (not settled). */
  holds(rec: FileRecord): boolean {
    return this.#liveRowOf(rec) >= 0;
  }

  /** The live record taken last for source path `src`. */
  latestAt(src: string): FileRecord | undefined {
    const r = this.#paths.find(src, (row) => this.#isLive(row));
    return r === undefined ? undefined : new FileRecord(this.#ids[r]!, r, this);
  }

  /** Live records in id order, as they are when reached; records taken after the walk began are left out. */
  *values(): Generator<FileRecord> {
    if (this.#rows === 0) return;
    const lastId = this.#ids[this.#rows - 1]!;
    let generation = this.#generation;
    let r = 0;
    let id = -Infinity;
    for (;;) {
      if (generation !== this.#generation) {
        generation = this.#generation;
        r = this.#firstAbove(id);
      }
      while (r < this.#rows && !this.#isLive(r)) r++;
      if (r >= this.#rows || this.#ids[r]! > lastId) return;
      id = this.#ids[r]!;
      yield new FileRecord(id, r, this);
      r++;
    }
  }

  src(rec: FileRecord): string {
    return this.#paths.at(this.#rowOf(rec));
  }

  rel(rec: FileRecord): string {
    const r = this.#rowOf(rec);
    const at = this.#relAt[r]!;
    return at > 0 ? this.#paths.at(r, at) : this.#oddRels.get(rec.id)!;
  }

  number(rec: FileRecord, field: NumberField): number {
    return this.#numbers[this.#rowOf(rec) * NUMBERS_PER_ROW + NUMBERS[field]]!;
  }

  checksum(rec: FileRecord): string | undefined {
    const r = this.#rowOf(rec);
    if ((this.#bits[r]! & HAS_CHECKSUM) === 0) return undefined;
    return tagged(Buffer.from(this.#checksums.buffer, this.#checksums.byteOffset + r * CHECKSUM_BYTES, CHECKSUM_BYTES).toString('hex'));
  }

  /** Gives a record without a checksum the one its first complete read found (I2); `checksum` tagged. */
  setChecksum(rec: FileRecord, checksum: string): void {
    const sum = untagged(checksum);
    if (sum === undefined) throw new Error(`not a checksum grimseld keeps: ${checksum}`);
    const r = this.#rowOf(rec);
    this.#checksums.set(Buffer.from(sum, 'hex'), r * CHECKSUM_BYTES);
    this.#bits[r] = this.#bits[r]! | HAS_CHECKSUM;
  }

  detector(rec: FileRecord): string | undefined {
    const n = this.#detectors[this.#rowOf(rec)]!;
    return n === 0 ? undefined : this.#detectorNames[n - 1];
  }

  /** The number a detector id is kept as (0: too many ids to number, kept as none). */
  #detectorNumber(id: string): number {
    let n = this.#detectorIndex.get(id);
    if (n === undefined) {
      if (this.#detectorNames.length >= 0xffff) return 0;
      n = this.#detectorNames.push(id);
      this.#detectorIndex.set(id, n);
    }
    return n;
  }

  usertime(rec: FileRecord): bigint {
    return this.#usertimes[this.#rowOf(rec)]!;
  }

  states(rec: FileRecord): PackedStates {
    return this.#states[this.#rowOf(rec)]!;
  }

  setStates(rec: FileRecord, p: PackedStates): void {
    this.#states[this.#rowOf(rec)] = p;
  }

  onRamdisk(rec: FileRecord): boolean {
    return (this.#bits[this.#rowOf(rec)]! & ON_RAMDISK) !== 0;
  }

  copyOnly(rec: FileRecord): boolean {
    return (this.#bits[this.#rowOf(rec)]! & COPY_ONLY) !== 0;
  }

  origin(rec: FileRecord, where: 'ramdisk' | 'internal'): Origin {
    return ORIGINS[(this.#bits[this.#rowOf(rec)]! >> ORIGIN_SHIFT[where]) & 3]!;
  }

  setOrigin(rec: FileRecord, where: 'ramdisk' | 'internal', o: Origin): void {
    const r = this.#rowOf(rec);
    const shift = ORIGIN_SHIFT[where];
    this.#bits[r] = (this.#bits[r]! & ~(3 << shift)) | (ORIGINS.indexOf(o) << shift);
  }

  #isLive(r: number): boolean {
    return (this.#bits[r]! & LIVE) !== 0;
  }

  /** The record's row, or -1 once it is settled. */
  #liveRowOf(rec: FileRecord): number {
    let r = rec.row;
    if (!(r < this.#rows && this.#ids[r] === rec.id)) rec.row = r = this.#find(rec.id);
    return r >= 0 && this.#isLive(r) ? r : -1;
  }

  #rowOf(rec: FileRecord): number {
    const r = this.#liveRowOf(rec);
    if (r < 0) throw new RecordGone(rec.id);
    return r;
  }

  /** The first row whose id is above `id`. */
  #firstAbove(id: number): number {
    let lo = 0;
    let hi = this.#rows;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ids[mid]! <= id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The row of `id`, live or settled, or -1. */
  #find(id: number): number {
    const r = this.#firstAbove(id) - 1;
    return r >= 0 && this.#ids[r] === id ? r : -1;
  }

  #liveRows(): number[] {
    const rows: number[] = [];
    for (let r = 0; r < this.#rows; r++) if (this.#isLive(r)) rows.push(r);
    return rows;
  }

  #grow(): void {
    const rows = Math.ceil(this.#ids.length * 1.5);
    this.#ids = grown(this.#ids, rows);
    this.#numbers = grown(this.#numbers, rows * NUMBERS_PER_ROW);
    this.#bits = grown(this.#bits, rows);
    this.#relAt = grown(this.#relAt, rows);
    this.#checksums = grown(this.#checksums, rows * CHECKSUM_BYTES);
    this.#detectors = grown(this.#detectors, rows);
  }

  /** Keeps only `rows`, in that order, in columns sized for them. */
  #keep(rows: number[]): void {
    this.#generation++;
    const n = rows.length;
    const capacity = Math.max(INITIAL_ROWS, Math.ceil(n * 1.5));
    if (n === 0 && this.#ids.length === INITIAL_ROWS) {
      // Nothing left and nothing grown: start over in place (a daemon that keeps up gets here all the time).
      this.#rows = 0;
      this.#states.length = 0;
      this.#usertimes.length = 0;
      this.#paths.retain([]);
      return;
    }
    const ids = new Float64Array(capacity);
    const numbers = new Float64Array(capacity * NUMBERS_PER_ROW);
    const bits = new Uint8Array(capacity);
    const relAt = new Uint32Array(capacity);
    const checksums = new Uint8Array(capacity * CHECKSUM_BYTES);
    const detectors = new Uint16Array(capacity);
    const states: PackedStates[] = [];
    const usertimes: bigint[] = [];
    rows.forEach((r, k) => {
      ids[k] = this.#ids[r]!;
      numbers.set(this.#numbers.subarray(r * NUMBERS_PER_ROW, (r + 1) * NUMBERS_PER_ROW), k * NUMBERS_PER_ROW);
      bits[k] = this.#bits[r]!;
      relAt[k] = this.#relAt[r]!;
      checksums.set(this.#checksums.subarray(r * CHECKSUM_BYTES, (r + 1) * CHECKSUM_BYTES), k * CHECKSUM_BYTES);
      detectors[k] = this.#detectors[r]!;
      states.push(this.#states[r]!);
      usertimes.push(this.#usertimes[r]!);
    });
    this.#paths.retain(rows);
    this.#ids = ids;
    this.#numbers = numbers;
    this.#bits = bits;
    this.#relAt = relAt;
    this.#checksums = checksums;
    this.#detectors = detectors;
    this.#states = states;
    this.#usertimes = usertimes;
    this.#rows = n;
  }
}

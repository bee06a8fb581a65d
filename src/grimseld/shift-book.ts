// Per shift and storage: pending, copied, failed (G9), and how many of the copies were verified (I2, I5).
// The last history_max_entries shifts are kept, and an older one as long as files of it are still to be copied
// (pending, or failed and to be tried again): their counts would otherwise be lost. A shift let go is told to the
// catalog, which keeps its counts a while for late files (catalog.ts, pruneSettled). A read model of the catalog:
// only the catalog writes it (catalog.ts, which makes it and moves its counts as it records each change);
// everyone else reads it as a ShiftView (catalog.shifts).
import type { StatusRow, StatusVerifiedRow, VerifiedRow } from '../dbus/grimsel-interface.js';

export interface Counts {
  pending: number;
  copied: number;
  failed: number;
  /** Of `copied`: copies read back and found to have the file's checksum (I2). Not a state of its own. */
  verified: number;
}

/** The counters a file is in, one at a time. */
export type State = Exclude<keyof Counts, 'verified'>;

export interface ShiftEntry {
  usertime: bigint;
  uid: number;
  gid: number;
  counts: Map<string, Counts>;
  /** Files of the shift still to be copied on some storage: pending, or failed and to be tried again. */
  open: number;
}

/** What the status (D-Bus, TCP, metrics, the notify line) reads of the shift book. */
export type ShiftView = Pick<ShiftBook, 'current' | 'get' | 'query' | 'queryVerified' | 'queryStatusVerified'>;

export class ShiftBook {
  /** Oldest first; the last one is the current shift. */
  #shifts: ShiftEntry[] = [];

  /** `dropped`: told of each shift trim() lets go, with its owner (the catalog keeps its counts a while, G9). */
  constructor(private readonly storageIds: string[], private readonly maxEntries: number,
    private readonly dropped: (s: ShiftEntry) => void = () => undefined) {}

  get current(): ShiftEntry | undefined {
    return this.#shifts[this.#shifts.length - 1];
  }

  get(usertime: bigint): ShiftEntry | undefined {
    return this.#shifts.find((s) => s.usertime === usertime);
  }

  /**
   * Records a shift (idempotent); shifts are ordered by start time whatever order they are learned in. Nothing
   * is dropped here: the caller trims once the shift's files are counted (a replay at its end), or a shift kept
   * for its open files would go before they are known.
   */
  begin(usertime: bigint, uid: number, gid: number): ShiftEntry {
    const known = this.get(usertime);
    if (known) return known;
    const entry: ShiftEntry = {
      usertime, uid, gid, open: 0,
      counts: new Map(this.storageIds.map((id) => [id, { pending: 0, copied: 0, failed: 0, verified: 0 }])),
    };
    this.#shifts.push(entry);
    this.#shifts.sort((a, b) => (a.usertime < b.usertime ? -1 : a.usertime > b.usertime ? 1 : 0));
    return entry;
  }

  /**
   * Moves one file of `usertime` on `storage` between counters (`from` undefined: a new pending file; `to`
   * undefined: one taken back, its record never written down).
   */
  count(usertime: bigint, storage: string, from: State | undefined, to: State | undefined): void {
    const c = this.get(usertime)?.counts.get(storage);
    if (!c) return;
    if (from) c[from]--;
    if (to) c[to]++;
  }

  /**
   * A file of `usertime` is to be copied (1) or is done on every storage (-1). A shift older than the last
   * history_max_entries goes when its last open file is done, not at some later shift's start.
   */
  opened(usertime: bigint, delta: 1 | -1): void {
    const s = this.get(usertime);
    if (!s) return;
    s.open += delta;
    if (s.open === 0) this.trim();
  }

  /** One more (`delta` 1) or one fewer (-1) verified copy of `usertime` on `storage`. */
  verified(usertime: bigint, storage: string, delta: 1 | -1): void {
    const c = this.get(usertime)?.counts.get(storage);
    if (c) c.verified += delta;
  }

  /** Adds counts wholesale (settled files restored from the journal). */
  add(usertime: bigint, storage: string, c: Counts): void {
    const mine = this.get(usertime)?.counts.get(storage);
    if (!mine) return;
    mine.pending += c.pending;
    mine.copied += c.copied;
    mine.failed += c.failed;
    mine.verified += c.verified;
  }

  get size(): number {
    return this.#shifts.length;
  }

  /** [usertime, uid, gid] of every retained shift, oldest first. */
  shiftsOldestFirst(): Array<[bigint, number, number]> {
    return this.#shifts.map((s) => [s.usertime, s.uid, s.gid]);
  }

  /** Newest shift first; `n` < 0 means all. */
  query(n: number): StatusRow[] {
    const shifts = [...this.#shifts].reverse().slice(0, n < 0 ? undefined : n);
    return shifts.flatMap((s) => [...s.counts].map(([id, c]): StatusRow =>
      [s.usertime, s.uid, s.gid, id, BigInt(c.pending), BigInt(c.copied), BigInt(c.failed)]));
  }

  /** As query(), the verified copies (I5): what QueryVerified answers, in the same order. */
  queryVerified(n: number): VerifiedRow[] {
    const shifts = [...this.#shifts].reverse().slice(0, n < 0 ? undefined : n);
    return shifts.flatMap((s) => [...s.counts].map(([id, c]): VerifiedRow => [s.usertime, s.uid, s.gid, id, BigInt(c.verified)]));
  }

  /** As query(), each row with its verified copies last, read in one go (QueryStatusVerified): verified ≤ copied. */
  queryStatusVerified(n: number): StatusVerifiedRow[] {
    const shifts = [...this.#shifts].reverse().slice(0, n < 0 ? undefined : n);
    return shifts.flatMap((s) => [...s.counts].map(([id, c]): StatusVerifiedRow =>
      [s.usertime, s.uid, s.gid, id, BigInt(c.pending), BigInt(c.copied), BigInt(c.failed), BigInt(c.verified)]));
  }

  /** Keeps the last history_max_entries shifts, and of the older ones those with files still to be copied. */
  trim(): void {
    const older = this.#shifts.length - this.maxEntries;
    if (older <= 0) return;
    const gone = new Set(this.#shifts.filter((s, i) => i < older && s.open <= 0));
    if (!gone.size) return;
    this.#shifts = this.#shifts.filter((s) => !gone.has(s));
    for (const s of gone) this.dropped(s);
  }
}

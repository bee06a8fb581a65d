// Every file grimseld is responsible for, its copy state per storage and what became of its ramdisk and
// internal originals (SPEC G2, G5-G7, G9, G12). Changes are journaled before they count; counts are
// derived from these states, so after a replay they are right by construction.
import type { Journal, JournalRecord } from './journal.js';
import type { ShiftBook } from './shift-book.js';

export type CopyState = 'pending' | 'copied' | 'failed';
/** What became of a file's original on the ramdisk (or of its internal copy). */
export type Origin = 'present' | 'linked' | 'deleted' | 'gone';

/** A file as grimseld takes it: where it is, what to replicate, and what it must still be when copied. */
export interface NewFile {
  src: string;
  rel: string;
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

export interface FileRecord extends NewFile {
  id: number;
  usertime: bigint;
  states: Map<string, CopyState>;
  /** Storages whose copy failed for good (the source is gone): not retried. */
  permanent: Set<string>;
  /** Whether `src` lies on the PPU ramdisk (cleanup and the fill guard may touch it). */
  onRamdisk: boolean;
  ramdisk: Origin;
  internal: Origin;
}

export class Catalog {
  readonly files = new Map<number, FileRecord>();
  /** Live record per source path: a re-sent delivery of the same file is recognised (furkad retries). */
  #bySrc = new Map<string, FileRecord>();
  /** Counts of records already resolved and dropped, per shift: they live on in the snapshot. */
  #settled = new Map<bigint, Map<string, [number, number]>>();
  #nextId = 1;

  constructor(
    private readonly journal: Journal,
    private readonly book: ShiftBook,
    private readonly storageIds: string[],
    private readonly ramdiskRoot: string,
    private readonly hasExternal: boolean,
  ) {}

  /** Rebuilds state from journal records (idempotent: a record seen twice changes nothing). */
  replay(records: JournalRecord[]): void {
    for (const r of records) {
      switch (r.t) {
        case 'shift': {
          this.book.begin(BigInt(r.u), r.uid, r.gid);
          if (r.counts) this.#settled.set(BigInt(r.u), new Map(Object.entries(r.counts)));
          break;
        }
        case 'file': {
          if (this.files.has(r.id)) break;
          const rec = this.#newRecord(r.id, BigInt(r.u), r);
          this.#nextId = Math.max(this.#nextId, r.id + 1);
          this.files.set(rec.id, rec);
          this.#bySrc.set(rec.src, rec);
          break;
        }
        case 'copied':
        case 'failed': {
          const rec = this.files.get(r.id);
          if (!rec) break;
          rec.states.set(r.s, r.t);
          if (r.t === 'failed' && r.permanent) rec.permanent.add(r.s);
          if (r.t === 'copied') rec.permanent.delete(r.s);
          break;
        }
        case 'ramdisk': {
          const rec = this.files.get(r.id);
          if (rec) rec.ramdisk = r.state;
          break;
        }
        case 'internal': {
          const rec = this.files.get(r.id);
          if (rec) rec.internal = r.state;
          break;
        }
      }
    }
    for (const [u, perStorage] of this.#settled) {
      for (const [s, [copied, failed]] of perStorage) this.book.add(u, s, { pending: 0, copied, failed });
    }
    for (const rec of [...this.files.values()]) {
      for (const [s, st] of rec.states) this.book.count(rec.usertime, s, undefined, st);
      this.#settleIfDone(rec);
    }
  }

  #newRecord(id: number, usertime: bigint, f: NewFile): FileRecord {
    return {
      id, usertime, src: f.src, rel: f.rel, size: f.size, mtimeMs: f.mtimeMs, ino: f.ino, dev: f.dev,
      states: new Map(this.storageIds.map((s) => [s, 'pending' as CopyState])),
      permanent: new Set(),
      onRamdisk: f.src.startsWith(`${this.ramdiskRoot.replace(/\/+$/, '')}/`),
      ramdisk: 'present',
      internal: 'present',
    };
  }

  /** Journals a shift start (once). */
  async shift(usertime: bigint, uid: number, gid: number): Promise<void> {
    if (this.book.get(usertime)) return;
    this.book.begin(usertime, uid, gid);
    await this.journal.append({ t: 'shift', u: String(usertime), uid, gid });
  }

  /**
   * Takes responsibility for files: journaled and on disk when this resolves. A file already known
   * with the same identity is not taken twice; returns the new records.
   */
  async accept(usertime: bigint, files: NewFile[]): Promise<FileRecord[]> {
    const fresh: FileRecord[] = [];
    for (const f of files) {
      const known = this.#bySrc.get(f.src);
      if (known && known.ino === f.ino && known.dev === f.dev && known.size === f.size && known.mtimeMs === f.mtimeMs) continue;
      const rec = this.#newRecord(this.#nextId++, usertime, f);
      this.files.set(rec.id, rec);
      this.#bySrc.set(rec.src, rec);
      for (const s of this.storageIds) this.book.count(usertime, s, undefined, 'pending');
      fresh.push(rec);
    }
    if (fresh.length) {
      await this.journal.append(...fresh.map((r): JournalRecord => ({ t: 'file', id: r.id, u: String(r.usertime), src: r.src,
        rel: r.rel, size: r.size, mtimeMs: r.mtimeMs, ino: r.ino, dev: r.dev })));
    }
    return fresh;
  }

  async setCopy(rec: FileRecord, storage: string, state: 'copied' | 'failed', permanent = false): Promise<void> {
    const before = rec.states.get(storage);
    if (before === undefined) return;
    await this.journal.append(state === 'copied' ? { t: 'copied', id: rec.id, s: storage } : { t: 'failed', id: rec.id, s: storage, permanent });
    if (before !== state) this.book.count(rec.usertime, storage, before, state);
    rec.states.set(storage, state);
    if (permanent) rec.permanent.add(storage);
    else rec.permanent.delete(storage);
    this.#settleIfDone(rec);
  }

  async setOrigin(rec: FileRecord, where: 'ramdisk' | 'internal', state: Exclude<Origin, 'present'>): Promise<void> {
    await this.journal.append({ t: where, id: rec.id, state });
    rec[where] = state;
    this.#settleIfDone(rec);
  }

  /** A record needs nothing more when every storage is done and no original is left to clean up. */
  #settleIfDone(rec: FileRecord): void {
    const terminal = [...rec.states].every(([s, st]) => st === 'copied' || rec.permanent.has(s));
    const ramdiskDone = !rec.onRamdisk || rec.ramdisk !== 'present';
    const internalDone = !this.hasExternal || rec.internal !== 'present';
    if (!terminal || !ramdiskDone || !internalDone) return;
    let perStorage = this.#settled.get(rec.usertime);
    if (!perStorage) this.#settled.set(rec.usertime, (perStorage = new Map()));
    for (const [s, st] of rec.states) {
      const c = perStorage.get(s) ?? [0, 0];
      if (st === 'copied') c[0]++;
      else c[1]++;
      perStorage.set(s, c);
    }
    this.files.delete(rec.id);
    if (this.#bySrc.get(rec.src) === rec) this.#bySrc.delete(rec.src);
  }

  /** The journal as it would be written afresh: settled counts per shift, then the live records. */
  snapshot(): JournalRecord[] {
    const out: JournalRecord[] = [];
    for (const [u, uid, gid] of this.book.shiftsOldestFirst()) {
      const perStorage = this.#settled.get(u);
      out.push({ t: 'shift', u: String(u), uid, gid, ...(perStorage ? { counts: Object.fromEntries(perStorage) } : {}) });
    }
    for (const r of this.files.values()) {
      out.push({ t: 'file', id: r.id, u: String(r.usertime), src: r.src, rel: r.rel, size: r.size, mtimeMs: r.mtimeMs, ino: r.ino, dev: r.dev });
      for (const [s, st] of r.states) {
        if (st === 'copied') out.push({ t: 'copied', id: r.id, s });
        if (st === 'failed') out.push({ t: 'failed', id: r.id, s, permanent: r.permanent.has(s) });
      }
      if (r.ramdisk !== 'present') out.push({ t: 'ramdisk', id: r.id, state: r.ramdisk });
      if (r.internal !== 'present') out.push({ t: 'internal', id: r.id, state: r.internal });
    }
    return out;
  }

  /** Rewrites the journal once it holds far more lines than the live state needs. */
  async compactIfWorthIt(): Promise<boolean> {
    const live = this.files.size * (1 + this.storageIds.length) + this.book.size;
    if (this.journal.lines < 10_000 || this.journal.lines < 4 * live) return false;
    await this.journal.compact(this.snapshot());
    return true;
  }

  /** Forgets settled counts of shifts that left the history. */
  pruneSettled(): void {
    for (const u of this.#settled.keys()) if (!this.book.get(u)) this.#settled.delete(u);
  }
}

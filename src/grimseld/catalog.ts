// Every file grimseld is responsible for, its copy state per storage and what became of its ramdisk and
// internal originals (G2, G5-G7, G9, G12), and which copies were verified (I2). The one owner of grimseld's
// state: the record store is private, read through the queries below; every change is one call here that
// journals it, updates the record and moves the shift book's counts (a read model only this class writes).
// Counts are derived from these states, so after a replay they are right by construction.
import { Journal, type JournalRecord, type SettledCounts } from './journal.js';
import { ShiftBook, type ShiftEntry, type ShiftView } from './shift-book.js';
import { FileRecord, type NewFile, type Origin } from './file-record.js';
import { RecordStore } from './record-store.js';
import { LinkDirs, type LinkDir } from './link-dirs.js';
import { allPending, doneEverywhere, doneOn, failedForGood, stateAt, verifiedOn, withState, type CopyState } from './copy-states.js';

export { FileRecord };
export type { CopyState, LinkDir, NewFile, Origin };

/** A copy result as the catalog records it (setCopy). */
export interface CopyNote {
  /** Failed for good: the source is gone or changed (G12); no retry. */
  permanent?: boolean;
  /** Where a copy was made below the storage target, when that is not the file's own path (a numbered name). */
  rel?: string | undefined;
  /** The copy was read back and had the file's checksum (I2). */
  verified?: boolean;
  /** The checksum (tagged) the first complete read of a file without one found: becomes the file's (I2). */
  checksum?: string | undefined;
}

/** The shift a file belongs to, as its provenance says it (I3): start in µs, uid, gid. */
export interface ShiftOf {
  startUs: bigint;
  uid: number;
  gid: number;
}

export interface CatalogSettings {
  /** Storage ids, in the order copy states are kept. */
  storages: string[];
  /** Shifts kept in the status (history_max_entries). */
  historyMaxEntries: number;
  /** grimseld's ramdisk directory (`target`): only originals below it are linked or deleted (G5-G7). */
  ramdiskRoot: string;
  /** With an EXTERNAL storage, internal copies are originals too (G7). */
  hasExternal: boolean;
}

export class Catalog {
  /** Live records by id, and by source path: a re-sent delivery of the same file is recognised (furkad retries). */
  readonly #files = new RecordStore();
  /** Counts of records already resolved and dropped, per shift: [copied, failed, verified]; they live on in the snapshot. */
  #settled = new Map<bigint, Map<string, [number, number, number]>>();
  /**
   * Shifts the status let go (history_max_entries) whose counts are kept, settled and refused files, so that one
   * furkad delivers late files for is shown again with them (G9): uid and gid, for the snapshot. The last
   * history_max_entries let go (pruneSettled): a shift let go longer ago comes back with its late files only.
   */
  readonly #letGo = new Map<bigint, [number, number]>();
  readonly #keepLetGo: number;
  /**
   * Delivered files intake refused (not a regular file, gone, a link on the way), by shift and marked path: each
   * counts as failed on every storage (G9). By path, so that one furkad hands over again is counted once.
   */
  #refused = new Map<bigint, Set<string>>();
  /** Records taken whose journal line is not yet on disk: left out of a snapshot (their write may still fail). */
  #unjournaled = new Set<number>();
  #nextId = 1;
  #index: Map<string, number>;
  /**
   * Copies that got a numbered name beside a different file on a storage (copier.ts): record id → storage →
   * path below its target. Rare, so a map next to the record columns; what G5–G7 and reads from the internal
   * copy go by (relOn).
   */
  #placedAs = new Map<number, Map<string, string>>();
  #ramdiskPrefix: string;
  readonly #ramdiskRoot: string;
  /** Where the fill guards made links, per shift, until the shift-change clean-up swept them (G5-G7). */
  readonly #linkDirs = new LinkDirs();
  /** The mark of the disk each storage's copies are on, by storage id (storage-marks.ts). */
  readonly #marks = new Map<string, string>();
  /** Where each storage's mark was written: its target then (journals before 2026-12-05 have none). */
  readonly #markTargets = new Map<string, string>();

  /**
   * Storages the journal knows (a disk mark, copies) that the configuration no longer names, each with how many of the
   * files held at the replay are not known to have a copy there (its copied lines go at the first compaction
   * without it) (replay; said once at start, main.ts).
   */
  #unconfigured: Array<{ storage: string; uncopied: number }> = [];

  /** Counts per shift and storage: written here only, read by everyone else as `shifts`. */
  readonly #book: ShiftBook;
  private readonly storageIds: string[];
  private readonly hasExternal: boolean;

  constructor(private readonly journal: Journal, settings: CatalogSettings) {
    this.storageIds = settings.storages;
    this.hasExternal = settings.hasExternal;
    this.#book = new ShiftBook(settings.storages, settings.historyMaxEntries, (e) => this.#letGo.set(e.usertime, [e.uid, e.gid]));
    this.#keepLetGo = settings.historyMaxEntries;
    this.#index = new Map(settings.storages.map((s, i) => [s, i]));
    this.#ramdiskRoot = settings.ramdiskRoot;
    this.#ramdiskPrefix = `${settings.ramdiskRoot.replace(/\/+$/, '')}/`;
  }

  /**
   * Opens the journal in `stateDir` and replays it into a new catalog. The journal's lines are parsed one
   * at a time and dropped when this returns: a long journal costs memory at start only.
   */
  static async open(stateDir: string, settings: CatalogSettings): Promise<{ catalog: Catalog; journal: Journal; replayed: number }> {
    const { journal, records } = await Journal.open(stateDir);
    const catalog = new Catalog(journal, settings);
    return { catalog, journal, replayed: catalog.replay(records) };
  }

  /**
   * Storages the journal knows (a disk mark, copies) that the configuration no longer names, until the next compaction, with how many
   * of the files held at the replay are not known to have a copy there: no copy goes there now, and the status
   * has no row for them.
   */
  get unconfigured(): ReadonlyArray<{ storage: string; uncopied: number }> {
    return this.#unconfigured;
  }

  /** The counts per shift and storage (G9, I5), as the status reads them. */
  get shifts(): ShiftView {
    return this.#book;
  }

  /** Whether `src` lies in grimseld's ramdisk directory (`target`): only such originals are linked or deleted (G5–G7). */
  isOnRamdisk(src: string): boolean {
    return src.startsWith(this.#ramdiskPrefix);
  }

  /**
   * The directory a file's original is reached from without following links (docs/threat-model.md): grimseld's
   * ramdisk `target` for a file on the ramdisk (every directory below it is walked, the shift's own
   * included); for any other file the directory before its `./`, which furkad's configuration or an
   * operator named. A record whose `rel` is not the end of its path (not made by checkMarkedPath) gets its
   * own directory: only the file itself is then opened without following links.
   */
  sourceRoot(rec: FileRecord): string {
    return this.sourceRootOf(rec.src, rec.rel);
  }

  /** sourceRoot() of a file not taken yet: intake looks at it from there, as the copier will read it. */
  sourceRootOf(src: string, rel: string): string {
    if (this.isOnRamdisk(src)) return this.#ramdiskRoot;
    const at = src.length - rel.length;
    return at > 0 && src[at - 1] === '/' && src.endsWith(rel) ? src.slice(0, at) : src.slice(0, src.lastIndexOf('/') + 1);
  }

  /** Rebuilds state from journal records (idempotent: a record seen twice changes nothing); returns how many. */
  replay(records: Iterable<JournalRecord>): number {
    let n = 0;
    /** Per storage not configured: the files copied there (copied lines not taken back by a lost line). */
    const copiedOnGone = new Map<string, Set<number>>();
    const onGone = (st: string): Set<number> => copiedOnGone.get(st) ?? copiedOnGone.set(st, new Set()).get(st)!;
    for (const r of records) {
      n++;
      switch (r.t) {
        case 'shift': {
          this.#book.begin(BigInt(r.u), r.uid, r.gid);
          if (r.counts) this.#settled.set(BigInt(r.u), new Map(Object.entries(r.counts).map(([st, c]) => [st, settledCounts(c)])));
          break;
        }
        case 'file': {
          if (this.#files.has(r.id)) break;
          // Kept as it was journaled: a restart never recomputes a checksum it knows (I1).
          this.#newRecord(r.id, BigInt(r.u), { ...r, checksum: r.c, detector: r.det, copyOnly: r.keep });
          this.#nextId = Math.max(this.#nextId, r.id + 1);
          break;
        }
        case 'checksum': {
          const rec = this.#files.get(r.id);
          if (rec && rec.checksum === undefined) this.#files.setChecksum(rec, r.c);
          break;
        }
        case 'copied':
        case 'failed': {
          const rec = this.#files.get(r.id);
          const i = this.#index.get(r.s);
          if (i === undefined) {
            const copied = onGone(r.s);
            if (rec && r.t === 'copied') copied.add(r.id);
            break;
          }
          if (!rec) break;
          this.#files.setStates(rec, withState(rec.states, i, r.t, r.t === 'failed' ? r.permanent : r.verified === true));
          if (r.t === 'copied' && r.rel !== undefined) this.#placeAs(rec, r.s, r.rel);
          break;
        }
        case 'lost': {
          const rec = this.#files.get(r.id);
          const i = this.#index.get(r.s);
          if (i === undefined) copiedOnGone.get(r.s)?.delete(r.id);
          if (!rec || i === undefined) break;
          this.#files.setStates(rec, withState(rec.states, i, 'pending'));
          this.#placedAs.get(rec.id)?.delete(r.s);
          break;
        }
        case 'mark':
          this.#marks.set(r.s, r.mark);
          if (r.target === undefined) this.#markTargets.delete(r.s);
          else this.#markTargets.set(r.s, r.target);
          break;
        case 'ramdisk': {
          const rec = this.#files.get(r.id);
          if (rec) this.#files.setOrigin(rec, 'ramdisk', r.state);
          break;
        }
        case 'internal': {
          const rec = this.#files.get(r.id);
          if (rec) this.#files.setOrigin(rec, 'internal', r.state);
          break;
        }
        case 'linkdir':
          this.#linkDirs.add(BigInt(r.u), { where: r.w, dir: r.d, to: r.to });
          break;
        case 'linkdirs-swept':
          this.#linkDirs.drop(BigInt(r.u));
          break;
        case 'refused':
          this.#noteRefused(BigInt(r.u), r.src);
          break;
      }
    }
    // Counted before the records done on every configured storage are let go below. Known by its disk's mark or its
    // copies (a storage without a mountpoint has no mark). Neither outlives the next
    // compaction (snapshot), so a storage retired for good is said at the starts before it only (reviewer r3).
    const known = new Set([...this.#marks.keys(), ...copiedOnGone.keys()]);
    this.#unconfigured = [...known].filter((st) => !this.#index.has(st)).map((storage) => {
      const copied = copiedOnGone.get(storage);
      let uncopied = 0;
      for (const rec of this.#files.values()) if (!copied?.has(rec.id)) uncopied++;
      return { storage, uncopied };
    });
    for (const u of new Set([...this.#settled.keys(), ...this.#refused.keys()])) this.#countKept(u);
    for (const rec of this.#files.values()) {
      this.#countLive(rec);
      this.#settleIfDone(rec);
    }
    this.#book.trim();
    return n;
  }

  /** Adds shift `u`'s settled and refused files to its counts in the book (replay; a shift begun again). */
  #countKept(u: bigint): void {
    for (const [s, [copied, failed, verified]] of this.#settled.get(u) ?? []) this.#book.add(u, s, { pending: 0, copied, failed, verified });
    const refused = this.#refused.get(u)?.size ?? 0;
    if (refused) for (const s of this.storageIds) this.#book.add(u, s, { pending: 0, copied: 0, failed: refused, verified: 0 });
  }

  /** Adds a live record to its shift's counts in the book, as its states are (replay; a shift begun again). */
  #countLive(rec: FileRecord): void {
    this.storageIds.forEach((s, i) => {
      this.#book.count(rec.usertime, s, undefined, stateAt(rec.states, i));
      if (verifiedOn(rec.states, i)) this.#book.verified(rec.usertime, s, 1);
    });
    if (!doneEverywhere(rec.states, this.storageIds.length)) this.#book.opened(rec.usertime, 1);
  }

  #untake(rec: FileRecord): void {
    for (const s of this.storageIds) this.#book.count(rec.usertime, s, 'pending', undefined);
    this.#book.opened(rec.usertime, -1);
    this.#files.remove(rec);
  }

  #newRecord(id: number, usertime: bigint, f: NewFile): FileRecord {
    // One bigint per shift, not one per file.
    const shared = this.#book.get(usertime)?.usertime ?? usertime;
    return this.#files.add(id, shared, f, allPending(this.storageIds.length), !f.copyOnly && this.isOnRamdisk(f.src));
  }

  /** The file's copy state on `storage` (undefined for a storage grimseld does not have). */
  stateOn(rec: FileRecord, storage: string): CopyState | undefined {
    const i = this.#index.get(storage);
    return i === undefined ? undefined : stateAt(rec.states, i);
  }

  /** Where the file's copy on `storage` is, below its target: `rec.rel`, or the numbered name it got there. */
  relOn(rec: FileRecord, storage: string): string {
    return this.#placedAs.get(rec.id)?.get(storage) ?? rec.rel;
  }

  #placeAs(rec: FileRecord, storage: string, rel: string): void {
    let m = this.#placedAs.get(rec.id);
    if (!m) this.#placedAs.set(rec.id, (m = new Map()));
    m.set(storage, rel);
  }

  /** The shift of a file (I3); undefined once its shift left the history. */
  shiftOf(rec: FileRecord): ShiftOf | undefined {
    const s = this.#book.get(rec.usertime);
    return s && { startUs: s.usertime, uid: s.uid, gid: s.gid };
  }

  /** Whether the file is copied to `storage`. */
  copiedOn(rec: FileRecord, storage: string): boolean {
    return this.stateOn(rec, storage) === 'copied';
  }

  /** Copied to `storage`, or failed there for good: nothing more to do. */
  doneOn(rec: FileRecord, storage: string): boolean {
    const i = this.#index.get(storage);
    return i === undefined || doneOn(rec.states, i);
  }

  /** Copied to every storage, or failed there for good: no copy of it is still to be made anywhere. */
  doneEverywhere(rec: FileRecord): boolean {
    return doneEverywhere(rec.states, this.storageIds.length);
  }

  /** How many records are live (not settled). */
  get size(): number {
    return this.#files.size;
  }

  /** The live record `id`, if it is. */
  record(id: number): FileRecord | undefined {
    return this.#files.get(id);
  }

  /** The live record taken last for source path `src`. */
  latestAt(src: string): FileRecord | undefined {
    return this.#files.latestAt(src);
  }

  /** The current (newest) shift, as the shift book has it. */
  get currentShift(): ShiftEntry | undefined {
    return this.#book.current;
  }

  /** Live records with a copy still to make on `storage` (not copied, not failed for good), in id order. */
  *pendingOn(storage: string): Generator<FileRecord> {
    const i = this.#index.get(storage);
    if (i === undefined) return;
    for (const rec of this.#files.values()) if (!doneOn(rec.states, i)) yield rec;
  }

  /** Live records of shifts that started before `usertime` (their originals go at a shift change, G5), in id order. */
  *ofShiftsBefore(usertime: bigint): Generator<FileRecord> {
    for (const rec of this.#files.values()) if (rec.usertime < usertime) yield rec;
  }

  /**
   * Live records whose original is still there on `where`, oldest first (the fill guard's candidates, G6, G7):
   * on the ramdisk the delivered file; on the internal storage its copy, once made (`internalId`).
   */
  *originalsOn(where: 'ramdisk' | 'internal', internalId: string): Generator<FileRecord> {
    for (const rec of this.#files.values()) {
      const there = where === 'ramdisk' ? rec.onRamdisk && rec.ramdisk === 'present' : rec.internal === 'present' && this.copiedOn(rec, internalId);
      if (there) yield rec;
    }
  }

  /** Whether a record is still the catalog's (not settled and dropped). */
  isLive(rec: FileRecord): boolean {
    return this.#files.holds(rec);
  }

  /** Journals a shift start (once); true when the shift is new. */
  async shift(usertime: bigint, uid: number, gid: number): Promise<boolean> {
    if (this.#book.get(usertime)) return false;
    const current = this.#book.current;
    // Journaled first: a shift that could not be written down is not known either, so the next call tries again.
    await this.journal.append({ t: 'shift', u: String(usertime), uid, gid });
    if (this.#book.get(usertime)) return false;
    this.#book.begin(usertime, uid, gid);
    // An earlier shift the status had let go (history_max_entries) whose late files furkad delivers now: shown
    // again until they are copied, with what it counted before (its files settled, refused or still live), and no
    // shift start (G9).
    if (current && usertime < current.usertime) {
      this.#letGo.delete(usertime);
      this.#countKept(usertime);
      for (const rec of this.#files.values()) if (rec.usertime === usertime) this.#countLive(rec);
      return false;
    }
    this.#book.trim();
    return true;
  }

  /**
   * Takes responsibility for files: journaled and on disk when this resolves. A file already known
   * with the same identity is not taken twice; returns the new records. With `otherName`, a file known under
   * another replicated path (another './') is left out and handed to it with that path (an operator's AddFile
   * is then refused by name, G8); without, it counts as known (a delivery furkad re-sends).
   */
  async accept(usertime: bigint, files: NewFile[], otherName?: (f: NewFile, takenAs: string) => void): Promise<FileRecord[]> {
    const fresh: FileRecord[] = [];
    const known: FileRecord[] = [];
    for (const f of files) {
      const live = this.#files.latestAt(f.src);
      if (live?.sameAs(f)) {
        // Checked here, with no await since the lookup: two calls at once cannot both pass.
        if (otherName && live.rel !== f.rel) otherName(f, live.rel);
        else known.push(live);
        continue;
      }
      const rec = this.#newRecord(this.#nextId++, usertime, f);
      for (const s of this.storageIds) this.#book.count(usertime, s, undefined, 'pending');
      this.#book.opened(usertime, 1);
      this.#unjournaled.add(rec.id);
      fresh.push(rec);
    }
    if (!fresh.length) this.#book.trim(); // an earlier shift begun again for files it already had
    // A known file may have been taken a moment ago by a caller still waiting for its record to reach the
    // disk: this caller is not told "taken" before that either (G12). Batches are written in order, so
    // waiting for our own records covers it.
    if (fresh.length) {
      try {
        await this.journal.append(...fresh.map((rec) => this.#fileLine(rec)));
      } catch (e) {
        // Not on disk, so not taken: the caller is told (furkad delivers them again), and a second delivery must
        // not find them "known" and be told they are safe.
        for (const rec of fresh) this.#untake(rec);
        throw e;
      } finally {
        for (const rec of fresh) this.#unjournaled.delete(rec.id);
      }
    } else if (known.length) await this.journal.durable();
    // A known file's record taken back meanwhile (its batch failed): not safe, though our own batch was written.
    if (known.some((rec) => !this.isLive(rec))) throw new Error('a file of this delivery could not be journaled by the call that took it first; deliver it again');
    return fresh;
  }

  /**
   * Counts delivered files that intake refused as failed on every storage of shift `usertime` (G9), by their
   * marked paths: journaled, so they stay counted after a restart; a path already counted for the shift (furkad
   * hands a delivery over again when its answer was lost) is not counted again. Returns the paths counted now.
   */
  async refuse(usertime: bigint, paths: string[]): Promise<string[]> {
    const fresh = [...new Set(paths)].filter((p) => !this.#refused.get(usertime)?.has(p));
    if (!fresh.length) return [];
    await this.journal.append(...fresh.map((src): JournalRecord => ({ t: 'refused', u: String(usertime), src })));
    // Counted by the call that noted it first: two at once with the same path count it once.
    return fresh.filter((src) => {
      if (!this.#noteRefused(usertime, src)) return false;
      for (const s of this.storageIds) this.#book.count(usertime, s, undefined, 'failed');
      return true;
    });
  }

  /** Notes a refused file of shift `u`; false when it was noted already. */
  #noteRefused(u: bigint, src: string): boolean {
    let paths = this.#refused.get(u);
    if (!paths) this.#refused.set(u, (paths = new Set()));
    if (paths.has(src)) return false;
    paths.add(src);
    return true;
  }

  /**
   * Records a copy result (CopyNote): where the copy is when not under the file's own path, whether it was
   * verified, and for a file without a checksum the one its first read found; journaled together, so a
   * restart keeps them (the checksum's line first: a copy verified against it is never replayed without it).
   */
  async setCopy(rec: FileRecord, storage: string, state: 'copied' | 'failed', note: CopyNote = {}): Promise<void> {
    const i = this.#index.get(storage);
    if (i === undefined) return;
    const copied = state === 'copied';
    const placedAs = copied && note.rel !== undefined && note.rel !== rec.rel ? note.rel : undefined;
    const verified = copied && note.verified === true;
    const adopt = copied && note.checksum !== undefined && rec.checksum === undefined ? note.checksum : undefined;
    await this.journal.append(
      ...(adopt ? [{ t: 'checksum', id: rec.id, c: adopt } as const] : []),
      copied ? { t: 'copied', id: rec.id, s: storage, ...(placedAs ? { rel: placedAs } : {}), ...(verified ? { verified: true } as const : {}) }
        : { t: 'failed', id: rec.id, s: storage, permanent: note.permanent === true });
    // Settled meanwhile (a result for a storage it was already done on): nothing left to count.
    if (!this.isLive(rec)) return;
    if (adopt && rec.checksum === undefined) this.#files.setChecksum(rec, adopt);
    if (placedAs) this.#placeAs(rec, storage, placedAs);
    const before = stateAt(rec.states, i);
    const wasVerified = verifiedOn(rec.states, i);
    const wasDone = doneEverywhere(rec.states, this.storageIds.length);
    if (before !== state) this.#book.count(rec.usertime, storage, before, state);
    if (wasVerified !== verified) this.#book.verified(rec.usertime, storage, verified ? 1 : -1);
    this.#files.setStates(rec, withState(rec.states, i, state, copied ? verified : note.permanent === true));
    const done = doneEverywhere(rec.states, this.storageIds.length);
    if (done !== wasDone) this.#book.opened(rec.usertime, done ? -1 : 1);
    this.#settleIfDone(rec);
  }

  /**
   * The copies of `recs` on `storage` are not there any more (the disk was swapped, storage-marks.ts): each is
   * pending there again, counted so, journaled together. A record not copied there (any more) is left as it is.
   */
  async setLost(recs: FileRecord[], storage: string): Promise<void> {
    const i = this.#index.get(storage);
    if (i === undefined) return;
    const lost = recs.filter((rec) => this.isLive(rec) && stateAt(rec.states, i) === 'copied');
    if (lost.length === 0) return;
    await this.journal.append(...lost.map((rec) => ({ t: 'lost', id: rec.id, s: storage } as const)));
    for (const rec of lost) {
      if (!this.isLive(rec) || stateAt(rec.states, i) !== 'copied') continue;
      const wasDone = doneEverywhere(rec.states, this.storageIds.length);
      this.#book.count(rec.usertime, storage, 'copied', 'pending');
      if (verifiedOn(rec.states, i)) this.#book.verified(rec.usertime, storage, -1);
      this.#files.setStates(rec, withState(rec.states, i, 'pending'));
      if (wasDone) this.#book.opened(rec.usertime, 1);
      this.#placedAs.get(rec.id)?.delete(storage);
    }
  }

  /** Live records copied to `storage` (as far as the catalog knows), in id order. */
  *copiesOn(storage: string): Generator<FileRecord> {
    const i = this.#index.get(storage);
    if (i === undefined) return;
    for (const rec of this.#files.values()) if (stateAt(rec.states, i) === 'copied') yield rec;
  }

  /** The mark of the disk `storage`'s copies are on (storage-marks.ts); undefined before the first. */
  markOf(storage: string): string | undefined {
    return this.#marks.get(storage);
  }

  /** The target `storage`'s mark was written in (storage-marks.ts); undefined before the first or when not journaled. */
  markTargetOf(storage: string): string | undefined {
    return this.#markTargets.get(storage);
  }

  /** `storage`'s copies are on the disk marked `mark`, written in `target`, from now on (journaled). */
  async setMark(storage: string, mark: string, target: string): Promise<void> {
    if (this.#marks.get(storage) === mark && this.#markTargets.get(storage) === target) return;
    await this.journal.append({ t: 'mark', s: storage, mark, target });
    this.#marks.set(storage, mark);
    this.#markTargets.set(storage, target);
  }

  async setOrigin(rec: FileRecord, where: 'ramdisk' | 'internal', state: Exclude<Origin, 'present'>): Promise<void> {
    await this.journal.append({ t: where, id: rec.id, state });
    if (!this.isLive(rec)) return; // settled meanwhile: nothing left to clean up
    this.#files.setOrigin(rec, where, state);
    this.#settleIfDone(rec);
  }

  /**
   * Notes that a fill guard links originals of shift `u` in `d` (journaled the first time for that shift), so that
   * the links are swept once the shift has ended: their records are dropped before then (link-dirs.ts).
   */
  async noteLinkDir(u: bigint, d: LinkDir): Promise<void> {
    if (this.#linkDirs.has(u, d)) return;
    await this.journal.append({ t: 'linkdir', u: String(u), w: d.where, d: d.dir, to: d.to });
    this.#linkDirs.add(u, d);
  }

  /** Shifts that started before `u` with directories of links to sweep (G5). */
  linkDirsBefore(u: bigint): Array<[bigint, LinkDir[]]> {
    return this.#linkDirs.before(u);
  }

  /** Shift `u`'s link directories were swept. */
  async linkDirsSwept(u: bigint): Promise<void> {
    await this.journal.append({ t: 'linkdirs-swept', u: String(u) });
    this.#linkDirs.drop(u);
  }

  /** A record needs nothing more when every storage is done and no original is left to clean up. */
  #settleIfDone(rec: FileRecord): void {
    if (!this.isLive(rec)) return;
    const terminal = doneEverywhere(rec.states, this.storageIds.length);
    const ramdiskDone = !rec.onRamdisk || rec.ramdisk !== 'present';
    const internalDone = !this.hasExternal || rec.internal !== 'present';
    if (!terminal || !ramdiskDone || !internalDone) return;
    let perStorage = this.#settled.get(rec.usertime);
    if (!perStorage) this.#settled.set(rec.usertime, (perStorage = new Map()));
    this.storageIds.forEach((s, i) => {
      const c = perStorage!.get(s) ?? [0, 0, 0];
      if (stateAt(rec.states, i) === 'copied') c[0]++;
      else c[1]++;
      if (verifiedOn(rec.states, i)) c[2]++;
      perStorage!.set(s, c);
    });
    this.#placedAs.delete(rec.id);
    this.#files.remove(rec);
  }

  /** The journal as it would be written afresh: settled counts per shift, then the live records. */
  *snapshot(): Generator<JournalRecord> {
    // The shifts let go whose counts are kept too: replayed, they are let go again at its end (and kept so).
    const letGo = [...this.#letGo].filter(([u]) => !this.#book.get(u)).map(([u, [uid, gid]]): [bigint, number, number] => [u, uid, gid]);
    for (const [u, uid, gid] of [...letGo, ...this.#book.shiftsOldestFirst()]) {
      const perStorage = this.#settled.get(u);
      yield { t: 'shift', u: String(u), uid, gid, ...(perStorage ? { counts: Object.fromEntries(perStorage) } : {}) };
    }
    for (const [s, mark] of this.#marks) {
      // A storage no longer configured is forgotten: configured again, its disk's mark is taken as found (storage-marks.ts).
      if (!this.#index.has(s)) continue;
      const target = this.#markTargets.get(s);
      yield { t: 'mark', s, mark, ...(target === undefined ? {} : { target }) };
    }
    for (const [u, d] of this.#linkDirs.entries()) yield { t: 'linkdir', u: String(u), w: d.where, d: d.dir, to: d.to };
    for (const [u, paths] of this.#refused) if (this.#book.get(u) || this.#letGo.has(u)) for (const src of paths) yield { t: 'refused', u: String(u), src };
    // Not a record whose own line is still on its way: if that write fails, the record is taken back.
    for (const r of this.#files.values()) if (!this.#unjournaled.has(r.id)) yield* this.#lines(r);
  }

  #fileLine(r: FileRecord): JournalRecord {
    // Also off the ramdisk: the copier checks an operator's directories after a restart too (copy-dirs.ts).
    return fileLine(r, r.copyOnly === true);
  }

  /** A live record's journal lines, read at once (the snapshot is written while it is iterated). */
  #lines(r: FileRecord): JournalRecord[] {
    const lines = [this.#fileLine(r)];
    const states = r.states;
    this.storageIds.forEach((s, i) => {
      const st = stateAt(states, i);
      if (st === 'copied') {
        const rel = this.#placedAs.get(r.id)?.get(s);
        lines.push({ t: 'copied', id: r.id, s, ...(rel !== undefined ? { rel } : {}), ...(verifiedOn(states, i) ? { verified: true } as const : {}) });
      }
      if (st === 'failed') lines.push({ t: 'failed', id: r.id, s, permanent: failedForGood(states, i) });
    });
    const { ramdisk, internal } = r;
    if (ramdisk !== 'present') lines.push({ t: 'ramdisk', id: r.id, state: ramdisk });
    if (internal !== 'present') lines.push({ t: 'internal', id: r.id, state: internal });
    return lines;
  }

  /** Rewrites the journal once it holds far more lines than the live state needs. */
  async compactIfWorthIt(): Promise<boolean> {
    let refused = 0;
    for (const paths of this.#refused.values()) refused += paths.size;
    const live = this.#files.size * (1 + this.storageIds.length) + this.#book.size + this.#letGo.size + this.#linkDirs.size + this.#marks.size + refused;
    if (this.journal.lines < 10_000 || this.journal.lines < 4 * live) return false;
    await this.journal.compact(() => this.snapshot());
    return true;
  }

  /**
   * Forgets settled counts and refused files of shifts that left the history, but for the last
   * history_max_entries of them (by start): one of those furkad delivers late files for is shown with all it
   * counted (G9). Bounded, in memory and in the snapshot, whatever the number of shifts.
   */
  pruneSettled(): void {
    for (const u of this.#letGo.keys()) if (this.#book.get(u)) this.#letGo.delete(u);
    const newestFirst = [...this.#letGo.keys()].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    for (const u of newestFirst.slice(this.#keepLetGo)) this.#letGo.delete(u);
    for (const u of this.#settled.keys()) if (!this.#book.get(u) && !this.#letGo.has(u)) this.#settled.delete(u);
    for (const u of this.#refused.keys()) if (!this.#book.get(u) && !this.#letGo.has(u)) this.#refused.delete(u);
  }
}

/** Settled counts as journaled, with the verified count journals before I2 do not have. */
function settledCounts(c: SettledCounts): [number, number, number] {
  return [c[0], c[1], c[2] ?? 0];
}

/** A record's journal line; `copyOnly`: an operator's file, never linked or deleted (NewFile.copyOnly). */
function fileLine(r: FileRecord, copyOnly: boolean): JournalRecord {
  const { checksum, detector } = r;
  return { t: 'file', id: r.id, u: String(r.usertime), src: r.src, rel: r.rel, size: r.size, mtimeMs: r.mtimeMs, ino: r.ino, dev: r.dev,
    ...(checksum !== undefined ? { c: checksum } : {}), ...(detector !== undefined ? { det: detector } : {}), ...(copyOnly ? { keep: true } : {}) };
}

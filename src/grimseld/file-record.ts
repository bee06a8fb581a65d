// One file grimseld is responsible for, as its users see it: a read-only handle on a row of the record store
// (record-store.ts), which keeps 100 000 pending files in columns instead of 100 000 objects (BENCHMARKS.md).
// Only the catalog changes a record (catalog.ts), through the store.
import type { PackedStates } from './copy-states.js';
import type { RecordStore } from './record-store.js';

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
  /** The checksum it was delivered with, tagged (`xxh128:<hex>`, I1); none for an operator's file (G8). */
  checksum?: string | undefined;
  /** The detector that made it (furkad's id); none for an operator's file. */
  detector?: string | undefined;
  /**
   * Copied only: its original is never linked or deleted, though it lies on the ramdisk (G5, G6). An operator's
   * file (AddFile by a uid other than 0): operators are trusted with which files to copy among those they may
   * read, not with having root delete them (docs/threat-model.md). Nor with having root write where they could
   * not: its copies go into no directory of another user's and change none (copy-dirs.ts, ownerVisit).
   */
  copyOnly?: true | undefined;
}

/** Thrown on reading a record after it was settled: its row may already hold another file. */
export class RecordGone extends Error {
  constructor(readonly id: number) {
    super(`file record ${id} is settled; it is no longer held`);
  }
}

/**
 * A record, by id. Handles are made on demand and are cheap; two handles of one record are the same record
 * (compare ids). Once the record is settled every read throws RecordGone rather than answer for another file.
 */
export class FileRecord implements NewFile {
  constructor(
    readonly id: number,
    /** Where the store last found the record; the store checks it before use. */
    public row: number,
    private readonly store: RecordStore,
  ) {}

  get src(): string {
    return this.store.src(this);
  }

  /** The part of the path replicated below each storage target (G4). */
  get rel(): string {
    return this.store.rel(this);
  }

  get size(): number {
    return this.store.number(this, 'size');
  }

  get mtimeMs(): number {
    return this.store.number(this, 'mtimeMs');
  }

  get ino(): number {
    return this.store.number(this, 'ino');
  }

  get dev(): number {
    return this.store.number(this, 'dev');
  }

  /**
   * The checksum the file arrived with (`xxh128:<hex>`), or for an operator's file the one its first complete
   * read found, to check each copy against (I2); undefined while unknown.
   */
  get checksum(): string | undefined {
    return this.store.checksum(this);
  }

  /** The detector the file came from, undefined when unknown. */
  get detector(): string | undefined {
    return this.store.detector(this);
  }

  /** The shift the file belongs to (its start in µs). */
  get usertime(): bigint {
    return this.store.usertime(this);
  }

  /** Copy state per storage, indexed as the catalog's storage list (copy-states.ts). */
  get states(): PackedStates {
    return this.store.states(this);
  }

  /** Whether `src` lies on the PPU ramdisk (cleanup and the fill guard may touch it). */
  get onRamdisk(): boolean {
    return this.store.onRamdisk(this);
  }

  /** An operator's file (NewFile.copyOnly): never linked or deleted, and its copies' directories checked (copy-dirs.ts). */
  get copyOnly(): true | undefined {
    return this.store.copyOnly(this) || undefined;
  }

  get ramdisk(): Origin {
    return this.store.origin(this, 'ramdisk');
  }

  get internal(): Origin {
    return this.store.origin(this, 'internal');
  }

  /** Same file as `f`: a delivery re-sent after a crash is not taken twice. */
  sameAs(f: NewFile): boolean {
    return this.ino === f.ino && this.dev === f.dev && this.size === f.size && this.mtimeMs === f.mtimeMs;
  }
}

// The one job of grimseld's copy pipeline and the one report of its result (docs/grimseld-design.md): the
// dispatcher makes a job fully resolved (what to read, from where, to where, and what it must be), a storage's
// writer hands it to a copy thread, and the report goes back once, to the dispatcher.
import type { Provenance } from '../common/provenance.js';
import type { Identity } from './copy-source.js';
import type { MountedAt } from './copy-dirs.js';
import type { CopyOutcome, CopyResult } from './copier.js';

/** What a copy is read from (dispatcher.ts, resolve). */
export type ReadFrom = 'original' | 'internal' | 'external';

export interface CopyJob {
  /** The file's record (catalog.ts): whose result this is. */
  id: number;
  /** The storage the copy is made on. */
  storage: string;
  /** Where to read the file now: the original, or a copy of it once the original is gone (G5, G6, G7). */
  src: string;
  /** Which one `src` is: the original (on the ramdisk, or an operator's file), or the internal or external copy. */
  from: ReadFrom;
  /**
   * The directory `src` is reached from without following links: trusted as named (grimseld's ramdisk
   * `target` for a file on the ramdisk, a storage target for a copy read back, else the directory before
   * the `./` of the path furkad or an operator gave). `src` must be below it.
   */
  root: string;
  /** The path replicated below the storage target (G4). */
  rel: string;
  /** Where the copy goes: `rel` below the storage target. */
  dest: string;
  /** What `src` must still be when it is read. */
  expect: Identity;
  /** An earlier attempt may have died mid-copy (replay, retry): remove its temp file first. */
  sweep: boolean;
  /** Hex digits of the file's checksum (I1), which the copy must have; undefined: unknown (an operator's file). */
  checksum?: string | undefined;
  /** The file's shift and detector, written on the copy with its checksum (I3). */
  provenance?: Omit<Provenance, 'checksum'>;
  /**
   * G13: the storage's mount point and the device the check before this batch found mounted there
   * (mount-watch.ts); the copy thread writes only while the mount point still has it. Undefined: no mount point.
   */
  mount?: MountedAt;
  /**
   * An operator's file (FileRecord.copyOnly): its copy changes no directory of a user's on the storage and goes
   * into none that is not its owner's (copy-dirs.ts, ownerVisit; RefusedDir otherwise).
   */
  byOperator?: true;
  /**
   * How many times the storage's disk was found swapped before this job was handed out (storage-marks.ts): a
   * copy reported after a swap was made on the disk taken away, and is not counted (the dispatcher's own).
   */
  disk?: number;
}

/** What the copier reads of a job (copier.ts): everything but whose result it is. */
export type CopyWork = Pick<CopyJob, 'src' | 'root' | 'dest' | 'expect' | 'sweep' | 'checksum' | 'provenance' | 'mount' | 'byOperator'>;

/** A job's result, reported once. */
export interface CopyReport {
  job: CopyJob;
  /** Where the copy is: `job.dest`, or a numbered name beside a different file there (copier.ts). */
  dest: string;
  outcome: CopyOutcome | Error;
  /** A copy made or found: what the copier says of it (checksum, verified, attributes). */
  result?: CopyResult;
}

/** The report of `job` from what its copy thread answered. */
export function reportOf(job: CopyJob, r: CopyResult | Error): CopyReport {
  return r instanceof Error ? { job, dest: job.dest, outcome: r } : { job, dest: r.dest, outcome: r.outcome, result: r };
}

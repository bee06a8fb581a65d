// One faithful, atomic copy (G3): temp name, data, owner, mode, mtime, provenance, fsync, check, link.
// Never half a file under a final name; never through a symbolic link a user planted or swaps in (docs/threat-model.md
// row 2); never a copy whose bytes are not the file's (I2): the flushed copy is read back and compared with the
// file's checksum (copy-check.ts; without that read-back, the source is hashed as it is read instead), and the copy
// carries the file's checksum, shift and detector as extended attributes (I3, copy-provenance.ts).
//
// Both ends are reached from a trusted directory one component at a time without following links, and
// every operation acts relative to the directory handles so held (copy-dirs.ts, common/dir-fd.ts): the
// source from the ramdisk target (or the directory before an operator's `./`, or the internal storage's
// target), opened once with O_NOFOLLOW and checked on its descriptor (copy-source.ts); the copy in its
// storage directory, made and given its owners through the handles, its temp name created O_EXCL|O_NOFOLLOW
// there and its final name taken there. A user who flips a directory of theirs with a link between any two
// of these steps changes nothing about which file is read or where the copy goes.
//
// Synchronous, and run in a copy thread (copy-thread.ts): a copy is a dozen system calls of which only the
// fsync waits for anything, so one blocking call after another in one thread, as cp makes them, costs half
// the CPU of a trip through libuv's pool and back to the event loop for each (BENCHMARKS.md). Files waiting in
// numbers are copied a batch at a time (copyMany), and the directories of a batch are walked once each.
import { constants, closeSync, fchmodSync, fchownSync, fstatSync, fsyncSync, readSync, writeSync } from 'node:fs';
import { coarseStep, sameSizeAndMtime, setFileTimes, storeableMtime, toMicrosecond } from '../common/file-times.js';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { DirFd, splitRel, UnsafePath } from '../common/dir-fd.js';
import { candidateNames, NO_HARD_LINKS } from '../common/numbered-name.js';
import type { NumberedDir } from '../common/numbered-dirs.js';
import { isOwnTempOf, tempName, type TempKey } from './temp-names.js';
import { depthOf, HeldDirs, ownersAsSource, ownerVisit, RefusedDir, type SourceDir } from './copy-dirs.js';
import { isDelivered, openSource, sameFile, SourceChanged, type Identity, type Source } from './copy-source.js';
import { Checksum } from '../common/checksum.js';
import { readProvenance } from '../common/provenance.js';
import { ChecksumMismatch, checksumOfCopy } from './copy-check.js';
import { stampCopy, type Attributes } from './copy-provenance.js';
import type { CopyWork } from './copy-job.js';
import { MARK_FILE } from './storage-marks.js';

export { sameFile, SourceChanged, ChecksumMismatch, type Identity };

export interface CopyOptions {
  preserveUid: boolean;
  preserveGid: boolean;
  /**
   * Read each flushed copy back and check it against the file's checksum (grimseld.conf `verify_copies`,
   * default yes); the source is then not hashed as well (write()). Without, the source is hashed as it is
   * read and checked, the copy is not read again.
   */
  verifyCopies?: boolean;
  /** The key temp names are made with (temp-names.ts): only names made with it are ever removed as temp files. */
  tempKey: TempKey;
}

export type CopyOutcome = 'copied' | 'identical';

/**
 * A copy made (or found there already) and the name it has on the storage: the job's `dest`, or, when `dest`
 * holds a different file, a numbered name beside it (`dest.~1~`, numbered-name.ts), or, when a file holds the
 * name of a directory on its way, the same name in a numbered directory (`Y.~1~/g.img`, numbered-dirs.ts). A
 * complete copy of another delivered file is never replaced (G3, G12).
 */
export interface CopyResult {
  outcome: CopyOutcome;
  dest: string;
  /**
   * Hex digits of the bytes copied (a copy made): the file's checksum, or for a file without one, that of the
   * bytes read from the source. For a file without one found copied there already, that of its source as read to
   * tell its copy from another file of its size and mtime (identicalAt).
   */
  checksum?: string;
  /** The copy was read back (or, found there already, read) and had the file's checksum (I2). */
  verified: boolean;
  /** Where the copy's ppu.* attributes went (a copy made): copy-provenance.ts. */
  attributes?: Attributes;
  /**
   * The file's mtime lies beyond what the storage's file system keeps (the year 2500 on ext4), which stored the
   * nearest it can (ns since the epoch, as decimal strings): the copy counts (G3's measure takes it, common/file-times.ts);
   * the dispatcher says so. With `stepMs`: the file system keeps times in steps that coarse (exFAT 10 ms, ext3
   * 1 s, FAT 2 s) and cut the mtime down to one; the copy counts too (sameCopyOf).
   */
  mtimeClamped?: { wanted: string; stored: string; stepMs?: number };
}


/** Called after every step of a copy that moved it on (a chunk written, a file flushed or renamed): see copy-watch.ts. */
export type Progress = () => void;

const noProgress: Progress = () => undefined;

/**
 * Bytes read and written at a time: cp's order of size. Enough that the system calls cost little next to
 * the copying, small enough that a copy reports progress many times a second even on a slow disk.
 */
const CHUNK_BYTES = 256 << 10;
/** One buffer per copy thread (a module is loaded once per thread), made at the first copy. */
let chunk: Buffer | undefined;

/** A copy under way: its data is in `tmp` of the held `dir` (open as `fd`), not yet flushed nor under its final name. */
interface Written {
  job: CopyWork;
  /** The storage target. */
  base: string;
  /** Hex digits the copy must have: the file's checksum, or (none known) the one of the bytes read from the source. */
  checksum: string;
  /** The copy was read back and found right. */
  verified: boolean;
  attributes: Attributes | undefined;
  /** The source, held open until the copy has its name: checked once more then. */
  source: Source;
  dir: DirFd;
  /** Where `dir` is: the directory of the job's `dest`, or one numbered on the way (common/numbered-dirs.ts). */
  at: string;
  name: string;
  tmp: string;
  /** Whether `tmp` was created (by us: O_EXCL), and so is ours to remove. */
  made: boolean;
  fd: number | undefined;
  /** The mtime the storage's file system clamped (CopyResult). */
  mtimeClamped?: CopyResult['mtimeClamped'];
}

/**
 * Copies `src` (below the trusted `root`, and still `expect`) to `dest` below the storage target `base`.
 * A destination that is this file's copy (its size, mtime and checksum: identicalAt) is left as it is; one
 * holding a different file too, and the copy goes beside it under a numbered name (CopyResult).
 */
export function copyAtomic(src: string, root: string, dest: string, base: string, opts: CopyOptions, expect: Identity, sweep = false): CopyResult {
  const [outcome] = copyMany([{ src, root, dest, expect, sweep }], base, opts);
  if (outcome instanceof Error) throw outcome;
  return outcome!;
}

/**
 * Makes several copies (each as copyAtomic; a failure is that copy's alone) in three passes: all written to
 * their temp names, all flushed, all given their names. A batch of small files so goes to the disk together
 * (and on a journaled file system shares commits among its fsyncs), as `cp` then `sync` of the same files
 * would (BENCHMARKS.md); every file is still flushed before it gets its final name (G3).
 */
export function copyMany(jobs: CopyWork[], base: string, opts: CopyOptions, progress: Progress = noProgress): Array<CopyResult | Error> {
  const dirs = new HeldDirs(opts.preserveUid || opts.preserveGid);
  // Whether copies are read back: write() skips the source's hash exactly when check() will read the copy.
  const verify = opts.verifyCopies !== false;
  try {
    const outcomes: Array<CopyResult | Error> = [];
    const written: Array<Written | undefined> = jobs.map((job, i) => {
      try {
        const w = write(job, base, opts, verify, dirs, progress);
        if ('outcome' in w) outcomes[i] = w;
        return 'outcome' in w ? undefined : w;
      } catch (e) {
        outcomes[i] = asError(e);
        return undefined;
      }
    });
    const settle = (pass: (w: Written, i: number) => void): void => written.forEach((w, i) => {
      if (!w) return;
      try {
        pass(w, i);
        progress();
      } catch (e) {
        discard(w);
        written[i] = undefined;
        outcomes[i] = asError(e);
      }
    });
    settle(flush);
    settle((w) => check(w, verify, progress));
    settle((w, i) => {
      outcomes[i] = commit(w, verify, progress);
    });
    return outcomes;
  } finally {
    dirs.close();
  }
}

/** `e` as an Error (DirFd's own name directories as a person would). */
function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Copy directories whose owners this thread has made right, by storage, directory and file owner: checked
 * once each, as a directory's owner changes only through grimseld (a user cannot give a directory to
 * someone else), and files of different owners in one directory do not hand it back and forth on every batch.
 */
const ownedDirs = new Set<string>();
const OWNED_DIRS_MAX = 4096;

/** `p` below `base` as a relative path; refused when it is not below it. */
function below(base: string, p: string): string {
  const rel = path.relative(base, p);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new UnsafePath(`${p} is not below ${base}`);
  return rel;
}

/** The source of `job`, opened and checked (copy-source.ts), with its directory held in `dirs`. */
function openJobSource(job: CopyWork, dirs: HeldDirs): { source: Source; held: SourceDir } {
  const [dirRel, name] = splitRel(below(job.root, job.src));
  // A missing root is an unmounted ramdisk or storage: an error, retried.
  dirs.root(job.root);
  let held: SourceDir;
  try {
    held = dirs.source(job.root, dirRel);
  } catch (e) {
    // Its directory removed (by the user, or the shift's clean-up): the file is gone with it.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new SourceChanged(`${job.src} is gone (${(e as Error).message})`);
    throw e;
  }
  return { source: openSource(held.dir, name, job.expect, job.src), held };
}

/** Checks the source and the directory, and writes the data, owner, mode and mtime to a temp name. */
function write(job: CopyWork, base: string, opts: CopyOptions, verify: boolean, dirs: HeldDirs, progress: Progress): Written | CopyResult {
  let opened: { source: Source; held: SourceDir };
  try {
    opened = openJobSource(job, dirs);
  } catch (e) {
    // Gone or another file now: its copy may be there all the same, made by a grimseld whose journal was lost since
    // (a state_dir restored from a backup, G12). Taken only when its bytes have the file's checksum (I2).
    const there = e instanceof SourceChanged ? copiedBefore(job, base, progress) : undefined;
    if (there) return there;
    throw e;
  }
  const { source, held } = opened;
  const s = source.st;
  let w: Written | undefined;
  try {
    const [dirRel, name] = splitRel(below(base, job.dest));
    const owner: [number, number] = [opts.preserveUid ? s.uid : -1, opts.preserveGid ? s.gid : -1];
    // Missing directories are made one at a time, refusing links; a link on the way makes this throw,
    // naming it. Keeping owners, every directory on the way gets its owner (ownersAsSource): those found
    // once per thread, directory and file owner, those made whenever they are made.
    // A name on the way held by a file gives the directory a numbered name (common/numbered-dirs.ts): `at` is
    // where the copy's directory is below `base`, and the copy's name is reported there.
    // Never grimseld's own mark (storage-marks.ts) from an operator, whoever owns the file and whatever the owner
    // options: with preserve_uid and preserve_gid off every copy is root's, as the mark is, so a planted one would
    // pass for grimseld's (found by a reviewer).
    if (job.byOperator && dirRel === '' && name === MARK_FILE) {
      throw new RefusedDir(`${path.join(base, name)} is grimseld's own mark of the storage's disk: an operator's AddFile never puts a file there`);
    }
    let into: NumberedDir;
    if (opts.preserveUid || opts.preserveGid) {
      const key = `${base}\0${dirRel}\0${s.uid}:${s.gid}`;
      const give = ownerVisit(ownersAsSource(held, depthOf(dirRel), s, owner), job.byOperator);
      // An operator's copy looks at every directory each time (operators add few files): none is changed for it.
      const known = !job.byOperator && ownedDirs.has(key);
      into = dirs.storage(base, dirRel, known ? (d, st, made, i) => { if (made) give(d, st, made, i); } : give,
        `${s.uid}:${s.gid}${job.byOperator ? ':op' : ''}`, job.mount);
      if (!known && !job.byOperator) {
        if (ownedDirs.size >= OWNED_DIRS_MAX) ownedDirs.clear();
        ownedDirs.add(key);
      }
      // And a user's file an operator adds goes only into a directory of that user's: not into a shared one of
      // root's (`1mf/`, the storage's target itself), where its name could be a later shift's directory or image,
      // or grimseld's own mark (storage-marks.ts). One below the `./` that is theirs is made theirs (G3).
      if (job.byOperator && owner[0] > 0) {
        const at = fstatSync(into.dir.fd);
        if (at.uid !== owner[0]) {
          throw new RefusedDir(`${into.dir.show()} is ${at.uid === 0 ? 'root' : `uid ${at.uid}`}'s, and the file uid ${owner[0]}'s: an operator's ` +
            "AddFile puts a user's file only into a directory of that user's, such as one of theirs after the './' (/home/u/./run1/f.img)");
        }
      }
    } else {
      into = dirs.storage(base, dirRel, undefined, '', job.mount);
    }
    const { dir } = into;
    const at = into.rel === dirRel ? path.dirname(job.dest) : path.join(base, into.rel);
    // First: a killed attempt may have left its temp name next to a copy it had already linked into place.
    if (job.sweep) sweepStale(dir, name, opts.tempKey);
    // A file without a checksum (an operator's, or furkad's delivered without one) is hashed here only when a file
    // of its size and mtime is there already: size and mtime alone do not make that its copy (G3, G12, I2).
    let read: string | undefined;
    const checksum = (): string => job.checksum ?? (read ??= checksumOfSource(source, job, progress));
    const there = identicalAt(dir, name, s, checksum, verify, progress);
    if (there !== undefined) {
      closeSync(source.fd);
      return { outcome: 'identical', dest: path.join(at, there.name), verified: there.verified, ...(read !== undefined ? { checksum: read } : {}) };
    }
    // Hashed already: the copy is checked against that, as against a checksum it was delivered with.
    const known = job.checksum ?? read;
    w = { job, base, checksum: '', verified: false, attributes: undefined, source, dir, at, name,
      tmp: tempName(opts.tempKey, name), made: false, fd: undefined };
    // EXCL and NOFOLLOW: a planted name is never written through (nor removed: `made` stays false).
    w.fd = dir.openFile(w.tmp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    w.made = true;
    // The source's mode, but never a set-id copy: that would hand a user a root-owned setuid program made
    // by grimseld (root) with preserve_uid = no. Images need none.
    fchmodSync(w.fd, s.mode & 0o1777);
    // I2: the bytes are the file's, or this copy is not made. With the copy read back (check()) against a known
    // checksum, that read-back proves it: hashing the source as well would cost a second hash of every byte and
    // prove nothing more (whatever the source held when it was read, the copy holds it now). Otherwise the
    // source is hashed as it is read; a file without a checksum gets the one of this read (the dispatcher makes
    // it the file's).
    const readBack = verify && known !== undefined;
    const copied = copyData(source.fd, job.src, w.fd, s.size, progress, !readBack);
    if (copied !== undefined && known !== undefined && copied !== known) {
      // A writer that rewrote the file meanwhile changed its mtime or size: that is a changed source (not
      // retried, as before checksums). The same size and mtime with other bytes is what only the checksum sees.
      if (!isDelivered(fstatSync(source.fd), job.expect)) throw new SourceChanged(`${job.src} changed while it was copied`);
      throw ChecksumMismatch.source(job.src, known, copied);
    }
    w.checksum = (known ?? copied)!;
    w.mtimeClamped = keepTimes(w.fd, source, job.src, job.dest);
    if (opts.preserveUid || opts.preserveGid) fchownSync(w.fd, owner[0], owner[1]);
    return w;
  } catch (e) {
    if (w) discard(w);
    else closeSync(source.fd);
    throw e;
  }
}

/**
 * Gives the copy open as `fd` the source's times to the microsecond (F3, G3; common/file-times.ts: a time before
 * 1970 as well). A time the storage's file system cannot store is clamped by the kernel to the edge of its range:
 * such a copy is taken (G3's measure knows the clamp, so its original is cleaned up at the shift change, G5) and
 * returned for the dispatcher to say. So is a time a file system with coarse times cut down to its step (exFAT,
 * ext3, FAT: coarseStep), as `cp -p` gets there. Any other time than the one set is not a faithful copy: an
 * error, retried, the original kept, with what the file system made of the time.
 */
function keepTimes(fd: number, source: Source, src: string, dest: string): CopyResult['mtimeClamped'] {
  const stored = setFileTimes(fd, source.atimeNs, source.mtimeNs);
  if (storeableMtime(source.mtimeNs, stored)) return undefined;
  const wanted = toMicrosecond(source.mtimeNs);
  const asMs = (ns: bigint): number => Number(ns / 1000n) / 1000;
  const stepMs = coarseStep(fd, source.atimeNs, source.mtimeNs, stored);
  if (stepMs !== undefined) return { wanted: String(wanted), stored: String(stored), stepMs };
  const says = `the file system of ${dest} cannot store the mtime of ${src}, ${shownTime(wanted)}: it kept ${shownTime(stored)}`;
  if (!sameSizeAndMtime({ size: 0, mtimeMs: asMs(wanted) }, { size: 0, mtimeMs: asMs(stored) })) {
    throw new Error(`${says}; the copy would not be faithful (G3), so it is not made and the original stays`);
  }
  return { wanted: String(wanted), stored: String(stored) };
}

/** An mtime in ns since the epoch, for a message: ISO 8601 where Date reaches (±275 760 years), and the seconds. */
function shownTime(ns: bigint): string {
  const sec = Number(ns / 1000n) / 1e6;
  const d = new Date(Math.floor(sec * 1000)); // the millisecond it is in (Date cuts toward 1970)
  return `${Number.isNaN(d.getTime()) ? '' : `${d.toISOString()} = `}${sec} s`;
}

/**
 * Copies exactly the `size` bytes the source had when it was checked into `out`, and ends whatever the source
 * does meanwhile (G3, G12). fs.copyFileSync did this in the kernel, but libuv's loop around sendfile (Node
 * 20's libuv 1.46) asks for the bytes still missing until it has them all: a source that shrank, or a /proc or
 * /sys file whose size is a guess (4096 for /sys/kernel/uevent_seqnum, a few bytes to read), has none, every
 * call returns 0 and the loop spins at 100 % CPU for ever, holding its copy thread and so every later file of
 * the storage. Here the end of the data before `size` is a changed source, and no more than `size` bytes are
 * read, so a growing source cannot keep a copy going either (it then fails the check in commit()). Without `out`,
 * the bytes are only hashed (checksumOfSource).
 */
function copyData(fd: number, src: string, out: number | undefined, size: number, progress: Progress, hash: boolean): string | undefined {
  chunk ??= Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const buf = chunk;
  // Each piece is hashed (`hash`) as it is read, before it is written: what is checked is what was read (I2).
  const sum = hash ? new Checksum() : undefined;
  try {
    for (let at = 0; at < size;) {
      const got = readSync(fd, buf, 0, Math.min(CHUNK_BYTES, size - at), at);
      if (got === 0) throw new SourceChanged(`${src} ended after ${at} of its ${size} bytes: it is not the delivered file any more`);
      sum?.update(buf.subarray(0, got));
      for (let done = 0; out !== undefined && done < got;) {
        const n = writeSync(out, buf, done, got - done, at + done);
        if (n <= 0) throw new Error(`writing a copy of ${src} made no progress`);
        done += n;
      }
      at += got;
      progress();
    }
  } catch (e) {
    sum?.discard();
    throw e;
  }
  return sum?.hexSync();
}

/**
 * Gives a written copy its provenance (I3) and flushes it: the attributes are the inode's, so the fsync makes
 * them as durable as the data before the copy has a name. The copy stays open for its check.
 */
function flush(w: Written): void {
  const { job } = w;
  w.attributes = stampCopy(w.base, w.fd!, { checksum: w.checksum, ...job.provenance });
  fsyncSync(w.fd!);
}

/** I2: reads the flushed copy back through its own descriptor (with `verify`) and closes it; a copy that differs throws. */
function check(w: Written, verify: boolean, progress: Progress): void {
  const fd = w.fd!;
  if (verify) {
    chunk ??= Buffer.allocUnsafeSlow(CHUNK_BYTES);
    const got = checksumOfCopy(fd, chunk, progress);
    if (got !== w.checksum) throw mismatchAt(w, got, progress);
    w.verified = true;
  }
  w.fd = undefined;
  closeSync(fd);
}

/**
 * What a copy read back as `got` (not the file's checksum) says: the source was not hashed as it was read
 * (write()), so it is read once more to tell a source that is no longer the delivered file (changed in place:
 * a file of the same size and mtime with other bytes) from a copy damaged on its way. Only on this rare path.
 * The second read stands for the first: a source that changed after it was read while the copy was damaged
 * too is reported as the source, and one read wrong only the first time as the copy. Either way nothing
 * counts, both checksums are named, and the copy is tried again. A source that cannot be read again leaves
 * the copy's mismatch, with why.
 */
function mismatchAt(w: Written, got: string, progress: Progress): Error {
  const { src, dest, expect } = w.job;
  let source: string;
  try {
    if (!isDelivered(fstatSync(w.source.fd), expect)) return new SourceChanged(`${src} changed while it was copied`);
    source = checksumOfCopy(w.source.fd, chunk!, progress);
  } catch (e) {
    const m = ChecksumMismatch.copy(dest, w.checksum, got);
    m.message += ` (reading the source again to compare failed: ${(e as Error).message})`;
    return m;
  }
  return source !== w.checksum ? ChecksumMismatch.source(src, w.checksum, source) : ChecksumMismatch.copy(dest, w.checksum, got);
}

/**
 * Gives a flushed copy its final name, unless its source changed meanwhile. The name is taken with link(),
 * which fails when it exists, atomically (another writer may be committing a different file of the same
 * destination this very moment): what is there already is never replaced. The same file there (size,
 * mtime: another attempt at this one) is taken as the copy; a different one, or anything not a regular
 * file, keeps its name and this copy takes the next numbered one. Every name is one of the held directory.
 */
function commit(w: Written, verify: boolean, progress: Progress): CopyResult {
  const { src, dest, expect } = w.job;
  // The source may have changed while we copied (the file read, not whatever has its name now).
  const now = fstatSync(w.source.fd);
  closeSync(w.source.fd);
  w.source.fd = -1;
  if (!isDelivered(now, expect)) throw new SourceChanged(`${src} changed while it was copied`);
  const made = (shown: string): CopyResult => ({ outcome: 'copied', dest: shown, checksum: w.checksum, verified: w.verified, attributes: w.attributes!,
    ...(w.mtimeClamped ? { mtimeClamped: w.mtimeClamped } : {}) });
  for (const name of candidateNames(w.name)) {
    const shown = path.join(w.at, name);
    if (takeName(w.dir, w.tmp, name)) return made(shown);
    const there = w.dir.lstat(name);
    if (there === undefined) {
      if (takeName(w.dir, w.tmp, name)) return made(shown); // removed meanwhile: free again
    } else if (there.isFile() && sameFile(there, expect)) {
      // Another attempt at this file got there first: that copy is taken if it is this file (I2), by the checksum
      // of the bytes just copied for a file delivered without one.
      const same = sameCopy(w.dir, name, w.checksum, verify, progress);
      if (same !== undefined) {
        discard(w);
        return { outcome: 'identical', dest: shown, verified: same.verified };
      }
    }
  }
  throw new Error(`${dest} and all its numbered names hold other files; not replacing any`);
}

/** Gives the temp file `tmp` of `dir` the name `name` there if nothing has it (true), never replacing anything. */
function takeName(dir: DirFd, tmp: string, name: string): boolean {
  try {
    dir.link(dir.at(tmp), name);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_HARD_LINKS.has(code)) throw e;
    // A storage without hard links (vfat, exFAT, some network file systems): check, then rename. Two
    // writers committing one destination within the same microseconds could still meet there.
    if (dir.lstat(name) !== undefined) return false;
    dir.rename(dir.at(tmp), name);
    return true;
  }
  dir.unlink(tmp);
  return true;
}

/** Closes and removes a temp file that will not become a copy, and closes its source. */
function discard(w: Written): void {
  for (const fd of [w.fd, w.source.fd]) {
    try {
      if (fd !== undefined && fd >= 0) closeSync(fd);
    } catch {
      // closed already
    }
  }
  w.fd = undefined;
  w.source.fd = -1;
  if (!w.made) return;
  w.made = false;
  try {
    w.dir.unlink(w.tmp);
  } catch {
    // already gone
  }
}

/**
 * Where in `dir` a copy of the file (`s`: its size and mtime; `checksum`: asked only once one of those is found,
 * and the file's) already is: `name`, or the numbered name an earlier attempt gave it beside a different file
 * (killed before its result was journaled); undefined when there is none, and there is something to copy.
 * Looks no further than the first free name.
 */
function identicalAt(dir: DirFd, name: string, s: Pick<Stats, 'size' | 'mtimeMs'>, checksum: () => string, verify: boolean,
  progress: Progress): { name: string; verified: boolean } | undefined {
  for (const n of candidateNames(name)) {
    const existing = dir.lstat(n);
    if (existing === undefined) return undefined;
    if (!existing.isFile() || !sameFile(existing, s)) continue;
    const same = sameCopy(dir, n, checksum(), verify, progress);
    if (same) return { name: n, ...same };
  }
  return undefined;
}

/**
 * Whether the regular file `name` of `dir`, of the size and mtime of the file being copied, is a copy of it
 * (I2): never when the checksum recorded on it (I3) is another one than the file's `checksum`; with that one
 * recorded, a copy grimseld made of it (a resume after a kill), and with `verify` only when its bytes have it
 * too (then `verified`). A file with no checksum recorded (another's, or on a storage that takes no attributes)
 * is a copy only when its bytes have it. Size and mtime alone never decide: a different file of the same size
 * and mtime (a name, length and time used again) taken for the copy lost the file once its original was
 * cleaned up (G3, G12). Undefined: another file, which keeps its name (the copy takes a numbered one).
 */
function sameCopy(dir: DirFd, name: string, checksum: string, verify: boolean, progress: Progress): { verified: boolean } | undefined {
  let fd: number;
  try {
    fd = dir.openFile(name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return undefined; // gone or swapped for something else meanwhile: not a copy to take
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const recorded = readProvenance(fd);
    if (recorded?.checksum && recorded.checksum !== checksum) return undefined;
    if (!verify && recorded?.checksum) return { verified: false };
    chunk ??= Buffer.allocUnsafeSlow(CHUNK_BYTES);
    return checksumOfCopy(fd, chunk, progress) === checksum ? { verified: true } : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * A copy of `job`'s file at its destination below `base` (or a numbered name beside it), found without its source:
 * only for a file with a checksum, and only when the copy's bytes have it (read back whatever `verify_copies` says),
 * so that a file whose original is gone is counted copied, not failed, when its copy is there and whole. Reached
 * without following links and without making a directory; undefined when there is none or it cannot be looked at.
 */
function copiedBefore(job: CopyWork, base: string, progress: Progress): CopyResult | undefined {
  if (job.checksum === undefined) return undefined;
  let held: { dir: DirFd; name: string } | undefined;
  try {
    held = DirFd.openParent(base, below(base, job.dest));
  } catch {
    return undefined;
  }
  if (!held) return undefined;
  const { name } = held;
  try {
    return DirFd.with(held.dir, (dir) => {
      const there = identicalAt(dir, name, job.expect, () => job.checksum!, true, progress);
      return there && { outcome: 'identical' as const, dest: path.join(path.dirname(job.dest), there.name), verified: there.verified };
    });
  } catch {
    return undefined;
  }
}

/**
 * The checksum of the `s.size` bytes of the source `job` delivered (a file without a checksum of its own), read
 * through its open descriptor; a source that ends early or is not the delivered file after the read is changed.
 */
function checksumOfSource(source: Source, job: CopyWork, progress: Progress): string {
  const hex = copyData(source.fd, job.src, undefined, source.st.size, progress, true)!;
  if (!isDelivered(fstatSync(source.fd), job.expect)) throw new SourceChanged(`${job.src} changed while it was read`);
  return hex;
}

/**
 * Removes from `dir` temp files an earlier, killed attempt at `name` left behind: only names made with `key`
 * (temp-names.ts), never a user's file that merely looks like one, nor a final name.
 */
function sweepStale(dir: DirFd, name: string, key: TempKey): void {
  let names: string[];
  try {
    names = dir.names();
  } catch {
    return;
  }
  for (const n of names) {
    if (!isOwnTempOf(key, n, name)) continue;
    try {
      dir.unlink(n);
    } catch {
      // gone meanwhile
    }
  }
}

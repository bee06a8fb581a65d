// One faithful, atomic copy (SPEC G3): temp name, data, owner, mode, mtime, fsync, rename. Never half a file
// under a final name; never through a symbolic link planted below the storage target.
//
// Synchronous, and run in a copy thread (copy-thread.ts): a copy is a dozen system calls of which only the
// fsync waits for anything, so one blocking call after another in one thread, as cp makes them, costs half
// the CPU of a trip through libuv's pool and back to the event loop for each (issue 7). Files waiting in
// numbers are copied a batch at a time (copyMany).
import { constants, closeSync, fchmodSync, fchownSync, fsyncSync, futimesSync, linkSync, lstatSync, openSync, readdirSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertNoLinks, dirState, makeDirsNoFollow, makeDirsOwned, type DirOwnerOf } from './safe-path.js';
import { candidateNames, NO_HARD_LINKS } from '../common/numbered-name.js';

export interface CopyOptions {
  preserveUid: boolean;
  preserveGid: boolean;
}

/** What the copied file must be: its size and mtime (and, on the ramdisk, its inode). */
export interface Identity {
  size: number;
  mtimeMs: number;
  ino?: number;
  dev?: number;
}

export type CopyOutcome = 'copied' | 'identical';

/**
 * A copy made (or found there already) and the name it has on the storage: the job's `dest`, or, when `dest`
 * holds a different file, a numbered name beside it (`dest.~1~`, numbered-name.ts). A complete copy of
 * another delivered file is never replaced (G3, G12).
 */
export interface CopyResult {
  outcome: CopyOutcome;
  dest: string;
}

/** The source no longer is the file that was delivered: copying it again cannot help. */
export class SourceChanged extends Error {}

/** Same size and same mtime (to the millisecond, what every copy path keeps) count as the same file. */
export function sameFile(a: Pick<Stats, 'size' | 'mtimeMs'>, b: Pick<Stats, 'size' | 'mtimeMs'>): boolean {
  return a.size === b.size && Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs);
}

function matches(st: Stats, id: Identity): boolean {
  return sameFile(st, id) && (id.ino === undefined || (st.ino === id.ino && st.dev === id.dev));
}

/** The source as it is now; a missing one is not the delivered file any more. */
function statSource(src: string): Stats {
  const st = statSync(src, { throwIfNoEntry: false });
  if (!st) throw new SourceChanged(`${src} is gone`);
  return st;
}

/** One copy to make: `src` (which must still be `expect`) to `dest` below the storage target. */
export interface CopyJob {
  src: string;
  dest: string;
  expect: Identity;
  /** An earlier attempt may have died mid-copy: remove its temp file first. */
  sweep: boolean;
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

/** A copy under way: its data is in `tmp` (open as `fd`), not yet flushed nor under its final name. */
interface Written {
  job: CopyJob;
  tmp: string;
  fd: number | undefined;
}

/**
 * Copies `src` (which must still be `expect`) to `dest` below the storage target `base`.
 * A destination with the source's size and mtime is left as it is; one holding a different file too, and
 * the copy goes beside it under a numbered name (CopyResult).
 */
export function copyAtomic(src: string, dest: string, base: string, opts: CopyOptions, expect: Identity, sweep = false): CopyResult {
  const [outcome] = copyMany([{ src, dest, expect, sweep }], base, opts);
  if (outcome instanceof Error) throw outcome;
  return outcome!;
}

/**
 * Makes several copies (each as copyAtomic; a failure is that copy's alone) in three passes: all written to
 * their temp names, all flushed, all renamed. A batch of small files so goes to the disk together (and on a
 * journaled file system shares commits among its fsyncs), as `cp` then `sync` of the same files would
 * (issue 7); every file is still flushed before it gets its final name (G3).
 */
export function copyMany(jobs: CopyJob[], base: string, opts: CopyOptions, progress: Progress = noProgress): Array<CopyResult | Error> {
  const outcomes: Array<CopyResult | Error> = [];
  const written: Array<Written | undefined> = jobs.map((job, i) => {
    try {
      const w = write(job, base, opts, progress);
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
  settle((w, i) => {
    outcomes[i] = commit(w, base);
  });
  return outcomes;
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Copy directories whose owners this thread has made right, by directory and file owner: checked once each. */
const ownedDirs = new Set<string>();
const OWNED_DIRS_MAX = 4096;

/**
 * Owners of the directories a copy goes into, with preserve_uid/gid (G3, G4): each mirrors its counterpart on
 * the source side. A directory whose source counterpart belongs to the file's owner (the shift's usrdir and
 * what is below it, which furkad gives the shift) is the owner's; any other (the per-detector directory, a
 * usrdir's parents, which furkad keeps root's; an operator's directory owned by someone else) is root's, so
 * a user never owns a directory that another shift's copies go into. grimseld needs no knowledge of usrdir
 * for this; an `AddFile` path is treated alike. The counterpart of the directory `index` levels below the
 * storage target is found by going up from the source's directory as far as the copy's directory is below it.
 */
function ownersAsSource(src: string, base: string, dir: string, s: Stats, owner: [number, number]): DirOwnerOf {
  const rel = path.relative(base, dir);
  const depth = rel === '' ? 0 : rel.split(path.sep).length;
  return (index) => {
    let p = path.dirname(src);
    for (let up = depth - 1; up > index; up--) p = path.dirname(p);
    const st = lstatSync(p, { throwIfNoEntry: false });
    return st?.isDirectory() && st.uid === s.uid && st.gid === s.gid ? owner : undefined;
  };
}

/** Checks the source and the directory, and writes the data, owner, mode and mtime to a temp name. */
function write(job: CopyJob, base: string, opts: CopyOptions, progress: Progress): Written | CopyResult {
  const { src, dest, expect } = job;
  const dir = path.dirname(dest);
  const s = statSource(src);
  if (!s.isFile()) throw new SourceChanged(`${src} is not a regular file`);
  if (!matches(s, expect)) throw new SourceChanged(`${src} is not the delivered file any more (size or mtime changed)`);

  const owner: [number, number] = [opts.preserveUid ? s.uid : -1, opts.preserveGid ? s.gid : -1];
  const preserving = opts.preserveUid || opts.preserveGid;
  const state = dirState(base, dir);
  const key = `${dir}\0${s.uid}:${s.gid}`;
  // Missing directories are made one at a time, refusing links; an unsafe one makes this throw, naming it.
  // Keeping owners, every directory on the way is checked too, once per thread and owner (see ownersAsSource).
  if (preserving && (state !== 'safe' || !ownedDirs.has(key))) {
    makeDirsOwned(base, dir, ownersAsSource(src, base, dir, s, owner));
    if (ownedDirs.size >= OWNED_DIRS_MAX) ownedDirs.clear();
    ownedDirs.add(key);
  } else if (state !== 'safe') {
    makeDirsNoFollow(base, dir);
  }
  if (state === 'safe') {
    // First: a killed attempt may have left its temp name next to a copy it had already linked into place.
    if (job.sweep) sweepStale(dest);
    const there = identicalAt(dest, s);
    if (there !== undefined) return { outcome: 'identical', dest: there };
  }

  const w: Written = { job, tmp: path.join(dir, `.${path.basename(dest)}.grimsel-${randomBytes(4).toString('hex')}`), fd: undefined };
  try {
    // EXCL and NOFOLLOW: a planted name is never written through.
    w.fd = openSync(w.tmp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    // The source's mode, but never a set-id copy: that would hand a user a root-owned setuid program made
    // by grimseld (root) with preserve_uid = no. Images need none.
    fchmodSync(w.fd, s.mode & 0o1777);
    copyData(src, w.fd, s.size, progress);
    futimesSync(w.fd, s.atimeMs / 1000, s.mtimeMs / 1000); // seconds with fraction: sub-ms precision
    if (opts.preserveUid || opts.preserveGid) fchownSync(w.fd, owner[0], owner[1]);
    return w;
  } catch (e) {
    discard(w);
    throw e;
  }
}

/**
 * Copies exactly the `size` bytes the source had when it was checked into `out`, and ends whatever the source
 * does meanwhile (G3, G12). fs.copyFileSync did this in the kernel, but libuv's loop around sendfile (Node
 * 20's libuv 1.46) asks for the bytes still missing until it has them all: a source that shrank, or a /proc or
 * /sys file whose size is a guess (4096 for /sys/kernel/uevent_seqnum, a few bytes to read), has none, every
 * call returns 0 and the loop spins at 100 % CPU for ever, holding its copy thread and so every later file of
 * the storage. Here the end of the data before `size` is a changed source, and no more than `size` bytes are
 * read, so a growing source cannot keep a copy going either (it then fails the check in commit()).
 */
function copyData(src: string, out: number, size: number, progress: Progress): void {
  chunk ??= Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const buf = chunk;
  const fd = openSync(src, constants.O_RDONLY | constants.O_NONBLOCK); // NONBLOCK: a FIFO swapped in never blocks us
  try {
    for (let at = 0; at < size;) {
      const got = readSync(fd, buf, 0, Math.min(CHUNK_BYTES, size - at), at);
      if (got === 0) throw new SourceChanged(`${src} ended after ${at} of its ${size} bytes: it is not the delivered file any more`);
      for (let done = 0; done < got;) {
        const n = writeSync(out, buf, done, got - done, at + done);
        if (n <= 0) throw new Error(`writing a copy of ${src} made no progress`);
        done += n;
      }
      at += got;
      progress();
    }
  } finally {
    closeSync(fd);
  }
}

/** fsyncs and closes a written copy. */
function flush(w: Written): void {
  const fd = w.fd!;
  w.fd = undefined;
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Gives a flushed copy its final name, unless its source changed meanwhile or a link appeared on the way.
 * The name is taken with link(), which fails when it exists, atomically (another writer may be committing a
 * different file of the same destination this very moment): what is there already is never replaced. The
 * same file there (size, mtime: another attempt at this one) is taken as the copy; a different one, or
 * anything not a regular file, keeps its name and this copy takes the next numbered one.
 */
function commit(w: Written, base: string): CopyResult {
  const { src, dest, expect } = w.job;
  // The source may have changed while we copied: then this copy is not the delivered file.
  if (!matches(statSync(src), expect)) throw new SourceChanged(`${src} changed while it was copied`);
  // A directory swapped for a link since it was checked must not redirect the rename.
  assertNoLinks(base, path.dirname(dest));
  for (const name of candidateNames(dest)) {
    if (takeName(w.tmp, name)) return { outcome: 'copied', dest: name };
    const there = lstatSync(name, { throwIfNoEntry: false });
    if (there === undefined) {
      if (takeName(w.tmp, name)) return { outcome: 'copied', dest: name }; // removed meanwhile: free again
    } else if (there.isFile() && sameFile(there, expect)) {
      discard(w);
      return { outcome: 'identical', dest: name };
    }
  }
  throw new Error(`${dest} and all its numbered names hold other files; not replacing any`);
}

/** Gives the temp file `tmp` the name `name` if nothing has it (true), never replacing anything. */
function takeName(tmp: string, name: string): boolean {
  try {
    linkSync(tmp, name);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_HARD_LINKS.has(code)) throw e;
    // A storage without hard links (vfat, exFAT, some network file systems): check, then rename. Two
    // writers committing one destination within the same microseconds could still meet there.
    if (lstatSync(name, { throwIfNoEntry: false }) !== undefined) return false;
    renameSync(tmp, name);
    return true;
  }
  unlinkSync(tmp);
  return true;
}

/** Closes and removes a temp file that will not become a copy. */
function discard(w: Written): void {
  try {
    if (w.fd !== undefined) closeSync(w.fd);
  } catch {
    // closed already
  }
  w.fd = undefined;
  try {
    unlinkSync(w.tmp);
  } catch {
    // never made, or already gone
  }
}

/**
 * Where a regular file with the size and mtime of `s` already is: `dest`, or the numbered name an earlier
 * attempt gave it beside a different file (killed before its result was journaled); undefined when there
 * is none, and there is something to copy. Looks no further than the first free name.
 */
function identicalAt(dest: string, s: Stats): string | undefined {
  for (const name of candidateNames(dest)) {
    const existing = lstatSync(name, { throwIfNoEntry: false });
    if (existing === undefined) return undefined;
    if (existing.isFile() && sameFile(existing, s)) return name;
  }
  return undefined;
}

/** Removes temp files an earlier, killed attempt at `dest` left behind (never a final name). */
function sweepStale(dest: string): void {
  const prefix = `.${path.basename(dest)}.grimsel-`;
  let names: string[];
  try {
    names = readdirSync(path.dirname(dest));
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    try {
      unlinkSync(path.join(path.dirname(dest), n));
    } catch {
      // gone meanwhile
    }
  }
}

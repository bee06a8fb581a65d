// One faithful, atomic copy (SPEC G3): temp name, data, owner, mode, mtime, fsync, rename. Never half a file
// under a final name; never through a symbolic link planted below the storage target.
//
// Synchronous, and run in a copy thread (copy-thread.ts): a copy is a dozen system calls of which only the
// fsync waits for anything, so one blocking call after another in one thread, as cp makes them, costs half
// the CPU of a trip through libuv's pool and back to the event loop for each (issue 7).
import { constants, closeSync, copyFileSync, fchmodSync, fchownSync, fsyncSync, futimesSync, lstatSync, openSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertNoLinks, dirState, makeDirsNoFollow } from './safe-path.js';

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

/**
 * Copies `src` (which must still be `expect`) to `dest` below the storage target `base`.
 * A destination with the source's size and mtime is left as it is.
 */
export function copyAtomic(src: string, dest: string, base: string, opts: CopyOptions, expect: Identity, sweep = false): CopyOutcome {
  const dir = path.dirname(dest);
  const s = statSource(src);
  if (!s.isFile()) throw new SourceChanged(`${src} is not a regular file`);
  if (!matches(s, expect)) throw new SourceChanged(`${src} is not the delivered file any more (size or mtime changed)`);

  const owner: [number, number] = [opts.preserveUid ? s.uid : -1, opts.preserveGid ? s.gid : -1];
  // Missing directories are made one at a time, refusing links; an unsafe one makes this throw, naming it.
  if (dirState(base, dir) !== 'safe') makeDirsNoFollow(base, dir, owner);
  else if (sameFileAt(dest, s)) return 'identical';
  if (sweep) sweepStale(dest);

  const tmp = path.join(dir, `.${path.basename(dest)}.grimsel-${randomBytes(4).toString('hex')}`);
  try {
    // copy_file_range / sendfile in the kernel; EXCL so a planted name is never written through.
    copyFileSync(src, tmp, constants.COPYFILE_EXCL);
    const fd = openSync(tmp, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      futimesSync(fd, s.atimeMs / 1000, s.mtimeMs / 1000); // seconds with fraction: sub-ms precision
      if (opts.preserveUid || opts.preserveGid) fchownSync(fd, owner[0], owner[1]);
      // Never a set-id copy: copyFile carries the source's set-id bits over to a file grimseld (root) made,
      // which would hand a user a root-owned setuid program with preserve_uid = no. Images need none.
      if ((s.mode & 0o6000) !== 0) fchmodSync(fd, s.mode & 0o1777);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // The source may have changed while we copied: then this copy is not the delivered file.
    if (!matches(statSync(src), expect)) throw new SourceChanged(`${src} changed while it was copied`);
    // A directory swapped for a link since it was checked must not redirect the rename.
    assertNoLinks(base, dir);
    const target = lstatSync(dest, { throwIfNoEntry: false });
    if (target && !target.isFile()) throw new Error(`${dest} exists and is not a regular file; not replacing it`);
    renameSync(tmp, dest);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // never made, or already gone
    }
    throw e;
  }
  return 'copied';
}

/** Whether `dest` is a regular file with the size and mtime of `s` (then there is nothing to copy). */
function sameFileAt(dest: string, s: Stats): boolean {
  const existing = lstatSync(dest, { throwIfNoEntry: false });
  return existing !== undefined && existing.isFile() && sameFile(existing, s);
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

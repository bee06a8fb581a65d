// One faithful, atomic copy (SPEC G3): temp name, data, owner, mode, mtime, fsync, rename. Never half a file
// under a final name; never through a symbolic link planted below the storage target.
import { constants } from 'node:fs';
import { copyFile, open, readdir, rename, stat, unlink, lstat } from 'node:fs/promises';
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
async function statSource(src: string): Promise<Stats> {
  return stat(src).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') throw new SourceChanged(`${src} is gone`);
    throw e;
  });
}

/**
 * Copies `src` (which must still be `expect`) to `dest` below the storage target `base`.
 * A destination with the source's size and mtime is left as it is.
 *
 * Look-ups that do not depend on each other run at once (issue 7: a small file's copy is mostly waiting
 * for one request after another): the source, the directory and the destination before the copy; the
 * source again while the copy is flushed; the directory and the destination again while it is closed.
 */
export async function copyAtomic(src: string, dest: string, base: string, opts: CopyOptions, expect: Identity, sweep = false): Promise<CopyOutcome> {
  const dir = path.dirname(dest);
  const [s, where, existing] = await Promise.all([statSource(src), dirState(base, dir), lstat(dest).catch(() => undefined)]);
  if (!s.isFile()) throw new SourceChanged(`${src} is not a regular file`);
  if (!matches(s, expect)) throw new SourceChanged(`${src} is not the delivered file any more (size or mtime changed)`);

  const owner: [number, number] = [opts.preserveUid ? s.uid : -1, opts.preserveGid ? s.gid : -1];
  // Missing directories are made one at a time, refusing links; an unsafe one makes this throw, naming it.
  if (where !== 'safe') await makeDirsNoFollow(base, dir, owner);
  else if (existing?.isFile() && sameFile(existing, s)) return 'identical';
  if (sweep) await sweepStale(dest);

  const tmp = path.join(dir, `.${path.basename(dest)}.grimsel-${randomBytes(4).toString('hex')}`);
  try {
    // copy_file_range / sendfile in the kernel; EXCL so a planted name is never written through.
    await copyFile(src, tmp, constants.COPYFILE_EXCL);
    // The source may have changed while we copied: then this copy is not the delivered file.
    const sourceAfter = stat(src).then((st) => ({ st }), (e: Error) => ({ e }));
    const fh = await open(tmp, constants.O_RDWR | constants.O_NOFOLLOW);
    let closing: Promise<void> | undefined;
    try {
      const meta = [fh.utimes(s.atimeMs / 1000, s.mtimeMs / 1000)]; // seconds with fraction: sub-ms precision
      if (opts.preserveUid || opts.preserveGid) meta.push(fh.chown(owner[0], owner[1]));
      // Never a set-id copy: copyFile carries the source's set-id bits over to a file grimseld (root) made,
      // which would hand a user a root-owned setuid program with preserve_uid = no. Images need none.
      if ((s.mode & 0o6000) !== 0) meta.push(fh.chmod(s.mode & 0o1777));
      await Promise.all(meta);
      await fh.sync();
      closing = fh.close();
      const [after, whereNow, target] = await Promise.all([sourceAfter, dirState(base, dir), lstat(dest).catch(() => undefined), closing]);
      if ('e' in after) throw after.e;
      if (!matches(after.st, expect)) throw new SourceChanged(`${src} changed while it was copied`);
      // A directory swapped for a link since it was checked must not redirect the rename.
      if (whereNow !== 'safe') await assertNoLinks(base, dir);
      if (target && !target.isFile()) throw new Error(`${dest} exists and is not a regular file; not replacing it`);
    } finally {
      if (!closing) await fh.close();
      else await closing.catch(() => {});
    }
    await rename(tmp, dest);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return 'copied';
}

/** Removes temp files an earlier, killed attempt at `dest` left behind (never a final name). */
async function sweepStale(dest: string): Promise<void> {
  const prefix = `.${path.basename(dest)}.grimsel-`;
  const names = await readdir(path.dirname(dest)).catch(() => [] as string[]);
  for (const n of names) if (n.startsWith(prefix)) await unlink(path.join(path.dirname(dest), n)).catch(() => {});
}

/** fsyncs a directory so that renames into it survive a crash of the machine (before deleting originals). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

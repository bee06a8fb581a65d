// One faithful, atomic copy (SPEC G3): temp name, data, times, owner, fsync, rename. Never half a file under a final name.
import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, rename, stat, unlink, chown } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface CopyOptions {
  preserveUid: boolean;
  preserveGid: boolean;
}

export type CopyOutcome = 'copied' | 'identical';

/** Same size and same mtime (to the millisecond, what every copy path keeps) count as the same file. */
export function sameFile(a: Stats, b: Stats): boolean {
  return a.size === b.size && Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs);
}

/** Creates the missing directories of `dir` below `base`, owned like the file they are made for. */
async function makeParents(base: string, dir: string, src: Stats, opts: CopyOptions): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (!first || (!opts.preserveUid && !opts.preserveGid)) return;
  const uid = opts.preserveUid ? src.uid : -1;
  const gid = opts.preserveGid ? src.gid : -1;
  // chown every directory mkdir created, from the first one down to `dir` (never `base` itself).
  for (let d = dir; d.length >= first.length && d.startsWith(base) && d !== base; d = path.dirname(d)) {
    await chown(d, uid, gid);
  }
}

/**
 * Copies `src` to `dest`; `base` is the storage target (directories above it are not created).
 * A destination with the source's size and mtime is left as it is.
 */
export async function copyAtomic(src: string, dest: string, base: string, opts: CopyOptions): Promise<CopyOutcome> {
  const s = await lstat(src);
  if (!s.isFile()) throw new Error(`${src} is not a regular file`);
  const existing = await stat(dest).catch(() => undefined);
  if (existing && sameFile(existing, s)) return 'identical';

  const dir = path.dirname(dest);
  await makeParents(base, dir, s, opts);
  const tmp = path.join(dir, `.${path.basename(dest)}.grimsel-${randomBytes(4).toString('hex')}`);
  try {
    // copy_file_range / sendfile in the kernel; EXCL so a planted name is never written through.
    await copyFile(src, tmp, constants.COPYFILE_EXCL);
    const fh = await open(tmp, 'r+');
    try {
      if (opts.preserveUid || opts.preserveGid) {
        await fh.chown(opts.preserveUid ? s.uid : -1, opts.preserveGid ? s.gid : -1);
        await fh.chmod(s.mode & 0o7777); // chown clears set-id bits; keep the source's mode
      }
      await fh.utimes(s.atimeMs / 1000, s.mtimeMs / 1000); // seconds with fraction: sub-ms precision
      await fh.sync();
    } finally {
      await fh.close();
    }
    // The source may have changed while we copied: then this copy is not the file that was delivered.
    const after = await lstat(src);
    if (!sameFile(after, s)) throw new Error(`${src} changed while it was copied`);
    await rename(tmp, dest);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return 'copied';
}

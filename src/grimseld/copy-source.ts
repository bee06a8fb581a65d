// The file a copy reads (G3; docs/threat-model.md): reached from a trusted directory without following links,
// opened once, and checked on that descriptor to be the delivered file. Its data, owner, mode and times are
// all taken from that one descriptor, so a copy never holds one file's bytes under another file's owner:
// what a user swaps in at the last moment is either refused or copied with its own owner and mode, which
// lets nobody read what they could not read before.
import { sameCopyOf } from '../common/file-times.js';
import { closeSync, constants, fstatSync, type Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import type { DirFd } from '../common/dir-fd.js';

/**
 * What the copied file must be: its size and mtime, and, for an original (on the ramdisk or added by an
 * operator), its inode. An internal copy read for another storage (G6 without links) has no inode recorded.
 */
export interface Identity {
  size: number;
  mtimeMs: number;
  ino?: number;
  dev?: number;
}

/** The source no longer is the file that was delivered: copying it again cannot help. */
export class SourceChanged extends Error {}

/**
 * G3's measure of the same file (common/file-times.ts), by the name grimseld's modules know it: whether `copy`
 * (a file on a storage, or the original itself) is a copy of the file `original` describes. A storage with
 * coarse times keeps the original's mtime cut to its step.
 */
export const sameFile = sameCopyOf;

/**
 * Whether a copy of the file `id` describes is at `at`: a regular file of its size and mtime, looked up by path (this
 * decides only what is copied again; deleting or linking an original checks its copy without following links).
 * Missing (ENOENT, ENOTDIR): false; any other failure is thrown.
 */
export async function copyIsAt(at: string, id: Identity): Promise<boolean> {
  const copy = await lstat(at).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
    throw e;
  });
  return copy?.isFile() === true && sameFile(copy, id);
}

/**
 * Whether `st` is the file `id` describes. With its inode known, that inode: a hard link to another file
 * swapped in under the name is another inode. Without (an internal copy on a storage, in a directory the
 * shift's user owns with preserve_uid), a single link: a hard link the user made to a file of someone else
 * has at least two (it and the other file's own name), while grimseld's copy has one once its temp name is
 * gone. Size and mtime alone would let a user who can choose both (touch, truncate on the detector) pass
 * off a root file of the same size and mtime as theirs.
 */
export function isDelivered(st: Stats, id: Identity): boolean {
  if (!sameFile(st, id)) return false;
  return id.ino === undefined ? st.nlink === 1 : st.ino === id.ino && st.dev === id.dev;
}

/** A source open for reading, and what it was when opened (its times also to the nanosecond, for the copy's). */
export interface Source {
  fd: number;
  st: Stats;
  atimeNs: bigint;
  mtimeNs: bigint;
}

/**
 * Opens entry `name` of the held directory `dir` for reading: O_NOFOLLOW (a link there is refused, never
 * followed), O_NONBLOCK (a FIFO swapped in never blocks the thread), O_NOCTTY. The descriptor must be a
 * regular file and the delivered one (isDelivered); `shown` names it in errors.
 */
export function openSource(dir: DirFd, name: string, expect: Identity, shown: string): Source {
  let fd: number;
  try {
    fd = dir.openFile(name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SourceChanged(`${shown} is gone`);
    if (code === 'ELOOP') throw new SourceChanged(`${shown} is a symbolic link now, not the delivered file`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SourceChanged(`${shown} is not a regular file`);
    if (!isDelivered(st, expect)) {
      throw new SourceChanged(`${shown} is not the delivered file any more (${!sameFile(st, expect) ? 'size or mtime changed'
        : expect.ino === undefined ? `${st.nlink} links to it` : 'another inode'})`);
    }
    const { atimeNs, mtimeNs, size } = fstatSync(fd, { bigint: true });
    // The same time read twice, once as a double of ms: that resolves 2 µs in the year 2500, and a margin of a
    // few of its steps keeps such a file from counting as changed (a SourceChanged original is not retried).
    const margin = 0.001 + Math.abs(st.mtimeMs) * Number.EPSILON * 8;
    if (size !== BigInt(st.size) || Math.abs(Number(mtimeNs) / 1e6 - st.mtimeMs) >= margin) throw new SourceChanged(`${shown} changed as it was opened`);
    return { fd, st, atimeNs, mtimeNs };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

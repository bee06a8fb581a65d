// Paths below a storage target or the ramdisk, walked without following symbolic links: a link planted
// in a user-owned directory must never make a root daemon write or delete outside (SPEC G3, G5, G6).
// Synchronous: the copy threads (copy-thread.ts) make a whole copy one blocking call after another, and
// the reclaimer's checks are a realpath(3) on the ramdisk or the internal disk, microseconds.
import { chmodSync, lchownSync, lstatSync, mkdirSync, realpathSync } from 'node:fs';
import * as path from 'node:path';

export class UnsafePath extends Error {}

/** The components of `dir` below `base` (both absolute; `dir` must be `base` or below it). */
function below(base: string, dir: string): string[] {
  const rel = path.relative(base, dir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new UnsafePath(`${dir} is not below ${base}`);
  return rel ? rel.split(path.sep) : [];
}

/**
 * Creates `dir` below `base` one component at a time, refusing any component that is a symbolic link
 * or not a directory. Directories it creates are root's (without preserve_uid/gid; see makeDirsOwned).
 */
export function makeDirsNoFollow(base: string, dir: string): void {
  // The base itself (a storage target) is the administrator's: created as root if missing.
  mkdirSync(base, { recursive: true, mode: 0o755 });
  let cur = base;
  for (const part of below(base, dir)) {
    cur = path.join(cur, part);
    const st = lstatSync(cur, { throwIfNoEntry: false });
    if (!st) {
      try {
        mkdirSync(cur, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const made = lstatSync(cur);
      if (!made.isDirectory()) throw new UnsafePath(`${cur} is not a directory (replaced while being created?)`);
    } else if (st.isSymbolicLink()) {
      throw new UnsafePath(`refusing to follow the symbolic link ${cur}`);
    } else if (!st.isDirectory()) {
      throw new UnsafePath(`${cur} is not a directory`);
    }
  }
}

/**
 * Who owns the directory at `index` below the base on the way to a copy's directory: [uid, gid] (-1 keeps that
 * one), or undefined for root (a directory several shifts share, SPEC G3, F4).
 */
export type DirOwnerOf = (index: number) => [number, number] | undefined;

/**
 * As makeDirsNoFollow, and every directory on the way, made or found, gets the owner `ownerOf` gives it. One
 * that must be root's and is not (made by the user of an earlier shift, before shared directories were root's)
 * is given back to root and loses its group and other write bits: otherwise its owner could make, and later
 * delete, the directories another user's copies go into. Walked from the base down, so each directory's parent
 * is already root's (or the administrator's) when it is changed: nobody else can swap it meanwhile.
 */
export function makeDirsOwned(base: string, dir: string, ownerOf: DirOwnerOf): void {
  mkdirSync(base, { recursive: true, mode: 0o755 });
  let cur = base;
  below(base, dir).forEach((part, i) => {
    cur = path.join(cur, part);
    let st = lstatSync(cur, { throwIfNoEntry: false });
    if (!st) {
      try {
        mkdirSync(cur, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      st = lstatSync(cur);
    }
    if (st.isSymbolicLink()) throw new UnsafePath(`refusing to follow the symbolic link ${cur}`);
    if (!st.isDirectory()) throw new UnsafePath(`${cur} is not a directory`);
    const owner = ownerOf(i);
    if (owner) {
      const [uid, gid] = owner;
      if ((uid !== -1 && st.uid !== uid) || (gid !== -1 && st.gid !== gid)) lchownSync(cur, uid, gid);
      return;
    }
    if (st.uid === 0 && st.gid === 0 && (st.mode & 0o022) === 0) return;
    lchownSync(cur, 0, 0);
    // lchown made it root's, so a link swapped in meanwhile would be root's link now: checked before chmod follows it.
    const now = lstatSync(cur);
    if (!now.isDirectory() || now.uid !== 0) throw new UnsafePath(`${cur} changed while being given back to root`);
    if ((now.mode & 0o022) !== 0) chmodSync(cur, now.mode & 0o7755);
  });
}

/** What `dir` below `base` is: a real directory reached through real directories only, missing, or not that. */
export type DirState = 'safe' | 'missing' | 'unsafe';

/** realpath(3) of directory `p`; undefined when missing, '' when a component is a file or a link loop. */
function resolvedDir(p: string): string | undefined {
  try {
    return realpathSync.native(`${p}/.`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR' || code === 'ELOOP') return '';
    throw e;
  }
}

/**
 * Checks every component of `dir` below `base` in one call (issue 7: one request instead of an lstat per
 * component): realpath(3) resolves every link on the way, so `dir` resolves to the resolved `base` plus
 * the same components exactly when none of them is a link and each is a directory (the trailing '/.'
 * makes the last one count too). The base itself is the administrator's and may be a link.
 */
export function dirState(base: string, dir: string): DirState {
  const parts = below(base, dir);
  const b = resolvedDir(base);
  if (b === undefined) return 'missing';
  if (b === '') return 'unsafe';
  if (!parts.length) return 'safe';
  const d = resolvedDir(dir);
  if (d === undefined) return 'missing';
  return d === path.join(b, ...parts) ? 'safe' : 'unsafe';
}

/** Throws unless every component of `dir` below `base` is a real directory (no symbolic link); `state` if known. */
export function assertNoLinks(base: string, dir: string, state = dirState(base, dir)): void {
  if (state !== 'safe') throw new UnsafePath(`${dir} is not a real directory below ${base} (${state === 'missing' ? 'missing' : 'a symbolic link or a file on the way'})`);
}

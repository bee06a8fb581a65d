// Empty directories of ended shifts below a target are removed, so that a ramdisk does not collect one empty
// usrdir per shift (F4, G5: grimseld deletes an ended shift's files once copied; their directories are furkad's).
//
// Safe by construction: rmdir(2) removes only an empty directory, atomically, so a file anybody puts into a
// directory first keeps it; every directory is reached through open handles without following links
// (common/dir-fd.ts), since users own their usrdirs; and the sweep runs in the detector's loop, never beside
// this detector's own placing. A directory the current shift uses is never touched, nor staging, nor a
// directory owned by root (the target's shared parents of a usrdir such as `users/` of `users/$UID`).
import { fstatSync } from 'node:fs';
import { DirFd } from '../common/dir-fd.js';
import { STAGING_NAME } from '../common/paths.js';

/**
 * Whether detector path `rel` (relative to its source) has furkad's staging name as any of its directories:
 * placed with usrdir empty, it would land in furkad's own staging (a record of set-aside files, another file's
 * fetch name), at the top of its target or, where one detector's target holds another's, in that one's.
 */
export function isStagingName(rel: string): boolean {
  return rel.split('/').includes(STAGING_NAME);
}

/** What a sweep did: directories removed, and ones it could not look into (named in the log by the caller). */
export interface SweepResult {
  removed: number;
  errors: string[];
}

/**
 * Removes empty directories below `target` that belong to no current shift: everything except `current`
 * (the current shift's usrdir relative to the target; '' = the target itself, then nothing is swept, since
 * every shift shares it) and the directories leading to it.
 */
export function sweepEndedShifts(target: string, current: string): SweepResult {
  const result: SweepResult = { removed: 0, errors: [] };
  const keep = current.split('/').filter((p) => p !== '' && p !== '.');
  if (keep.length === 0) return result;
  let top: DirFd;
  try {
    top = DirFd.open(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw e;
  }
  DirFd.with(top, () => sweep(top, keep, result, 0));
  return result;
}

const MAX_DEPTH = 64;

/** Sweeps below `dir`; `keep` is the rest of the current usrdir's path from here ([] = nothing kept below). True when `dir` is now empty. */
function sweep(dir: DirFd, keep: string[], result: SweepResult, depth: number): boolean {
  let entries;
  try {
    entries = dir.entries();
  } catch (e) {
    result.errors.push(`${dir.show()}: ${(e as Error).message}`);
    return false;
  }
  let left = entries.length;
  for (const e of entries) {
    if (!e.isDirectory() || depth >= MAX_DEPTH) continue;
    if (depth === 0 && e.name === STAGING_NAME) continue;
    const onKeptPath = keep[0] === e.name;
    if (onKeptPath && keep.length === 1) continue; // the current shift's usrdir itself
    let child: DirFd;
    try {
      child = dir.child(e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') result.errors.push(`${dir.show(e.name)}: ${(err as Error).message}`);
      continue;
    }
    const removable = DirFd.with(child, (c) => {
      const empty = sweep(c, onKeptPath ? keep.slice(1) : [], result, depth + 1);
      return empty && !onKeptPath && fstatSync(c.fd).uid !== 0;
    });
    if (!removable) continue;
    try {
      if (dir.rmdirIfEmpty(e.name)) {
        result.removed++;
        left--;
      }
    } catch (err) {
      result.errors.push(`${dir.show(e.name)}: ${(err as Error).message}`);
    }
  }
  return left === 0;
}

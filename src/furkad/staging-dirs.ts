// Empty directories in a detector's staging (`<target>/.furkad-staging/<ID>/`), left behind by placing (F1, F2).
//
// rsync (and the agent transport's fetches) receive a file into staging under its source's relative path, making that path's directories there;
// placing then renames the file out of staging into the shift's directory, and nothing removed the directory it
// left. So staging kept an empty copy of every source directory ever pulled (a `run_NNNN` per dataset: hundreds
// a day, and across restarts), each a directory entry and an inode on the PPU ramdisk for good.
//
// Called between runs only: the detector's loop runs one transport run at a time, and the run has placed every
// file it offered and its rsync has exited (the agent's: its fetches have ended) before run() returns, so nothing is
// receiving into staging then. rmdir(2)
// removes only an empty directory all the same (a file there keeps it, and with it its parents). Staging is root's
// alone (0700, docs/threat-model.md); it is walked through held handles without following links regardless.
import { rmdir } from 'node:fs/promises';
import * as path from 'node:path';
import { DirFd, leftAsIs } from '../common/dir-fd.js';
import { dirsOf } from '../common/paths.js';

/** Deeper than any path furkad takes (rsync-depth.ts keeps a file's path within PATH_MAX): never reached. */
const MAX_DEPTH = 2048;

/**
 * Removes the empty directories below `staging` (never `staging` itself), deepest first; returns how many. A
 * directory that is not empty, gone or not a directory by the time it is removed is left as it is. A missing
 * `staging` has nothing to remove.
 */
export function removeEmptyStagingDirs(staging: string): number {
  let top: DirFd;
  try {
    top = DirFd.open(staging);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  const removed = { n: 0 };
  DirFd.with(top, (d) => emptyBelow(d, removed, 0));
  return removed.n;
}

/**
 * After a run: the directories in `staging` of the files it took (`rels`, relative to staging), each removed if
 * placing emptied it, and its parents with it up to staging (never staging itself), deepest first; returns how
 * many. A directory still holding a file (one that could not be placed, waiting for room) stays, and its parents.
 */
export async function removeEmptiedParents(staging: string, rels: Iterable<string>, onRemoved?: (dir: string) => void): Promise<number> {
  const dirs = dirsOf(rels);
  let removed = 0;
  // Deepest first, so that a parent is looked at once its children are gone. A directory rsync made is a real one
  // of root's in staging: rmdir never follows a final link, and no one but root makes anything here.
  for (const d of [...dirs].sort((a, b) => b.split('/').length - a.split('/').length)) {
    try {
      await rmdir(path.join(staging, d));
      removed++;
      onRemoved?.(path.join(staging, d));
    } catch (e) {
      if (!leftAsIs(e)) throw e;
    }
  }
  return removed;
}

/** Removes the empty directories below `dir`; true when `dir` is empty now. */
function emptyBelow(dir: DirFd, removed: { n: number }, depth: number): boolean {
  const entries = dir.entries();
  let left = entries.length;
  for (const e of entries) {
    if (!e.isDirectory() || depth >= MAX_DEPTH) continue;
    let child: DirFd;
    try {
      child = dir.child(e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') left--;
      continue;
    }
    if (!DirFd.with(child, (c) => emptyBelow(c, removed, depth + 1))) continue;
    if (dir.rmdirIfEmpty(e.name)) {
      removed.n++;
      left--;
    }
  }
  return left === 0;
}

// Walks a directory below the root for regular files, by bytes and without following links (A2).
import { fstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { DirFd } from '../common/dir-fd.js';
import { dirId, type DirId } from './watch-check.js';

export interface Found {
  /** Path relative to the root, as bytes. */
  rel: Buffer;
  stat: BigIntStats;
}

const SLASH = Buffer.from('/');

/**
 * Directories whose absolute path is this long (bytes) or longer are neither watched nor walked: PATH_MAX (4096)
 * less room for one name below, and for the '@' and newline of inotifywait's list: it reads that list with
 * fgets(4096), so the longest excluded path ('@' + a parent just short of this + '/' + a 255-byte name) must fit
 * one line (a longer line was split, and its tail taken for a path to watch: found by a review). inotifywait gives up its whole walk at a path longer than PATH_MAX ("File name
 * too long"), so one such tree, which any user may make, stopped the agent from starting, or took every watch
 * away (found by a hostile tester); and neither furkad nor grimseld could place or copy a file of that depth.
 * Such a directory is refused (reported, its files left on the detector) and excluded from inotifywait's walk.
 */
export const DEEP_MAX = 4096 - 258;

/** Whether directory `rel` below `root` is too deep to watch or walk (DEEP_MAX). */
export function tooDeep(root: string, rel: Buffer): boolean {
  return Buffer.byteLength(root) + 1 + rel.length >= DEEP_MAX;
}

/**
 * The directories below `root` too deep to watch (tooDeep), the first of each branch, as paths below it: what
 * inotifywait is told to leave out (`@DIR`). Directories only, their types from the listing (no stat per entry).
 */
export function deepDirs(root: string): Buffer[] {
  const deep: Buffer[] = [];
  const walk = (dir: DirFd, at: Buffer): void => {
    let entries;
    try {
      entries = readdirSync(`/proc/self/fd/${dir.fd}`, { withFileTypes: true, encoding: 'buffer' });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const child = joinRel(at, e.name);
      if (tooDeep(root, child)) deep.push(child);
      else descend(dir, e.name, child, walk);
    }
  };
  try {
    DirFd.with(DirFd.open(root), (top) => walk(top, Buffer.alloc(0)));
  } catch { /* no root: nothing to leave out */ }
  return deep;
}

/** Walks subdirectory `name` of `dir` (`child` below the root) with `walk`, opened without following a link; skipped if it cannot be. */
function descend(dir: DirFd, name: Buffer, child: Buffer, walk: (sub: DirFd, at: Buffer) => void): void {
  let sub: DirFd;
  try {
    sub = dir.child(name);
  } catch {
    return;
  }
  try {
    walk(sub, child);
  } finally {
    sub.close();
  }
}

export function joinRel(dir: Buffer, name: Buffer): Buffer {
  return dir.length ? Buffer.concat([dir, SLASH, name]) : name;
}

/**
 * Every regular file below `rel` (recursively). Directories are entered only if they really are directories,
 * each opened without following a link from the one open above it (common/dir-fd.ts): a directory swapped for a
 * link during the walk is skipped, never listed (docs/threat-model.md); files and directories that vanish meanwhile are skipped.
 * `dirs`, if given, gets every directory walked, `rel` itself included: identity -> path (watch-check.ts).
 * Directories too deep to watch (tooDeep) are not entered: `deep` is told of each.
 */
export function scanFiles(root: string, rel: Buffer, dirs?: Map<DirId, Buffer>, deep?: (rel: Buffer) => void): Found[] {
  const found: Found[] = [];
  const walk = (dir: DirFd, at: Buffer): void => {
    if (dirs) {
      try {
        dirs.set(dirId(fstatSync(dir.fd, { bigint: true })), at);
      } catch { /* not to be checked then */ }
    }
    let names: Buffer[];
    try {
      names = dir.list();
    } catch {
      return;
    }
    for (const name of names) {
      const child = joinRel(at, name);
      let stat: BigIntStats | undefined;
      try {
        stat = dir.lstatBig(name);
      } catch {
        continue;
      }
      if (stat?.isDirectory()) {
        if (tooDeep(root, child)) deep?.(child);
        else descend(dir, name, child, walk);
      } else if (stat?.isFile()) {
        found.push({ rel: child, stat });
      }
    }
  };
  let top: DirFd;
  try {
    top = DirFd.open(root);
  } catch {
    return found;
  }
  try {
    DirFd.with(top.walk(rel), (start) => walk(start, rel));
  } catch {
    // The start is gone, or reached only through a link: nothing below it to announce.
  } finally {
    top.close();
  }
  return found;
}

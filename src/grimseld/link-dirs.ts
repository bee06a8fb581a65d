// The directories in which the fill guards replaced originals by links to their copies (G6, G7), per shift:
// what the shift-change clean-up (G5) sweeps once that shift has ended.
//
// A file's record is dropped once every copy is done and its original is linked (the catalog keeps live
// records only: a long shift at 100 Hz links millions), so nothing would remember those links, and they
// stayed for good, dangling once their copy went. One entry per directory and shift, not per file: a
// handful per shift, journaled the first time a link is made there and dropped once swept.
//
// The sweep removes only what such a link is: a symbolic link named N that reads `${to}/N` (or the numbered
// name its copy got there), made before the current shift started (its ctime, which no user can set). So a
// later shift of the same user, writing into the same directory, keeps its own links, and a user's own links
// (anything else) are left alone (G2). The directory is reached from the root without following links
// (common/dir-fd.ts); removing a link loses no data: its copy stays.
import { opendir, readlink, unlink } from 'node:fs/promises';
import { DirFd, UnsafePath } from '../common/dir-fd.js';
import { numberedName } from '../common/numbered-name.js';

/** Where the links were made, below which root, and the directory their copies are in. */
export interface LinkDir {
  /** The ramdisk (G6: links to internal copies) or the internal storage (G7: links to external copies). */
  where: 'ramdisk' | 'internal';
  /** The directory below grimseld's ramdisk `target` or the internal storage's target. */
  dir: string;
  /** The absolute directory the links point into: a link named N there is ours when it reads `${to}/N`. */
  to: string;
}

export class LinkDirs {
  #byShift = new Map<bigint, Map<string, LinkDir>>();

  has(u: bigint, d: LinkDir): boolean {
    return this.#byShift.get(u)?.has(keyOf(d)) === true;
  }

  add(u: bigint, d: LinkDir): void {
    let dirs = this.#byShift.get(u);
    if (!dirs) this.#byShift.set(u, (dirs = new Map()));
    dirs.set(keyOf(d), d);
  }

  /** Forgets shift `u`'s directories (swept). */
  drop(u: bigint): void {
    this.#byShift.delete(u);
  }

  /** Shifts that started before `u`, with their directories. */
  before(u: bigint): Array<[bigint, LinkDir[]]> {
    return [...this.#byShift].filter(([s]) => s < u).map(([s, dirs]) => [s, [...dirs.values()]]);
  }

  /** Every directory held, with its shift. */
  *entries(): Generator<[bigint, LinkDir]> {
    for (const [u, dirs] of this.#byShift) for (const d of dirs.values()) yield [u, d];
  }

  get size(): number {
    let n = 0;
    for (const dirs of this.#byShift.values()) n += dirs.size;
    return n;
  }
}

function keyOf(d: LinkDir): string {
  return `${d.where}\0${d.dir}\0${d.to}`;
}

/** Whether `text` is what a fill guard's link named `name` in a directory of `d` reads (its copy's path). */
export function isGuardLink(d: LinkDir, name: string, text: string): boolean {
  if (!text.startsWith(`${d.to}/`)) return false;
  const base = text.slice(d.to.length + 1);
  if (base === name) return true;
  const n = /\.~([1-9][0-9]{0,3})~$/.exec(base);
  return n !== null && numberedName(name, Number(n[1])) === base;
}

/**
 * Removes the fill guards' links in `d` (below `root`) made before `beforeUs` (µs since the epoch); returns how
 * many. A directory that is gone, or that a user replaced by a link or a file, has nothing of ours left to
 * sweep: 0. Other failures throw (the clean-up tries again later), a missing root (not mounted) among them.
 */
export async function sweepLinkDir(root: string, d: LinkDir, beforeUs: bigint): Promise<number> {
  const top = DirFd.open(root); // a root that is missing (not mounted) throws: the sweep waits for it
  let dir: DirFd;
  try {
    dir = top.walk(d.dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof UnsafePath || code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return 0;
    throw e;
  } finally {
    top.close();
  }
  const before = Number(beforeUs) / 1000;
  let removed = 0;
  try {
    // Iterated in batches: a directory of 100 000 links does not hold up grimseld's event loop.
    for await (const e of await opendir(`/proc/self/fd/${dir.fd}`)) {
      if (!e.isSymbolicLink()) continue;
      const st = dir.lstat(e.name);
      if (!st?.isSymbolicLink() || st.ctimeMs >= before) continue;
      const text = await readlink(dir.at(e.name) as string).catch(() => undefined);
      if (text === undefined || !isGuardLink(d, e.name, text)) continue;
      await unlink(dir.at(e.name));
      removed++;
    }
  } finally {
    dir.close();
  }
  return removed;
}

// The regular files below one of furkad's own directories (staging, settling copies, probe copies, keeping places),
// by their paths relative to it: one walk for all of them, which differ only in what a missing directory means and
// in which files count. A directory that goes away during the walk holds nothing; `dir` itself must be a directory,
// not a link to one (the walk never leaves the tree it was given).
import { lstat, readdir } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import * as path from 'node:path';

export interface FilesBelowOptions {
  /** A missing `dir` is no files (the default) or the error it is. */
  missing?: 'none' | 'throw';
  /** Which regular files count (`full`: its path, `name`: its last part); all when not given. */
  keep?: (full: string, name: string) => boolean | Promise<boolean>;
}

const gone = (e: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '');

/** Regular files below `dir`, relative to it. */
export async function filesBelow(dir: string, opts: FilesBelowOptions = {}): Promise<string[]> {
  try {
    if (!(await lstat(dir)).isDirectory()) return [];
  } catch (e) {
    if (opts.missing === 'throw' || !gone(e)) throw e;
    return [];
  }
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    } catch (e) {
      if (rel !== '' && gone(e)) return;
      throw e;
    }
    for (const e of entries) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else if (e.isFile() && (!opts.keep || await opts.keep(path.join(dir, r), e.name))) found.push(r);
    }
  };
  await walk('');
  return found;
}

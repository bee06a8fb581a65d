// Walks a directory below the root for regular files, by bytes and without following links (A2).
import { fstatSync, type BigIntStats } from 'node:fs';
import { DirFd } from '../common/dir-fd.js';
import { dirId, type DirId } from './watch-check.js';

export interface Found {
  /** Path relative to the root, as bytes. */
  rel: Buffer;
  stat: BigIntStats;
}

const SLASH = Buffer.from('/');

export function joinRel(dir: Buffer, name: Buffer): Buffer {
  return dir.length ? Buffer.concat([dir, SLASH, name]) : name;
}

/**
 * Every regular file below `rel` (recursively). Directories are entered only if they really are directories,
 * each opened without following a link from the one open above it (common/dir-fd.ts): a directory swapped for a
 * link during the walk is skipped, never listed (docs/threat-model.md); files and directories that vanish meanwhile are skipped.
 * `dirs`, if given, gets every directory walked, `rel` itself included: identity -> path (watch-check.ts).
 */
export function scanFiles(root: string, rel: Buffer, dirs?: Map<DirId, Buffer>): Found[] {
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
        let sub: DirFd;
        try {
          sub = dir.child(name);
        } catch {
          continue;
        }
        try {
          walk(sub, child);
        } finally {
          sub.close();
        }
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

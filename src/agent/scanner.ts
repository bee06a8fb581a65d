// Walks a directory below the root for regular files, by bytes and without following links (SPEC A2).
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs';

export interface Found {
  /** Path relative to the root, as bytes. */
  rel: Buffer;
  stat: BigIntStats;
}

const SLASH = Buffer.from('/');

/** `root` joined with a relative byte path (empty = the root itself). */
export function joinRoot(root: Buffer, rel: Buffer): Buffer {
  return rel.length ? Buffer.concat([root, SLASH, rel]) : root;
}

export function joinRel(dir: Buffer, name: Buffer): Buffer {
  return dir.length ? Buffer.concat([dir, SLASH, name]) : name;
}

/**
 * Every regular file below `rel` (recursively). Directories are entered only if they really are directories
 * (lstat: a link to a directory is not followed); files and directories that vanish meanwhile are skipped.
 */
export function scanFiles(root: Buffer, rel: Buffer): Found[] {
  const found: Found[] = [];
  const walk = (dir: Buffer): void => {
    let names: Buffer[];
    try {
      names = readdirSync(joinRoot(root, dir), { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const name of names) {
      const child = joinRel(dir, name);
      let stat: BigIntStats;
      try {
        stat = lstatSync(joinRoot(root, child), { bigint: true });
      } catch {
        continue;
      }
      if (stat.isDirectory()) walk(child);
      else if (stat.isFile()) found.push({ rel: child, stat });
    }
  };
  walk(rel);
  return found;
}

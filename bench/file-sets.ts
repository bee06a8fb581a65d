// Sets of same-sized files written once, moved into place in one rename, and counted where they land.
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export interface FileSet {
  names: string[];
  bytes: number;
}

/** Writes `count` files of `size` bytes into `dir` (created). */
export function writeSet(dir: string, count: number, size: number): FileSet {
  mkdirSync(dir, { recursive: true });
  const data = new Uint8Array(size).fill(0xa5);
  const names = Array.from({ length: count }, (_, i) => `f${String(i).padStart(6, '0')}.raw`);
  for (const n of names) writeFileSync(path.join(dir, n), data);
  return { names, bytes: count * size };
}

/** Moves a staged set directory into place at once (a detector finishing a scan, as far as a puller can see). */
export function moveInto(staged: string, dest: string): number {
  mkdirSync(path.dirname(dest), { recursive: true });
  renameSync(staged, dest);
  return performance.now();
}

/** Complete files (no temp `.name.XXXX`) in `dir`. */
export function countFinal(dir: string): number {
  try {
    return readdirSync(dir).filter((n) => !n.startsWith('.')).length;
  } catch {
    return 0;
  }
}

/** Resolves with performance.now() when `dir` holds `count` complete files; rejects after `timeoutMs`. */
export async function whenComplete(dir: string, count: number, timeoutMs: number, what: string): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const now = performance.now();
    if (countFinal(dir) >= count) return now;
    if (now > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${countFinal(dir)}/${count} in ${dir})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

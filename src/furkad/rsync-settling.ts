// Where settle mode's copies of files still settling live (F2, settle_ms): beside staging, never in it. A first run
// copies every detector file there and removes nothing, so what is there was never known complete: its writer may
// still be at work, may delete it, may rename it away. Staging holds only what a removing run put there (rsync puts
// a file in place before the daemon removes its source), so a furkad stopped or killed at any moment finds in
// staging only complete files (taken, perhaps not yet placed: they are placed), and here only copies (dropped: a
// source still on the detector is copied again).
import { rename, rm, mkdir, lstat } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { filesBelow } from './files-below.js';

/** The copies of files still settling of the detector whose staging is `staging`: `<target>/.furkad-staging/.settling/<id>`. */
export function settlingDir(staging: string): string {
  return path.join(path.dirname(staging), '.settling', path.basename(staging));
}

/**
 * Drops the copies below `settling` no run of this furkad made (`known` says which it did): an earlier furkad's,
 * stopped or killed while they settled. Returns the ones dropped that were only copies: not those also in
 * `staging`, which are the second links of files a removing run took (--link-dest), complete there. `create`:
 * makes `settling` (root's alone) for the first runs to come.
 */
export async function dropUnknownCopies(settling: string, staging: string, known: (rel: string) => boolean, create: boolean): Promise<string[]> {
  const dropped: string[] = [];
  for (const rel of await filesBelow(settling)) {
    if (known(rel)) continue;
    await rm(path.join(settling, rel), { force: true });
    if (!(await lstat(path.join(staging, rel)).catch(() => undefined))) dropped.push(rel);
  }
  if (create) await mkdir(settling, { recursive: true, mode: 0o700 });
  return dropped;
}

/**
 * The copy of `rel` a first run made, no longer needed: the file is in staging (the copy's second link, or sent
 * again). Dropped before the file is placed, so that a placed file never shares its inode with a copy here.
 */
export function dropCopy(settling: string, rel: string): void {
  rmSync(path.join(settling, rel), { force: true });
}

/**
 * A file a removing run put in staging but whose source changed while it was sent (rsync kept the source): not
 * known complete, so it goes back among the copies still settling. Dropped if it cannot be moved there.
 */
export async function backToSettling(staging: string, settling: string, rel: string): Promise<void> {
  try {
    await mkdir(path.dirname(path.join(settling, rel)), { recursive: true, mode: 0o700 });
    await rename(path.join(staging, rel), path.join(settling, rel));
  } catch {
    await rm(path.join(staging, rel), { force: true });
  }
}

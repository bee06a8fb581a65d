// mkdir -p that says why it failed. Node's recursive mkdir reports ENOENT where a directory on the way could not be
// made for lack of room (a ramdisk out of inodes): "ENOENT: no such file or directory, mkdir …/staging/run" sent
// furkad's messages and the administrator after a missing directory (hostile tester h15).
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';

/** Makes `dir` and the directories above it (`mode`); fails with the error of the first one that cannot be made. */
export async function makeDirs(dir: string, mode: number): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    // Each one on the way by itself, from the top: the one that fails says why (ENOSPC), or all are made now.
    const parts: string[] = [];
    for (let d = path.resolve(dir); d !== path.dirname(d); d = path.dirname(d)) parts.unshift(d);
    for (const d of parts) {
      await mkdir(d, { mode }).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
    }
  }
}

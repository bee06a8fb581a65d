// Moving a staged file to a keeping place on another file system, where rename(2) gives EXDEV: a file owed to an
// ended shift whose target is not the new shift's target's file system (A5). Done so that a furkad killed at any
// step loses nothing and leaves no half file under a final name: the copy is made under a temp name beside the
// keeping place (same file system), with the staged file's owner, mode, times and provenance (I3), flushed, read
// back against the file's checksum (I1, I2), renamed into place, and only then is the staged file removed. Killed
// before the rename, the staged file is still there and moved again (the temp directory is cleared first); killed
// after it, both exist, the same file: moved again, the kept copy is replaced by an identical one, and placing
// takes an identical file already placed for the one placed (ShiftDir.place), so it is placed once.
//
// Staging and keeping places are furkad's own, root-only directories (detector.ts): plain paths are used, as for
// the rename this stands in for.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Checksum, checksumOfHandle } from '../common/checksum.js';
import { readProvenance, writeProvenance } from '../common/provenance.js';
import { setFileTimes } from '../common/file-times.js';

const CHUNK_BYTES = 1 << 20;

/** The copy read back, or the source as it was read, is not the file its checksum says: nothing is moved. */
export class CopyMismatch extends Error {}

/**
 * Moves the regular file `src` to `dest` (another file system), by way of a temp file in `tempDir` (on `dest`'s
 * file system, not below `dest`'s directory tree that is walked for kept files). `tempDir` is made if need be.
 */
export async function moveAcross(src: string, dest: string, tempDir: string): Promise<void> {
  const from = await open(src, constants.O_RDONLY | constants.O_NOFOLLOW);
  let tmp: string | undefined;
  try {
    const st = await from.stat({ bigint: true });
    if (!st.isFile()) throw new Error(`${src} is not a regular file`);
    const recorded = readProvenance(from.fd);
    const expected = recorded?.checksum || undefined;
    await mkdir(tempDir, { recursive: true, mode: 0o700 });
    tmp = path.join(tempDir, randomBytes(8).toString('hex'));
    const to = await open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const read = await copyData(from, to, Number(st.size), src);
      if (expected !== undefined && read !== expected) throw new CopyMismatch(`${src} read as xxh128:${read}, not its recorded ${recorded!.recorded}: not moved`);
      // Owner before mode: chown clears set-id bits (the staged file has none, but the order is the safe one).
      await to.chown(Number(st.uid), Number(st.gid));
      await to.chmod(Number(st.mode) & 0o777);
      // The attributes the staged file carries (checksum, shift, detector), in the namespace this file system takes.
      if (recorded) writeProvenance(to.fd, recorded, recorded.namespace);
      setFileTimes(to.fd, st.atimeNs, st.mtimeNs);
      await to.sync();
      const back = await checksumOfHandle(to);
      if (back !== read) throw new CopyMismatch(`the copy of ${src} read back as xxh128:${back}, not xxh128:${read}: not moved`);
    } finally {
      await to.close();
    }
    await rename(tmp, dest);
    tmp = undefined;
    await syncDir(path.dirname(dest));
  } finally {
    await from.close();
    if (tmp !== undefined) await rm(tmp, { force: true });
  }
  await unlink(src);
}

/** Clears what a furkad killed while copying left in `tempDir` (the staged files are still there, moved again). */
export async function clearTemp(tempDir: string): Promise<void> {
  await rm(tempDir, { recursive: true, force: true });
}

/** Copies the `size` bytes of `from` into `to`, returning the checksum (hex) of what was read. */
async function copyData(from: FileHandle, to: FileHandle, size: number, src: string): Promise<string> {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(size, 1)));
  const sum = new Checksum();
  try {
    for (let at = 0; at < size;) {
      const { bytesRead } = await from.read(buf, 0, Math.min(buf.length, size - at), at);
      if (bytesRead === 0) throw new Error(`${src} ended after ${at} of its ${size} bytes`);
      sum.update(buf.subarray(0, bytesRead));
      for (let done = 0; done < bytesRead;) {
        const { bytesWritten } = await to.write(buf, done, bytesRead - done, at + done);
        done += bytesWritten;
      }
      at += bytesRead;
    }
  } catch (e) {
    sum.discard();
    throw e;
  }
  return sum.hex();
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

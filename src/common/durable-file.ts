// Small state files that must survive a crash or a power cut whole: the old content or the new, never a mix.
import { closeSync, constants, fsyncSync, futimesSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Writes `text` to `file`: a new file, flushed, renamed over the old one, the rename flushed. With `mtime`, the file
 * has that mtime from the moment it has its name.
 */
export function writeDurably(file: string, text: string, mode = 0o644, mtime?: Date): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, text); // all of it or an error: a bare write() may store a part (append-log.ts)
    if (mtime) futimesSync(fd, new Date(), mtime); // wall clock for the atime only (nothing reads it)
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true }); // a full disk: the old file stands, and no empty side file is left beside it
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
  fsyncDirOf(file);
}

/** Flushes the directory `file` is in: a rename into it is on disk once this returns. */
export function fsyncDirOf(file: string): void {
  const dir = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export interface DurableWriteOptions {
  mode?: number;
  /** What the side file's name adds to the file's (default ".tmp"). */
  suffix?: string;
  /** Asked after the side file is flushed: a rejection leaves the old file standing and removes the side file. */
  beforeRename?: () => Promise<void>;
}

/**
 * writeDurably for a directory others may write in too: the side file is made afresh, never through a link or over
 * one someone else made, and `beforeRename` can check that the directory is still the one meant.
 */
export async function writeDurablyAsync(file: string, text: string, options: DurableWriteOptions = {}): Promise<void> {
  const tmp = `${file}${options.suffix ?? '.tmp'}`;
  await unlink(tmp).catch(() => undefined);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, options.mode ?? 0o644);
  try {
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await options.beforeRename?.();
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, file);
  const dir = await open(path.dirname(file), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

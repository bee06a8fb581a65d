// Append-only JSON-lines files in a daemon's state directory (grimseld's journal, furkad's outbox).
import { fstatSync, ftruncateSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Reads `dir/name` for replay (the directory is created, a missing file reads as empty). A torn last
 * line (the process died mid-write) is cut off the file first: it would otherwise glue onto the next
 * record appended, or sit in the middle of the file later. Returns the complete lines.
 */
export function readAppendLog(dir: string, name: string): { file: string; lines: string[] } {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const file = path.join(dir, name);
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  if (complete.length !== text.length) truncateSync(file, Buffer.byteLength(complete));
  return { file, lines: complete.split('\n').filter(Boolean) };
}

// Appending lines. One write(2) to a nearly full file system may store only part of the text and report no
// error; the next part then fails with ENOSPC. Node's writeFile writes on until the text is stored or an error
// comes (a bare write() returns the short count: stored as if whole, the records behind the tear would be lost
// while their callers were told they are safe, and the torn line would make the file unreadable). On an error
// the part already stored is cut off again: the file keeps ending with a complete line, so the next append does
// not glue onto a torn one.

/** Appends `text` (whole lines) to the log open as `fd`: all of it, or nothing and an error. */
export function appendLinesSync(fd: number, text: string): void {
  const at = fstatSync(fd).size;
  try {
    writeFileSync(fd, text);
  } catch (e) {
    cutBack(e as Error, () => ftruncateSync(fd, at));
  }
}

/** As appendLinesSync, on a FileHandle; `then` (an fdatasync) counts as part of the write. */
export async function appendLines(fh: FileHandle, text: string, then?: () => Promise<void>): Promise<void> {
  const at = (await fh.stat()).size;
  try {
    await fh.writeFile(text);
    await then?.();
  } catch (e) {
    try {
      await fh.truncate(at);
    } catch (t) {
      throw tornError(e as Error, t as Error);
    }
    throw e;
  }
}

function cutBack(e: Error, truncate: () => void): never {
  try {
    truncate();
  } catch (t) {
    throw tornError(e, t as Error);
  }
  throw e;
}

function tornError(e: Error, t: Error): Error {
  return new Error(`${e.message}; and the part written could not be cut off again (${t.message}): the file ends in a torn line`);
}

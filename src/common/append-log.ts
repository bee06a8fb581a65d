// Append-only JSON-lines files in a daemon's state directory (grimseld's journal, furkad's outbox).
import { closeSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fsyncDirOf } from './durable-file.js';
import * as path from 'node:path';

/**
 * Reads `dir/name` for replay (the directory is created, a missing file reads as empty). A torn last
 * line (the process died mid-write) is cut off the file first: it would otherwise glue onto the next
 * record appended, or sit in the middle of the file later. Returns the complete lines, and the text cut ('' none).
 */
export function readAppendLog(dir: string, name: string): { file: string; lines: string[]; torn: string } {
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
  // What was cut (NUL bytes of a power cut's unwritten blocks left out), for a caller to say.
  return { file, lines: complete.split('\n').filter(Boolean), torn: text.slice(complete.length).replace(/\0+/g, '') };
}

// Appending lines. One write(2) to a nearly full file system may store only part of the text and report no
// error; the next part then fails with ENOSPC. Node's writeFile writes on until the text is stored or an error
// comes (a bare write() returns the short count: stored as if whole, the records behind the tear would be lost
// while their callers were told they are safe, and the torn line would make the file unreadable). On an error
// the part already stored is cut off again: the file keeps ending with a complete line, so the next append does
// not glue onto a torn one.

/**
 * Appends `text` (whole lines) to the log open as `fd`, `at` bytes long now (read from the file if not given): all
 * of it, or nothing and an error. Returns the log's length after it.
 */
export function appendLinesSync(fd: number, text: string, at = fstatSync(fd).size): number {
  const bytes = Buffer.from(text);
  try {
    writeFileSync(fd, bytes);
  } catch (e) {
    cutBack(e as Error, () => ftruncateSync(fd, at));
  }
  return at + bytes.length;
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

/**
 * A log of a daemon's own records that is written synchronously (furkad's outbox and placement records): appended
 * to, and rewritten from the records that still matter (`live`, from its owner's memory) when the file system is
 * full, since most of what such a log holds is over (acknowledged). Records are taken in memory first, then
 * written: a write that failed leaves the file `behind`, and the next write rewrites it whole (the records missed
 * included), so the file catches up by itself once there is room again, without a restart or a timer.
 */
export class RewritableLog {
  #fd: number;
  /** A write failed since the last one that succeeded: the file lacks records that memory has. */
  #behind = false;
  /**
   * The file's length, kept from its appends (this process alone writes it): two fstat(2) calls less for each
   * record, several per file furkad places (#13). Undefined after a failure or a rewrite: read from the file.
   */
  #size: number | undefined;
  /** What the last rewrite left in the file (its live records then): see grown(). */
  #rewrittenTo = 0;

  /**
   * `live()`: every record that still matters, as whole lines; what the file is rewritten to. `durable()`: whether
   * those records must outlive the machine now (see sync()): a rewrite is then flushed before and after its rename.
   */
  constructor(readonly file: string, private readonly live: () => string, private readonly durable: () => boolean = () => false) {
    this.#fd = openSync(file, 'a');
  }

  /**
   * Flushes what was appended so far to the disk. These logs need not outlive the machine as a rule (what they
   * describe lies on a tmpfs), but a record of something that does (a file on the detector owed to an ended shift)
   * is flushed once written: else a power cut soon after could lose it, or (a rewrite renamed over the file and
   * never flushed, which XFS may bring back empty) everything with it.
   */
  sync(): void {
    fdatasyncSync(this.#fd);
  }

  get size(): number {
    return this.#size ??= fstatSync(this.#fd).size;
  }

  /**
   * The file has grown past `floor` and to twice what its last rewrite left: time to rewrite it from `live()`.
   * Twice, not a fixed size: with more live records than `floor` (a backlog of acknowledgements owed), a fixed
   * size would rewrite the whole file on every record; so a rewrite costs at most what the appends since cost.
   */
  grown(floor: number): boolean {
    return this.size > Math.max(floor, 2 * this.#rewrittenTo);
  }

  /**
   * Appends `text` (whole lines, already taken in memory, so part of `live()`); a file behind, or one that does
   * not fit, is rewritten from `live()` instead. Throws the file system's error if neither fits (the file is left
   * as it was, and behind).
   */
  append(text: string): void {
    if (!this.#behind) {
      try {
        this.#size = appendLinesSync(this.#fd, text, this.size);
        return;
      } catch (e) {
        this.#size = undefined;
        if (!noRoom(e)) throw e;
      }
    }
    this.rewrite();
  }

  /**
   * Replaces the file by `live()`: through a new file renamed over it, so that it is whole at any instant; on a
   * file system too full for even that (a new file needs a block of its own), in place: cut to nothing, then
   * written again, which frees the space first (only a process killed between those two calls would lose the
   * records; these logs outlive the process, not the machine).
   */
  rewrite(): void {
    this.#behind = true;
    this.#size = undefined;
    const text = this.live();
    this.#rewrittenTo = Buffer.byteLength(text);
    const next = `${this.file}.new`;
    const durable = this.durable();
    try {
      const fd = openSync(next, 'w', fstatSync(this.#fd).mode & 0o777);
      try {
        writeFileSync(fd, text);
        if (durable) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(next, this.file);
      closeSync(this.#fd);
      this.#fd = openSync(this.file, 'a');
      if (durable) fsyncDirOf(this.file);
    } catch (e) {
      rmSync(next, { force: true });
      // In place only what surely fits in the room it frees: never cut a file to write one that does not fit.
      if (!noRoom(e) || Buffer.byteLength(text) > fstatSync(this.#fd).size) throw e;
      ftruncateSync(this.#fd, 0);
      appendLinesSync(this.#fd, text);
      if (durable) this.sync();
    }
    this.#behind = false;
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** A full file system (or quota): what a rewrite of the log's live records may cure. */
function noRoom(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
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

// furkad's hand-over outbox: files about to be placed are noted here before they get their final names,
// and acknowledged once grimseld has taken them, so a furkad killed in between re-sends them at its next
// start instead of leaving them on the ramdisk, never copied (F6, G12).
// No fsync: the files themselves live on a tmpfs, so the outbox only has to outlive the process. A full state_dir
// refuses a note (the files are not placed, and tried again); once there is room the file catches up by itself
// (RewritableLog).
import { lstatSync } from 'node:fs';
import { readAppendLog, RewritableLog } from '../common/append-log.js';
import * as path from 'node:path';
import { splitMarked, unmark } from '../common/paths.js';
import { DirFd, splitRel } from '../common/dir-fd.js';
import { walkNumbered } from '../common/numbered-dirs.js';
import { numberedName, MAX_NUMBERED } from '../common/numbered-name.js';
import type { DeliveredFile } from '../dbus/intake-interface.js';

export interface Unacked {
  id: number;
  usertime: bigint;
  uid: number;
  gid: number;
  /** Marked paths ('./') as handed to grimseld, each with its checksum ('' unknown) and detector (I1). */
  files: DeliveredFile[];
  /** `paths` are the names the files were placed under (not only the names they were to get). */
  placed: boolean;
}

/**
 * 'd': noted (`p`: as placed, replacing the note of the same id); 'a': acknowledged. `c` and `det` are the
 * files' checksums and detectors, in the order of `paths`; a note written before furkad kept them has neither.
 */
type Line = { t: 'd'; id: number; u: string; uid: number; gid: number; paths: string[]; c?: string[]; det?: string[]; p?: true } | { t: 'a'; id: number };

/** Rewrite the file from the notes still open once it has grown past this (most of it is acknowledged by then). */
const COMPACT_BYTES = 1 << 20;

export class Outbox {
  readonly #log: RewritableLog;
  /** The notes not yet acknowledged, by id: their latest lines (what a rewrite of the file keeps). */
  #open: Map<number, Line>;
  #nextId: number;

  private constructor(file: string, open: Map<number, Line>, nextId: number) {
    this.#open = open;
    this.#nextId = nextId;
    this.#log = new RewritableLog(file, () => [...this.#open.values()].map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  /**
   * Opens `dir/outbox.jsonl` and returns what was noted and never acknowledged. `torn`: the text of a last note
   * cut off mid-write ('' none: a power cut of the PPU leaves one), `damaged`: lines that are no note (skipped):
   * the files they named are not handed over by this start, and the caller says so.
   */
  static open(dir: string): { outbox: Outbox; unacked: Unacked[]; torn: string; damaged: number } {
    const { file, lines, torn } = readAppendLog(dir, 'outbox.jsonl');
    let damaged = 0;
    const noted = new Map<number, Unacked>();
    const open = new Map<number, Line>();
    let maxId = 0;
    for (const raw of lines) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        damaged++; // skipped, and said by the caller; the torn tail is already cut
        continue;
      }
      maxId = Math.max(maxId, line.id);
      if (line.t === 'd') {
        const files = line.paths.map((p, i): DeliveredFile => [p, line.c?.[i] ?? '', line.det?.[i] ?? '']);
        noted.set(line.id, { id: line.id, usertime: BigInt(line.u), uid: line.uid, gid: line.gid, files, placed: line.p === true });
        open.set(line.id, line);
      } else {
        noted.delete(line.id);
        open.delete(line.id);
      }
    }
    return { outbox: new Outbox(file, open, maxId + 1), unacked: [...noted.values()], torn, damaged };
  }

  /**
   * Notes files about to be placed; returns the id to acknowledge them by. Throws if the note cannot be written
   * (a full state_dir): then they must not be placed yet.
   */
  note(usertime: bigint, uid: number, gid: number, files: DeliveredFile[]): number {
    const id = this.#nextId++;
    const line: Line = { t: 'd', id, u: String(usertime), uid, gid, ...columns(files) };
    this.#open.set(id, line);
    try {
      this.#write(line);
    } catch (e) {
      this.#open.delete(id);
      throw e;
    }
    return id;
  }

  /**
   * Replaces the note `id` by the names its files were placed under, when some got a numbered name beside
   * another file (shift-dir.ts): a furkad killed before grimseld took them hands over those, not the names
   * that hold the other files.
   */
  /** Taken at once; written, or (a full state_dir: thrown) with the next write that fits. */
  placed(id: number, usertime: bigint, uid: number, gid: number, files: DeliveredFile[]): void {
    if (!this.#open.has(id)) return;
    const line: Line = { t: 'd', id, u: String(usertime), uid, gid, ...columns(files), p: true };
    this.#open.set(id, line);
    this.#write(line);
  }

  /** Taken at once; written, or (a full state_dir: thrown) with the next write that fits. */
  ack(ids: number[]): void {
    const known = ids.filter((id) => this.#open.delete(id));
    if (known.length === 0) return;
    if (this.#log.grown(COMPACT_BYTES)) {
      this.#log.rewrite();
      return;
    }
    this.#log.append(known.map((id) => `${JSON.stringify({ t: 'a', id })}\n`).join(''));
  }

  #write(line: Line): void {
    this.#log.append(`${JSON.stringify(line)}\n`);
  }

  close(): void {
    this.#log.close();
  }
}

/** A note's files as its line keeps them: paths, and checksums and detectors beside them. */
function columns(files: DeliveredFile[]): { paths: string[]; c: string[]; det: string[] } {
  return { paths: files.map((f) => f[0]), c: files.map((f) => f[1]), det: files.map((f) => f[2]) };
}

/**
 * The files of a note that an earlier furkad placed, to hand over again. A note made before placing names
 * the files as they were to be named: one killed between placing a file under a numbered name and writing
 * that name down (Outbox.placed) left it as `NAME.~N~`, so those that exist are handed over too. grimseld
 * takes a file it already has once (same inode, size, mtime). Which of NAME and NAME.~N~ is the file the
 * note's checksum belongs to is not known then: all of them go without a checksum (grimseld's verification
 * has nothing to go by for those), rather than one with a checksum of another file.
 */
export function placedFiles(note: Unacked): DeliveredFile[] {
  const found = new Map<string, DeliveredFile>();
  for (const f of note.files) if (isPlacedFile(f[0])) found.set(f[0], f);
  if (note.placed) return [...found.values()];
  // A file whose directory got a numbered name beside a file holding its name (Y.~1~/g.img for Y/g.img,
  // numbered-dirs.ts) is found there, under the name placing gives it; without its checksum, as below.
  const files = note.files.map((f): DeliveredFile => {
    const p = withPlacedDirs(f[0]);
    if (p !== f[0] && isPlacedFile(p)) found.set(p, [p, '', f[2]]);
    return p === f[0] ? f : [p, '', f[2]];
  });
  for (const [p, , detector] of files) {
    for (let n = 1; n <= MAX_NUMBERED && isPlacedFile(numberedName(p, n)); n++) {
      found.set(numberedName(p, n), [numberedName(p, n), '', detector]);
      if (found.has(p)) found.set(p, [p, '', detector]);
    }
  }
  return [...found.values()];
}

/**
 * `marked` with the directories below its './' as placing finds them now: the first of each name and its numbered
 * names that is a directory (numbered-dirs.ts); `marked` itself when they are the same or cannot be looked at.
 */
function withPlacedDirs(marked: string): string {
  const { root, rel } = splitMarked(marked);
  try {
    const [dirRel, name] = splitRel(rel);
    const held = DirFd.with(DirFd.open(root), (top) => walkNumbered(top, dirRel, false));
    held.dir.close();
    return held.rel === dirRel ? marked : `${root.replace(/\/+$/, '')}/./${path.posix.join(held.rel, name)}`;
  } catch {
    return marked;
  }
}

/** Whether a noted (marked) path was placed: a regular file under its final name. */
export function isPlacedFile(marked: string): boolean {
  try {
    return lstatSync(unmark(marked)).isFile();
  } catch {
    return false;
  }
}

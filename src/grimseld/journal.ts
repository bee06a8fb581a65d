// grimseld's write-ahead journal (G12): every accepted file and every state change is appended and
// fsync'ed before anyone is told, so a SIGKILL at any instant loses nothing. Replayed at start, compacted
// into a snapshot when it grows.
import { appendLines, readAppendLog } from '../common/append-log.js';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

/** One journal line. `u` is a shift start in µs (as a decimal string: JSON has no 64-bit integers). */
export type JournalRecord =
  /** `counts`: per storage, settled files [copied, failed, verified] (verified absent in journals before I2). */
  | { t: 'shift'; u: string; uid: number; gid: number; counts?: Record<string, SettledCounts> }
  /**
   * `c`: the checksum the file was delivered with (`xxh128:<hex>`, I1), `det`: its detector; both absent when unknown.
   * `keep`: an operator's file, copied only (NewFile.copyOnly); absent otherwise (in older journals also on an
   * operator's file off the ramdisk, whose copies are then made as root's AddFile's).
   */
  | { t: 'file'; id: number; u: string; src: string; rel: string; size: number; mtimeMs: number; ino: number; dev: number; c?: string; det?: string; keep?: true }
  /** The checksum of a file delivered without one (an operator's), from the first complete read of it (I2). */
  | { t: 'checksum'; id: number; c: string }
  /**
   * `rel`: the copy's path below the storage target when it is not the file's own (a numbered name, copier.ts);
   * `verified`: the copy was read back and had the file's checksum (I2).
   */
  | { t: 'copied'; id: number; s: string; rel?: string; verified?: true }
  | { t: 'failed'; id: number; s: string; permanent: boolean }
  /**
   * The copy on storage `s` is not there any more: the disk at its mount point is another one than the copy was
   * made on (storage-marks.ts). Pending there again; journals before it have none.
   */
  | { t: 'lost'; id: number; s: string }
  /**
   * Storage `s`'s copies are on the disk whose mark (storage-marks.ts) is `mark`, written in `target` (the storage's
   * target then: a target changed in grimseld.conf is told from another disk by it; journals before it have none).
   */
  | { t: 'mark'; s: string; mark: string; target?: string }
  | { t: 'ramdisk'; id: number; state: 'linked' | 'deleted' | 'gone' }
  | { t: 'internal'; id: number; state: 'linked' | 'deleted' | 'gone' }
  /** A fill guard made links in directory `d` below the ramdisk or internal root for shift `u` (link-dirs.ts). */
  | { t: 'linkdir'; u: string; w: 'ramdisk' | 'internal'; d: string; to: string }
  /** Shift `u`'s link directories were swept (G5): none of them is to be swept again. */
  | { t: 'linkdirs-swept'; u: string }
  /** A file furkad delivered for shift `u` as `src` (its marked path) that intake refused: failed on every storage (G9). */
  | { t: 'refused'; u: string; src: string };

/** Settled files of a shift on one storage: copied, failed, and of the copied ones verified (absent: 0). */
export type SettledCounts = [number, number] | [number, number, number];

export class Journal {
  #fh: FileHandle;
  #buffer: string[] = [];
  #waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  #flushing: Promise<void> | undefined;
  /** The batch being written now: it rejects when the batch could not be written. */
  #writing: Promise<void> | undefined;
  #compacting = false;
  #lines: number;

  private constructor(readonly file: string, fh: FileHandle, lines: number) {
    this.#fh = fh;
    this.#lines = lines;
  }

  /** Lines written since the last compaction (replayed lines included). */
  get lines(): number {
    return this.#lines;
  }

  /**
   * Opens (creating) the journal in `dir` and returns it with the records it holds, parsed one at a time
   * as they are iterated (once). A torn last line (the process died mid-write) is dropped: its writer was
   * never told it was stored. A corrupt line elsewhere throws, here for the first line and while iterating
   * for the others.
   */
  static async open(dir: string): Promise<{ journal: Journal; records: Iterable<JournalRecord> }> {
    const { file, lines } = readAppendLog(dir, 'journal.jsonl');
    const parse = (i: number): JournalRecord => {
      try {
        return JSON.parse(lines[i]!) as JournalRecord;
      } catch (e) {
        throw new Error(`${file}: line ${i + 1} is corrupt (${(e as Error).message}); refusing to guess. Move the file away to start empty: ` +
          `the delivered files on the ramdisk it held that are not copied yet are then named in an error half a minute after the start, ` +
          `with the command that hands them over (README: How grimseld never loses a file).`);
      }
    };
    for (let i = 0; i < lines.length; i++) parse(i); // refuse a corrupt journal before anything is opened
    const fh = await open(file, 'a');
    function* records(): Generator<JournalRecord> {
      for (let i = 0; i < lines.length; i++) yield parse(i);
    }
    return { journal: new Journal(file, fh, lines.length), records: records() };
  }

  /** Appends records; resolves once they are on disk (group commit: one fdatasync for all waiting). */
  append(...records: JournalRecord[]): Promise<void> {
    for (const r of records) this.#buffer.push(JSON.stringify(r));
    this.#lines += records.length;
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#flushing ??= this.#flush();
    return done;
  }

  /**
   * Resolves once every record appended so far is on disk (nothing of its own to write); rejects as the batch
   * that held them did: a caller who found its file already taken by a batch that failed is not told it is safe.
   */
  durable(): Promise<void> {
    // Records still in the buffer: wait with them (also across a compaction, which holds them back).
    if (this.#buffer.length > 0) return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
    // Otherwise a batch may be on its way to the disk right now.
    return this.#writing ?? Promise.resolve();
  }

  async #flush(): Promise<void> {
    // Let every append of this tick join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.#buffer.length > 0 && !this.#compacting) {
      const text = `${this.#buffer.join('\n')}\n`;
      const waiters = this.#waiters;
      this.#buffer = [];
      this.#waiters = [];
      const fh = this.#fh;
      const writing = appendLines(fh, text, () => fh.datasync());
      this.#writing = writing;
      writing.catch(() => undefined); // its waiters are told below; durable() callers through the promise itself
      try {
        await writing;
        for (const w of waiters) w.resolve();
      } catch (e) {
        for (const w of waiters) w.reject(e as Error);
      } finally {
        this.#writing = undefined;
      }
    }
    this.#flushing = undefined;
  }

  /**
   * Replaces the journal by `snapshot()` atomically (temp file, fsync, rename, fsync of the directory).
   * The snapshot is the caller's in-memory state, taken once a batch being flushed has been applied
   * (its lines are in the old file only). Records appended meanwhile wait and go to the new file
   * afterwards, and what they change in memory waits with them, so the snapshot can be written as it is
   * iterated; replay is idempotent, so a record that is also in the snapshot does no harm.
   */
  async compact(snapshot: () => Iterable<JournalRecord>): Promise<void> {
    // One at a time: a second run would truncate the temp file the first is still writing.
    if (this.#compacting) return;
    this.#compacting = true;
    try {
      await this.#flushing;
      await this.#writeSnapshot(snapshot());
    } finally {
      this.#compacting = false;
      if (this.#buffer.length > 0) this.#flushing ??= this.#flush();
    }
  }

  async #writeSnapshot(snapshot: Iterable<JournalRecord>): Promise<void> {
    const tmp = `${this.file}.compact`;
    const fh = await open(tmp, 'w');
    let lines = 0;
    let written = false;
    try {
      // In chunks of about a megabyte: 100 000 live files must not become one string.
      let chunk: string[] = [];
      let size = 0;
      for (const r of snapshot) {
        const line = JSON.stringify(r);
        chunk.push(line);
        size += line.length + 1;
        lines++;
        if (size >= 1 << 20) {
          await fh.writeFile(`${chunk.join('\n')}\n`); // all of it or an error (append-log.ts says why)
          chunk = [];
          size = 0;
        }
      }
      if (chunk.length) await fh.writeFile(`${chunk.join('\n')}\n`);
      await fh.sync();
      written = true;
    } finally {
      await fh.close();
      // A snapshot that could not be written whole never replaces the journal; its space is given back.
      if (!written) await unlink(tmp).catch(() => undefined);
    }
    await rename(tmp, this.file);
    const dir = await open(path.dirname(this.file), 'r');
    await dir.sync().finally(() => dir.close());
    const old = this.#fh;
    this.#fh = await open(this.file, 'a');
    this.#lines = lines;
    await old.close();
  }

  async close(): Promise<void> {
    await this.#flushing;
    await this.#fh.close();
  }
}

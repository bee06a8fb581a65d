// The operators' FIFO (G8): `echo /some_dir/./path/to/file > /run/grimseld/files`, one path per line.
import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, lstatSync, mkdirSync, readSync } from 'node:fs';
import { Socket } from 'node:net';
import { promisify } from 'node:util';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { Batches } from '../common/batches.js';
import { utf8Text } from '../common/paths.js';

const run = promisify(execFile);

/** What the FIFO hands on: paths in the order written; the ones refused come back with the reason. */
export type AddPaths = (paths: string[]) => Promise<Array<{ path: string; reason: string }>>;

const BATCH_MAX = 250;

/** Longest line taken, in bytes without its newline: PATH_MAX, the longest path the kernel accepts. */
export const LINE_MAX = 4096;

/**
 * Splits a byte stream into lines of at most `max` bytes, holding no more than that: a longer line is
 * dropped up to its next newline and reported with its full length. (readline keeps any line whole: 700 MB
 * without a newline ended grimseld with "Invalid string length", 300 MB took 1.1 GB and a 25 s stall.)
 */
export class LineSplitter {
  #parts: Buffer[] = [];
  #held = 0;
  /** Bytes of the current line so far; above `max` it is being discarded. */
  #length = 0;

  constructor(
    private readonly onLine: (line: Buffer) => void,
    private readonly onTooLong: (length: number, start: string) => void,
    private readonly max = LINE_MAX,
  ) {}

  /** Bytes held for the line in progress: never more than `max`. */
  get buffered(): number {
    return this.#held;
  }

  /** The line in progress (no newline yet): its length so far and its first 80 bytes; undefined if none. */
  get unfinished(): { length: number; start: string } | undefined {
    return this.#length === 0 ? undefined : { length: this.#length, start: Buffer.concat(this.#parts).toString('utf8', 0, 80) };
  }

  push(chunk: Buffer): void {
    let from = 0;
    for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
      this.#take(chunk.subarray(from, nl));
      const length = this.#length;
      if (length > this.max) this.onTooLong(length, Buffer.concat(this.#parts).toString('utf8', 0, 80));
      else this.onLine(Buffer.concat(this.#parts, this.#held));
      this.#parts = [];
      this.#held = 0;
      this.#length = 0;
      from = nl + 1;
    }
    this.#take(chunk.subarray(from));
  }

  #take(piece: Buffer): void {
    if (piece.length === 0) return;
    const wasOver = this.#length > this.max;
    this.#length += piece.length;
    if (wasOver) return;
    if (this.#length > this.max) {
      // Keep only the line's start, for the report: the rest is counted, not held.
      const start = Buffer.concat([...this.#parts, piece.subarray(0, 80)]).subarray(0, 80);
      this.#parts = [Buffer.from(start)];
      this.#held = start.length;
      return;
    }
    // Copied: a slice would pin the socket's whole 64 KiB chunk.
    this.#parts.push(Buffer.from(piece));
    this.#held += piece.length;
  }
}

export class FileFifo {
  #socket: Socket | undefined;
  #fd: number | undefined;
  #lines: LineSplitter | undefined;
  // At most BATCH_MAX at a time: a list of 100 000 paths taken in one go would need them all in memory
  // at once, several times over (checked files, records, journal lines), and the heap keeps that size;
  // a batch that is in flight long enough to outlive minor collections ends up there too.
  #batches = new Batches<string>((batch) => this.#takeBatch(batch), BATCH_MAX);

  constructor(
    readonly file: string,
    private readonly add: AddPaths,
    private readonly log: Logger,
  ) {}

  /** Creates the FIFO (root only: mode 0600) unless it exists; refuses to take over anything else. */
  async open(): Promise<void> {
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o755 });
    let st;
    try {
      st = lstatSync(this.file);
    } catch {
      await run('mkfifo', ['-m', '0600', this.file]);
      st = lstatSync(this.file);
    }
    if (!st.isFIFO()) throw new Error(`${this.file} exists and is not a FIFO; refusing to use it (configure another 'fifo' path or remove it)`);
    // Read-write and non-blocking: the open does not wait for a writer, and writers closing is no EOF.
    const fd = openSync(this.file, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    // What was opened is what prepareFifo made root's, not another user's put in its place since (fifo-place.ts).
    const opened = fstatSync(fd);
    if (!opened.isFIFO() || opened.uid !== (process.getuid?.() ?? 0)) {
      closeSync(fd);
      throw new Error(`${this.file} is not root's FIFO any more (uid ${opened.uid}); refusing to read it`);
    }
    this.#socket = new Socket({ fd, readable: true, writable: false });
    const lines = new LineSplitter((bytes) => {
      const line = utf8Text(bytes);
      if (line === undefined) {
        // Decoded with replacement characters, the path would name another file (lat\xe9 -> lat\ufffd), which may exist.
        this.log.warn({ source: 'fifo', start: bytes.toString('utf8', 0, 200), bytes: bytes.subarray(0, 200).toString('hex') },
          'FIFO line discarded: not valid UTF-8, and grimseld takes paths in UTF-8 only; nothing of it was added; rename the file and write its new path');
        return;
      }
      // Taken as written, up to the newline, but for whitespace before the leading '/' and a '\r' a Windows editor
      // left (no name furkad delivers holds a control character): a name may end in a space, and trimmed, the line
      // named another file, `img ` taken for `img`, which was copied in its place (hostile tester h14).
      const p = line.replace(/^[ \t]+(?=\/)/, '').replace(/\r$/, '');
      if (!p.trim()) return;
      // In the order written; lines that arrive while a batch is taken in form the next batch, so that a
      // burst (`cat list > fifo`) is journaled with one fsync per batch, not one per line (BENCHMARKS.md).
      this.#batches.push(p);
      // A writer faster than the journal waits in its write(2) instead of in grimseld's memory.
      if (this.#batches.waiting >= 4 * BATCH_MAX) this.#socket?.pause();
    }, (length, start) => this.log.warn({ source: 'fifo', length, start },
      `FIFO line of ${length} bytes discarded: longer than ${LINE_MAX} bytes (PATH_MAX), so no path; nothing of it was added`));
    this.#socket.on('data', (chunk: Buffer) => lines.push(chunk));
    this.#fd = fd;
    this.#lines = lines;
  }

  async #takeBatch(batch: string[]): Promise<void> {
    try {
      for (const r of await this.add(batch)) this.log.warn({ path: r.path, source: 'fifo' }, `file refused: ${r.reason}`);
    } catch (e) {
      // Each path named: the operator has to add exactly these again.
      for (const p of batch) this.log.error({ path: p, source: 'fifo' }, `file not taken: ${(e as Error).message}`);
    }
    if (this.#batches.waiting < BATCH_MAX && this.#socket?.isPaused()) this.#socket.resume();
  }

  /**
   * Takes what writers left in the pipe (an `echo` just before a stop or an upgrade returned as soon as its line
   * was in the kernel's buffer: dropped here, it would be lost without a word), then closes.
   */
  async close(): Promise<void> {
    const fd = this.#fd;
    const socket = this.#socket;
    const lines = this.#lines;
    if (socket && !socket.destroyed && fd !== undefined && lines) {
      socket.pause();
      // First what the socket read already and holds while paused (a writer faster than the journal), in order:
      // each read() hands its chunk to the 'data' listener, which splits it into lines.
      while (socket.read() !== null) { /* taken by the 'data' listener */ }
      const chunk = Buffer.allocUnsafe(64 * 1024);
      // What the pipe holds (64 KiB unless raised), a few times over, and no more: a writer that keeps writing
      // must not hold the stop up (its next write fails once the FIFO has no reader).
      for (let reads = 0; reads < 16; reads++) {
        let n: number;
        try {
          n = readSync(fd, chunk, 0, chunk.length, null);
        } catch {
          break; // EAGAIN: the pipe is empty
        }
        if (n <= 0) break;
        lines.push(chunk.subarray(0, n));
      }
      const cut = lines.unfinished;
      if (cut) {
        this.log.warn({ source: 'fifo', length: cut.length, start: cut.start }, 'grimseld stopped while a FIFO line was being written ' +
          '(no newline yet): not taken; if it is a path, write it again');
      }
    }
    this.#socket?.destroy();
    this.#fd = undefined;
    await this.#batches.drained();
  }
}

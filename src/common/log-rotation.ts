// Log files rotated by size (S4): `<logfile>.1`, `.2`, …, written by this module in the main thread's event loop,
// so that a write that fails is seen where it happens (pino-roll's worker thread turned a read-only directory into
// a RangeError that ended the daemon, and a failed rotation into an unhandled 'error' event).
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, unlinkSync, write } from 'node:fs';
import * as path from 'node:path';

export interface RotationSettings {
  logfile: string;
  /** Bytes per file before the next one is started. */
  logfile_max_size?: number;
  /** Files kept, the one being written included. */
  logfile_max_number?: number;
}

/** Every log file of this process not given up: a daemon that ends on an error waits for their lines (logsWritten). */
const openLogs = new Set<RotatingLog>();

/**
 * Resolves once every line written so far to every open log file is in its file, or after `withinMs` (a hung disk
 * does not keep a failing daemon from ending; the timer does not hold the process either).
 */
export function logsWritten(withinMs: number): Promise<void> {
  const all = Promise.all([...openLogs].map((l) => l.idle()));
  return Promise.race([all, new Promise((resolve) => setTimeout(resolve, withinMs).unref())]).then(() => undefined);
}

/** Told once when the file is given up: why, and the lines that did not reach it (in order; a line may be in it in part). */
export type LogFailure = (err: Error, unwritten: string[]) => void;

/**
 * Lines waiting for a write that does not end (a hung disk) are held up to this many bytes; beyond it the file is
 * given up as if the write had failed, so that the daemon's memory does not grow with its log.
 */
const MAX_WAITING_BYTES = 8 * 1024 * 1024;

/**
 * An open log file. Numbering continues after a restart (the highest `<logfile>.N` there is written on while it
 * has room); at each new file only the newest `logfile_max_number` of them are kept, those of earlier runs
 * included. Opening throws (the start refuses the setting). Lines are appended asynchronously, in order, one
 * write at a time, so that a slow disk does not hold up the daemon; a write or a rotation that fails later gives
 * the file up for good and tells `onFailure`, never throws: the caller logs elsewhere from then on.
 */
export class RotatingLog {
  readonly #base: string;
  readonly #maxSize: number;
  readonly #keep: number;
  #fd: number | undefined;
  #number: number;
  #size = 0;
  #queue: string[] = [];
  #queuedBytes = 0;
  #inFlight: string[] | undefined;
  /** A write of the descriptor has not called back yet: it is closed only after (a number reused meanwhile would take its bytes). */
  #writing = false;
  #onFailure: LogFailure | undefined;
  #idle: Array<() => void> = [];
  /** Why the file was given up, once it was. */
  failure: Error | undefined;

  constructor(s: RotationSettings) {
    this.#base = s.logfile;
    this.#maxSize = Math.max(s.logfile_max_size ?? 10_485_760, 1);
    this.#keep = Math.max(s.logfile_max_number ?? 10, 1);
    mkdirSync(path.dirname(this.#base), { recursive: true });
    this.#number = Math.max(1, ...this.#numbers());
    this.#open();
    if (this.#size >= this.#maxSize) this.#next();
    openLogs.add(this);
  }

  /** The file being written. */
  get current(): string {
    return `${this.#base}.${this.#number}`;
  }

  /** Who is told when the file is given up (createLogger: the journal). */
  onFailure(fn: LogFailure): void {
    this.#onFailure = fn;
  }

  /** Appends `line` (soon); false when the file was given up: `failure` says why. */
  write(line: string): boolean {
    if (this.failure) return false;
    this.#queue.push(line);
    this.#queuedBytes += Buffer.byteLength(line);
    if (this.#queuedBytes > MAX_WAITING_BYTES) {
      this.#fail(new Error(`its writes have not completed (${this.#queuedBytes} bytes waiting)`));
      return true; // told with the lines that waited, this one among them
    }
    this.#pump();
    return true;
  }

  /** Resolves once every line written so far is in the file, or the file was given up. */
  idle(): Promise<void> {
    if (this.failure || (this.#inFlight === undefined && this.#queue.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  close(): void {
    if (this.#fd === undefined) return;
    try { closeSync(this.#fd); } catch { /* nothing more to write to it */ }
    this.#fd = undefined;
  }

  #pump(): void {
    if (this.#inFlight !== undefined || this.failure) return;
    if (this.#queue.length === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
      return;
    }
    // What fits into the file's room, at least one line: a burst does not overfill one file.
    let take = 0;
    for (let bytes = 0; take < this.#queue.length && (take === 0 || bytes < this.#maxSize - this.#size); take++) bytes += Buffer.byteLength(this.#queue[take]!);
    const lines = this.#queue.splice(0, take);
    this.#inFlight = lines;
    const buf = Buffer.from(lines.join(''));
    this.#queuedBytes -= buf.length;
    const fd = this.#fd!;
    const from = (off: number): void => {
      this.#writing = true;
      write(fd, buf, off, buf.length - off, null, (err, n) => {
        this.#writing = false;
        // Given up meanwhile (too much waiting): what this write did no longer matters.
        if (this.#inFlight !== lines) return this.close();
        if (err) return this.#fail(err);
        if (off + n < buf.length) return from(off + n);
        this.#inFlight = undefined;
        this.#size += buf.length;
        if (this.#size >= this.#maxSize) {
          try { this.#next(); } catch (e) { return this.#fail(e); }
        }
        this.#pump();
      });
    };
    from(0);
  }

  #fail(e: unknown): void {
    if (this.failure) return;
    this.failure = e instanceof Error ? e : new Error(String(e));
    openLogs.delete(this);
    const unwritten = [...(this.#inFlight ?? []), ...this.#queue];
    this.#inFlight = undefined;
    this.#queue = [];
    this.#queuedBytes = 0;
    if (!this.#writing) this.close();
    for (const resolve of this.#idle.splice(0)) resolve();
    this.#onFailure?.(this.failure, unwritten);
  }

  #open(): void {
    this.#fd = openSync(this.current, 'a');
    this.#size = fstatSync(this.#fd).size;
  }

  /** Starts the next file and removes those beyond the newest `keep`; throws when the new one cannot be opened. */
  #next(): void {
    this.close();
    this.#number++;
    this.#open();
    for (const n of this.#numbers()) {
      if (n > this.#number - this.#keep) continue;
      // One that cannot be removed only takes room; the log goes on.
      try { unlinkSync(`${this.#base}.${n}`); } catch { /* left */ }
    }
  }

  /** The N of every `<logfile>.N` in its directory (not of another daemon's log there). */
  #numbers(): number[] {
    const prefix = `${path.basename(this.#base)}.`;
    return readdirSync(path.dirname(this.#base))
      .filter((f) => f.startsWith(prefix) && /^[1-9][0-9]*$/.test(f.slice(prefix.length)))
      .map((f) => Number(f.slice(prefix.length)));
  }
}

// Log files rotated by size (S4): `<logfile>.1`, `.2`, …, written from the main thread, so that a write that fails
// is seen where it happens (pino-roll's worker thread turned a read-only directory into a RangeError that ended
// the daemon, and a failed rotation into an unhandled 'error' event).
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import * as path from 'node:path';

export interface RotationSettings {
  logfile: string;
  /** Bytes per file before the next one is started. */
  logfile_max_size?: number;
  /** Files kept, the one being written included. */
  logfile_max_number?: number;
}

/**
 * An open log file. Numbering continues after a restart (the highest `<logfile>.N` there is written on while it
 * has room); at each new file only the newest `logfile_max_number` of them are kept, those of earlier runs
 * included. Opening throws (the start refuses the setting); a write that fails later closes the file for good
 * and says so by returning false, never by throwing: the caller logs elsewhere from then on.
 */
export class RotatingLog {
  readonly #base: string;
  readonly #maxSize: number;
  readonly #keep: number;
  #fd: number | undefined;
  #number: number;
  #size = 0;
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
  }

  /** The file being written. */
  get current(): string {
    return `${this.#base}.${this.#number}`;
  }

  /** Appends `line`; false when it was not written (and no later line will be: `failure` says why). */
  write(line: string): boolean {
    if (this.#fd === undefined) return false;
    try {
      const buf = Buffer.from(line);
      for (let off = 0; off < buf.length;) off += writeSync(this.#fd, buf, off);
      this.#size += buf.length;
    } catch (e) {
      this.#fail(e);
      return false;
    }
    if (this.#size >= this.#maxSize) {
      // This line is in; the next one finds the file given up.
      try { this.#next(); } catch (e) { this.#fail(e); }
    }
    return true;
  }

  #fail(e: unknown): void {
    this.failure = e instanceof Error ? e : new Error(String(e));
    this.close();
  }

  close(): void {
    if (this.#fd === undefined) return;
    try { closeSync(this.#fd); } catch { /* nothing more to write to it */ }
    this.#fd = undefined;
  }

  #open(): void {
    this.#fd = openSync(this.current, 'a', 0o640);
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

// A detector's small JSON state file in state_dir, read once at start and written whole when it changed: the files
// placed whose sources the rsync daemon could not remove (rsync-removal.ts), the files left on the detector and
// those owed to ended shifts (rsync-owed.ts). One that cannot be written (a full state_dir) is said once and tried again at the next save;
// meanwhile what it holds is known in memory.
//
// Written twice. First at once, in place (a side file renamed over it, not flushed): a furkad killed at any moment
// leaves the next one the old content or the new, and the rsync loop waits for no disk. A rename that was never
// flushed may come back from a power cut as an empty file (XFS, CentOS 7's default, flushes nothing at such a
// rename; ext4 only with auto_da_alloc), and it is written after nearly every run, so a power cut would nearly always
// find it empty: the files owed to an ended shift would go to the next user. So, second, a copy beside it is written
// in the background, flushed before and after its rename (common/durable-file.ts), at most one at a time and one a
// second (four fsyncs a run, 30 runs a second, would keep a PPU's system disk busy), the newest content each time;
// read() takes that copy where the file itself cannot be read, which a power cut leaves at most a second behind.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { writeDurablyAsync } from '../common/durable-file.js';
import type { Logger } from '../common/logger.js';

/** The copy of a state file last flushed to disk. */
export const flushedCopy = (file: string): string => `${file}.flushed`;

/**
 * The parsed content of `file`; where it cannot be read (empty or torn by a power cut), its flushed copy's, with
 * `fellBack` set to the file's own error. Throws the file's error when neither can be read, and at once when the
 * file does not exist: the copy of a removed file is no one's state.
 */
export function readStateFile(file: string): { content: unknown; fellBack?: string } {
  try {
    return { content: JSON.parse(readFileSync(file, 'utf8')) as unknown };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw e;
    let copy: unknown;
    try {
      copy = JSON.parse(readFileSync(flushedCopy(file), 'utf8')) as unknown;
    } catch {
      throw e;
    }
    return { content: copy, fellBack: (e as Error).message };
  }
}

/** Removes a state file and its flushed copy. */
export function removeStateFile(file: string): void {
  rmSync(file);
  rmSync(flushedCopy(file), { force: true });
}

/** The least time between two flushed copies of one file (ms). */
const FLUSH_PAUSE_MS = 1000;

export class JsonStateFile {
  #dirty = false;
  #saidUnwritable = false;
  #saidUnflushed = false;
  /** The newest content written in place and not yet flushed to the copy. */
  #toFlush: string | undefined;
  #flushing: Promise<void> | undefined;
  /** Ends the pause after a flushed copy at once (flushed() was asked: a stop waits for it). */
  #hurry: (() => void) | undefined;
  #hurried = false;

  /** `file`: none keeps everything in memory only; `what`: what it holds, for the log ("the files kept on the detector"). */
  constructor(readonly file: string | undefined, private readonly detector: string, private readonly what: string, private readonly log: Logger) {}

  /** The parsed content; undefined when there is none, or it is not readable (said, and ignored). */
  read(): unknown {
    if (this.file === undefined) return undefined;
    try {
      const { content, fellBack } = readStateFile(this.file);
      if (fellBack !== undefined) {
        this.log.warn({ detector: this.detector, file: this.file, copy: flushedCopy(this.file), err: fellBack },
          `cannot read ${this.what} (a power cut after a write not yet flushed leaves it so); took the copy last flushed to disk, which may lack the last changes`);
      }
      return content;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ detector: this.detector, file: this.file, err: (e as Error).message }, `cannot read ${this.what}; ignored`);
      return undefined;
    }
  }

  /** What it holds changed: written at the next save(). */
  changed(): void {
    this.#dirty = true;
  }

  /** Writes `content()` if anything changed since the last write; its flushed copy follows in the background. */
  save(content: () => unknown): void {
    if (!this.#dirty || this.file === undefined) return;
    const text = JSON.stringify(content());
    try {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.file);
      this.#dirty = false;
      this.#saidUnwritable = false;
    } catch (e) {
      if (!this.#saidUnwritable) this.log.warn({ detector: this.detector, file: this.file, err: (e as Error).message }, `cannot write ${this.what}; tried again after the next run`);
      this.#saidUnwritable = true;
      return;
    }
    this.#toFlush = text;
    this.#flushing ??= this.#flush(this.file);
  }

  /** Resolves once what save() wrote is flushed to disk too, or could not be (said), without the pause between copies. */
  flushed(): Promise<void> {
    if (this.#flushing === undefined) return Promise.resolve();
    this.#hurried = true;
    this.#hurry?.();
    return this.#flushing;
  }

  async #flush(file: string): Promise<void> {
    while (this.#toFlush !== undefined) {
      const text = this.#toFlush;
      this.#toFlush = undefined;
      try {
        await writeDurablyAsync(flushedCopy(file), text, { mode: 0o600 });
        this.#saidUnflushed = false;
      } catch (e) {
        if (!this.#saidUnflushed) {
          this.log.warn({ detector: this.detector, file: flushedCopy(file), err: (e as Error).message },
            `cannot flush a copy of ${this.what} to disk: a power cut may lose them; tried again at the next write`);
        }
        this.#saidUnflushed = true;
      }
      if (!this.#hurried) {
        await new Promise<void>((resolve) => {
          const pause = setTimeout(resolve, FLUSH_PAUSE_MS);
          pause.unref();
          this.#hurry = () => {
            clearTimeout(pause);
            resolve();
          };
        });
        this.#hurry = undefined;
      }
    }
    this.#flushing = undefined;
    this.#hurried = false;
  }
}

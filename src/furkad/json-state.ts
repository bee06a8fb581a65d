// A detector's small JSON state file in state_dir, read once at start and written whole when it changed: the files
// placed whose sources the rsync daemon could not remove (rsync-removal.ts), the files left on the detector and
// those owed to ended shifts (rsync-owed.ts). One that cannot be written (a full state_dir) is said once and tried again at the next save;
// meanwhile what it holds is known in memory.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../common/logger.js';

export class JsonStateFile {
  #dirty = false;
  #saidUnwritable = false;

  /** `file`: none keeps everything in memory only; `what`: what it holds, for the log ("the files kept on the detector"). */
  constructor(readonly file: string | undefined, private readonly detector: string, private readonly what: string, private readonly log: Logger) {}

  /** The parsed content; undefined when there is none, or it is not readable (said, and ignored). */
  read(): unknown {
    if (this.file === undefined) return undefined;
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as unknown;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ detector: this.detector, file: this.file, err: (e as Error).message }, `cannot read ${this.what}; ignored`);
      return undefined;
    }
  }

  /** What it holds changed: written at the next save(). */
  changed(): void {
    this.#dirty = true;
  }

  /** Writes `content()` if anything changed since the last write. */
  save(content: () => unknown): void {
    if (!this.#dirty || this.file === undefined) return;
    try {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(content()), { mode: 0o600 });
      renameSync(tmp, this.file);
      this.#dirty = false;
      this.#saidUnwritable = false;
    } catch (e) {
      if (!this.#saidUnwritable) this.log.warn({ detector: this.detector, file: this.file, err: (e as Error).message }, `cannot write ${this.what}; tried again after the next run`);
      this.#saidUnwritable = true;
    }
  }
}

// The operators' FIFO (SPEC G8): `echo /some_dir/./path/to/file > /run/grimseld/files`, one path per line.
import { execFile } from 'node:child_process';
import { constants, openSync, lstatSync, mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { Batches } from '../common/batches.js';

const run = promisify(execFile);

/** What the FIFO hands on: paths in the order written; the ones refused come back with the reason. */
export type AddPaths = (paths: string[]) => Promise<Array<{ path: string; reason: string }>>;

const BATCH_MAX = 250;

export class FileFifo {
  #socket: Socket | undefined;
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
    const fd = openSync(this.file, constants.O_RDWR | constants.O_NONBLOCK);
    this.#socket = new Socket({ fd, readable: true, writable: false });
    const lines = createInterface({ input: this.#socket, crlfDelay: Infinity });
    lines.on('line', (line) => {
      const p = line.trim();
      if (!p) return;
      // In the order written; lines that arrive while a batch is taken in form the next batch, so that a
      // burst (`cat list > fifo`) is journaled with one fsync per batch, not one per line (issue 7).
      this.#batches.push(p);
      // A writer faster than the journal waits in its write(2) instead of in grimseld's memory.
      if (this.#batches.waiting >= 4 * BATCH_MAX) this.#socket?.pause();
    });
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

  async close(): Promise<void> {
    this.#socket?.destroy();
    await this.#batches.drained();
  }
}

// The operators' FIFO (SPEC G8): `echo /some_dir/./path/to/file > /run/grimseld/files`, one path per line.
import { execFile } from 'node:child_process';
import { constants, openSync, lstatSync, mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';

const run = promisify(execFile);

export class FileFifo {
  #socket: Socket | undefined;
  #chain: Promise<void> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly add: (p: string) => Promise<void>,
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
      // One after another, in the order written.
      this.#chain = this.#chain.then(() => this.add(p)).catch((e: unknown) => {
        this.log.warn({ path: p, source: 'fifo' }, `file refused: ${(e as Error).message}`);
      });
    });
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    await this.#chain;
  }
}

// grimseld's TCP status service (SPEC G9): a client sends `QUERY <n>` lines, each answered by one JSON line.
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { StatusRow } from './shift-book.js';
import { DEFAULT_MAX_UNREAD_BYTES, TcpListener, writeLineOrCut } from './tcp-listener.js';

/** One status row as the TCP protocol, the Python client and `ppuctl --json` spell it. */
export interface StatusRecord {
  /** Shift start, µs since the epoch (below 2^53, so exact in JSON). */
  usertime: number;
  uid: number;
  gid: number;
  storage: string;
  pending: number;
  copied: number;
  failed: number;
}

export function statusRecord(r: StatusRow): StatusRecord {
  return { usertime: Number(r[0]), uid: r[1], gid: r[2], storage: r[3], pending: Number(r[4]), copied: Number(r[5]), failed: Number(r[6]) };
}

/** A request line longer than this is not ours: answer once and hang up. */
const MAX_LINE = 1024;
/** Idle connections are closed after this long; scripts connect per query. */
const IDLE_MS = 10 * 60_000;

export class StatusServer {
  readonly #listener: TcpListener;

  constructor(private readonly book: { query(n: number): StatusRow[] }, private readonly log: Logger,
    private readonly maxUnread = DEFAULT_MAX_UNREAD_BYTES) {
    this.#listener = new TcpListener('status', (s) => this.#serve(s));
  }

  /** Listens (port 0: any free port) and returns the bound port. */
  async start(port: number, address: string): Promise<number> {
    const bound = await this.#listener.listen(port, address);
    this.log.info({ address, port: bound }, `status server listening on ${address}:${bound}`);
    return bound;
  }

  get port(): number {
    return this.#listener.port;
  }

  stop(): Promise<void> {
    return this.#listener.close();
  }

  /** The answer to one request line, or undefined for a blank line. */
  answer(line: string): unknown {
    const words = line.trim().split(/\s+/);
    if (words[0] === '') return undefined;
    if (words[0]!.toUpperCase() !== 'QUERY' || words.length > 2) {
      return { error: `unknown request '${line.trim().slice(0, 80)}': send QUERY <n> (n shifts, newest first; -1 = all)` };
    }
    const n = words.length === 1 ? -1 : Number(words[1]);
    if (!Number.isInteger(n) || n < -1) return { error: `QUERY wants a number of shifts (-1 = all), got '${words[1]}'` };
    return this.book.query(n).map(statusRecord);
  }

  #serve(socket: Socket): void {
    socket.setEncoding('utf8');
    socket.setTimeout(IDLE_MS, () => socket.end());
    let pending = '';
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const reply = this.answer(line);
        if (reply !== undefined && writeLineOrCut(socket, JSON.stringify(reply), this.maxUnread) === 'cut') {
          this.log.warn({ peer: socket.remoteAddress }, 'status client disconnected: it does not read its answers');
          return;
        }
      }
      if (pending.length > MAX_LINE) {
        socket.end(`${JSON.stringify({ error: `request line longer than ${MAX_LINE} bytes` })}\n`);
        pending = '';
      }
    });
  }
}

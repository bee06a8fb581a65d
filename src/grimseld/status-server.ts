// grimseld's TCP status service (G9): a client sends `QUERY <n>` lines, each answered by one JSON line.
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { StatusRow } from '../dbus/grimsel-interface.js';
import { DEFAULT_MAX_UNREAD_BYTES, TcpListener, writeLineOrCut } from '../common/tcp-listener.js';
import { RequestBudget } from '../common/request-budget.js';

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
/**
 * Requests answered at once per peer (a local user, a remote address, root), then per second: a script polling
 * every second never waits; a peer pipelining `QUERY -1` on all its connections is read one request at a time,
 * each after its turn, instead of taking most of the event loop the copies' bookkeeping runs on.
 */
export const ANSWERS_AT_ONCE = 20;
export const ANSWERS_PER_SECOND = 10;

export class StatusServer {
  readonly #listener: TcpListener;
  readonly #budget: RequestBudget;

  constructor(private readonly book: { query(n: number): StatusRow[] }, private readonly log: Logger,
    private readonly maxUnread = DEFAULT_MAX_UNREAD_BYTES, budget = new RequestBudget(ANSWERS_AT_ONCE, ANSWERS_PER_SECOND)) {
    this.#budget = budget;
    // A refused client reads the reason as the answer to its first request.
    this.#listener = new TcpListener('status', (s, peer) => this.#serve(s, peer ?? 'root'), {
      refusal: (why) => `${JSON.stringify({ error: `refused: ${why}` })}\n`,
      onRefused: (peer, why) => this.log.warn({ peer }, `status client refused: ${why} (said once until it has fewer)`),
    });
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
    // Decimal digits only: Number() would also take '1e3', '0x10', '1.0' and '+5', which scripts must not come to rely on.
    const n = words.length === 1 ? -1 : /^(?:-1|[0-9]+)$/.test(words[1]!) ? Number(words[1]) : NaN;
    if (!Number.isSafeInteger(n)) {
      return { error: `QUERY wants -1 (all) or a number of shifts in decimal digits, got '${words[1]!.slice(0, 80)}'` };
    }
    return this.book.query(n).map(statusRecord);
  }

  /**
   * Request lines in bytes; one longer than MAX_LINE gets one error naming the limit, and the connection is closed.
   * Each answer is taken from the peer's budget: beyond it, the connection is not read until the peer's next turn.
   */
  #serve(socket: Socket, peer: string): void {
    socket.setTimeout(IDLE_MS, () => socket.end());
    let pending: Buffer = Buffer.alloc(0);
    let done = false;
    let waiting: NodeJS.Timeout | undefined;
    socket.on('close', () => clearTimeout(waiting));
    const tooLong = (what: string): void => {
      done = true;
      socket.end(`${JSON.stringify({ error: `${what}, longer than the limit of ${MAX_LINE} bytes: closing the connection` })}\n`);
    };
    const drain = (): void => {
      let nl: number;
      while (!done && (nl = pending.indexOf(10)) >= 0) {
        if (nl > MAX_LINE) return tooLong(`a request line of ${nl} bytes`);
        const line = pending.toString('utf8', 0, nl);
        if (line.trim() !== '') {
          const wait = this.#budget.take(peer);
          if (wait > 0) {
            // Not read meanwhile: the peer's further requests wait in its socket, not in our memory.
            socket.pause();
            waiting = setTimeout(() => {
              waiting = undefined;
              socket.resume();
              drain();
            }, wait);
            return;
          }
        }
        pending = pending.subarray(nl + 1);
        const reply = this.answer(line);
        if (reply !== undefined && writeLineOrCut(socket, JSON.stringify(reply), this.maxUnread) === 'cut') {
          this.log.warn({ peer: socket.remoteAddress }, 'status client disconnected: it does not read its answers');
          done = true;
          return;
        }
      }
      if (done) return;
      if (pending.length > MAX_LINE) tooLong(`a request line of at least ${pending.length} bytes without a newline`);
      // Copied: a slice would pin the whole chunk for as long as the line stays incomplete.
      else pending = Buffer.from(pending);
    };
    socket.on('data', (chunk: Buffer) => {
      if (done) return;
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      if (waiting === undefined) drain();
    });
  }
}

// Which events client holds which source: one furkad per source (and per source overlapping it) at a time, so
// that no file is sent to two PPUs and deleted for whichever acknowledges first (A3, A4, F1).
import type * as http2 from 'node:http2';
import type { Logger } from '../common/logger.js';

/**
 * How long a holder has to answer a ping before a client asking for an overlapping source is served in its
 * place. furkad answers within milliseconds (its HTTP/2 layer does, not its loop's work); a holder that takes
 * longer is gone (its host down, the link cut without a FIN) or frozen. A reconnect of a furkad whose old
 * connection the agent has not seen end yet waits at most this long.
 */
export const PROBE_MS = 3000;

/** Whether two sources (paths below the root, '' the root itself) share files: one is the other or lies below it. */
export function overlaps(a: string, b: string): boolean {
  if (a === '' || b === '' || a === b) return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/** An events client that holds a source. */
export interface Holder {
  readonly source: string;
  readonly session: http2.Http2Session;
  readonly address: string;
  readonly port: number;
  /** When it was served (ISO, wall clock: shown to people, never compared). */
  readonly since: string;
  /** Peers (address and source) refused for it so far: each is logged once. */
  readonly refusedLogged: Set<string>;
}

/** What a claim came to: served, refused for a holder that answers, or the asking stream ended meanwhile. */
export type Claim = { granted: true } | { granted: false; holder: Holder } | { gone: true };

/** `ADDRESS port N` of a holder or a peer, for messages. */
export function peerName(p: { address: string; port: number }): string {
  return `${p.address} port ${p.port}`;
}

/**
 * The holders of sources. Claims of overlapping sources are decided one at a time (two clients asking at once
 * cannot both be served),
 * against every holder of an overlapping source on another connection: one that answers a ping keeps its
 * source and the claim is refused; one that does not is taken as dead, its connection closed, and the claim is
 * served. Two streams on one connection are one client (never refused for each other). No identity a client
 * states (a furkad's id kept in its state_dir, say) lets one take over from a live holder: copied with a state_dir
 * or a configuration to a second PPU, it would let the two take the source from each other back and forth,
 * which is what this prevents. Whether the holder still answers is what the agent can tell for sure.
 */
export class SourceHolders {
  readonly #holders = new Set<Holder>();
  /** Claims not yet decided, each with its settling: a claim waits only for earlier ones of an overlapping source. */
  readonly #deciding = new Set<{ source: string; decided: Promise<unknown> }>();

  constructor(private readonly log: Logger, private readonly probeMs = PROBE_MS) {}

  get size(): number {
    return this.#holders.size;
  }

  /** Claims `source` for the events `stream`; once granted, it is held until the stream closes. */
  claim(source: string, stream: http2.ServerHttp2Stream): Promise<Claim> {
    // Two claims of overlapping sources are decided one after the other; a claim of another source is not held up
    // by one that waits for a silent holder's ping (PROBE_MS).
    const earlier = [...this.#deciding].filter((d) => overlaps(d.source, source)).map((d) => d.decided);
    const next = Promise.all(earlier).then(() => this.#claim(source, stream));
    const entry = { source, decided: next.catch(() => undefined) };
    this.#deciding.add(entry);
    void entry.decided.then(() => this.#deciding.delete(entry));
    return next;
  }

  async #claim(source: string, stream: http2.ServerHttp2Stream): Promise<Claim> {
    const session = stream.session;
    const socket = session?.socket;
    const peer = { address: socket?.remoteAddress ?? '(unknown)', port: socket?.remotePort ?? 0 };
    for (const h of [...this.#holders]) {
      if (!overlaps(h.source, source) || h.session === session) continue;
      this.log.info({ holder: peerName(h), held: `/${h.source}`, peer: peerName(peer), source: `/${source}` },
        `an events client asked for a source another one holds: is that one still there? (a ping, up to ${this.probeMs} ms)`);
      if (await answers(h.session, this.probeMs)) {
        const key = `${peer.address} ${source}`;
        if (!h.refusedLogged.has(key)) {
          h.refusedLogged.add(key);
          this.log.warn({ peer: peerName(peer), source: `/${source}`, holder: peerName(h), held: `/${h.source}` },
            'an events client asked for a source another one holds: refused (409); one furkad per source (logged once per address while that one holds it)');
        }
        return { granted: false, holder: h };
      }
      this.log.warn({ holder: peerName(h), held: `/${h.source}`, peer: peerName(peer), source: `/${source}` },
        `the events client holding a source did not answer a ping within ${this.probeMs} ms: its connection is taken as dead and closed, and the new client is served`);
      this.#holders.delete(h);
      h.session.destroy();
    }
    if (stream.destroyed || stream.closed) return { gone: true };
    // wall clock: shown to people as the time the holder came, never used to measure anything
    const h: Holder = { source, session: session!, ...peer, since: new Date().toISOString(), refusedLogged: new Set() };
    this.#holders.add(h);
    stream.once('close', () => this.#holders.delete(h));
    return { granted: true };
  }
}

/**
 * Whether `session` answers a ping within `ms`. The verdict waits for one turn of the event loop's I/O after the
 * timer: an agent whose own loop was held up (a long scan) reads an answer that is there before it gives up.
 */
function answers(session: http2.Http2Session, ms: number): Promise<boolean> {
  if (session.destroyed || session.closed) return Promise.resolve(false);
  return new Promise((resolve) => {
    let done = false;
    const end = (alive: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(alive);
    };
    const timer = setTimeout(() => setImmediate(() => end(false)), ms);
    try {
      if (!session.ping((err) => end(!err))) end(false);
    } catch {
      end(false); // the session is ending
    }
  });
}

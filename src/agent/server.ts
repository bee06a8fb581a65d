// The agent's HTTP/2 server: events, file bodies and acknowledgements, exactly as docs/agent-protocol.md says (A1, A3, A4).
import * as http2 from 'node:http2';
import { lstatSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { AllowList } from './allow.js';
import { validNonce, type KeyCheck } from '../common/shared-key.js';
import type { Announcement, Catalog, FileEntry } from './catalog.js';
import { validBarrierId } from './barrier.js';
import { checksumOfFdInPool, isBareChecksum, untagged } from '../common/checksum.js';
import { FileBodies, reply, WHOLE_MAX, type Sent } from './file-body.js';
import type { LeaseCheck } from './lease-check.js';
import { filesBeingWritten } from './open-writers.js';
import type { Removal, TakenAside } from './source-files.js';
import { monotonicMs } from '../common/monotonic.js';
import { peerName, SourceHolders, type Holder } from './source-holders.js';
import { KeylessSessions, KEYLESS_MS } from './keyless-sessions.js';

/** 2: bodies pushed behind their announcements to a client that asks for them (`push=N`). */
export const PROTOCOL = 3;

/** How long a stop lets the connections send what is queued on them before it cuts them. */
const CLOSE_GRACE_MS = 2000;
/** Bytes of lines queued for one events client that does not read before it is cut off (it reconnects and is sent the listing). */
const CLIENT_BACKLOG_MAX = 64 * 1024 * 1024;
/**
 * Node's HTTP/2 session refuses every new stream (RST_STREAM ENHANCE_YOUR_CALM) while the data it holds for
 * its streams is over this credit, 10 MB by default: two 6 MB bodies waiting to be read were enough to refuse
 * furkad's next fetch and acknowledgement, and furkad took the connection for broken (seen at 25 Hz x 6 MB;
 * test (e3)). furkad fetches 8 files at a time (up to 24 while together they come to 16 MB at most), each read
 * whole into memory, and takes up to 8 pushed (of at most 64 MiB each): the credit leaves room for eight images
 * of 448 MB besides and still bounds what one connection can make the agent hold.
 */
const SESSION_MEMORY_MB = 4096;
/**
 * Streams a client may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; Node's default is unbounded).
 * furkad opens at most 27 (its events stream, up to 24 fetches, one acknowledgement, one barrier), and up to 8
 * pushed streams count too. Node counts streams not yet destroyed, which can briefly include some already
 * closed, and answers one over the limit with ENHANCE_YOUR_CALM, the stall above: keep the limit well above 35.
 */
const MAX_STREAMS = 64;
/**
 * Most bodies a client may ask to have pushed to it and not yet acknowledged (`push=N`), and the largest file
 * pushed: a larger one waits for the client's request. A push counts while its body is being sent, and after
 * that until the client acknowledges its file or PUSH_HOLD_MS pass; it stops counting at once when it ends in
 * a way the client will not acknowledge (cancelled, reset, an answer other than 200, `x-furka-unchanged: 0`).
 * A client that stops taking files (a shift change holds it) is so pushed no more than N every PUSH_HOLD_MS,
 * each of which it may have to request again. The hold is the fallback for pushes a client drops without a
 * word (it had read the whole body) and files it does not acknowledge yet (one set aside for an ended shift):
 * a few seconds, so that those do not stop pushes for long.
 */
const PUSH_MAX = 16;
/** Only files read whole are pushed (file-body.ts): one sent in pieces waits for its request. */
const PUSH_SIZE_MAX = BigInt(WHOLE_MAX);
const PUSH_HOLD_MS = 3000;
/**
 * How often the sources of live events clients are looked at: one deleted (or replaced by a file) while served
 * ends its stream with the reason, as the 404 of a request for it would say, instead of being served empty.
 */
const SOURCE_CHECK_MS = 2000;
/** Largest /v1/ack body accepted (about 200 000 ids). */
const ACK_BODY_MAX = 16 * 1024 * 1024;

/** `source` of /v1/events as a path below the root ('' = the root), or undefined if it is not acceptable. */
export function parseSource(raw: string | null): string | undefined {
  const value = raw ?? '/';
  if (value.includes('\0')) return undefined;
  const parts = value.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

/** The first directory on the way from `root` to `source` (below it) that is a symbolic link, if any. */
export function linkOnTheWay(root: string, source: string): string | undefined {
  const parts = source.split('/').filter((p) => p !== '');
  for (let i = 1; i <= parts.length; i++) {
    const rel = parts.slice(0, i).join('/');
    let st;
    try {
      st = lstatSync(path.join(root, rel), { throwIfNoEntry: false });
    } catch {
      return undefined; // below a file, or a name too long: nothing there, as for a source not made yet
    }
    if (!st) return undefined; // not there (yet): watched once it is made
    if (st.isSymbolicLink()) return rel;
  }
  return undefined;
}

/**
 * Why `source` (below `root`, '' the root) cannot be served, or undefined if it is a directory. A source that is
 * not there was served empty for ever, the detector shown idle: furkad is told (404), shows it, and asks again
 * until it is made.
 */
export function sourceMissing(root: string, source: string): string | undefined {
  if (source === '') return undefined;
  const where = `below the agent's root ${root} on this detector server`;
  let st;
  try {
    st = statSync(path.join(root, source), { throwIfNoEntry: false });
  } catch (e) {
    return `source /${source}: no such directory ${where} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: a part of it is a file)`;
  }
  if (!st) return `source /${source}: no such directory ${where}; furkad asks again until it is made`;
  if (!st.isDirectory()) return `source /${source}: not a directory ${where}`;
  return undefined;
}

/** `observe` of /v1/events: whether the client only watches (holds no source), or undefined if not 0 or 1. */
export function parseObserve(raw: string | null): boolean | undefined {
  if (raw === null || raw === '0') return false;
  return raw === '1' ? true : undefined;
}

/** `push` of /v1/events: how many bodies the client takes pushed at once (0 if absent), or undefined if not a number. */
export function parsePush(raw: string | null): number | undefined {
  if (raw === null) return 0;
  if (!/^[0-9]{1,3}$/.test(raw)) return undefined;
  return Math.min(Number(raw), PUSH_MAX);
}

/** One `GET /v1/events` stream: its lines are queued while the peer does not read, so no one else waits. */
export class EventsClient {
  #queue: string[] = [];
  #queuedBytes = 0;
  #draining = false;
  /**
   * The listing being sent, and the line after it: written only as fast as the client takes it (paced by the
   * stream's 'drain'), so that neither its size counts as a client that does not read (600 000 files on the
   * detector after an outage are ~64 MB of lines: cut off, reconnecting for ever) nor it all sits in memory.
   */
  #listing: { lines: Iterator<Announcement>; then: Announcement[] } | undefined;
  /**
   * Pushes to this client that count (PUSH_MAX), by id, with when each body was sent whole (undefined while it
   * is being sent). Each push is its own object, so that the end of one does not release a later push of the
   * same id (a file renamed keeps its id); two such pushes then hold one slot, which is rare and harmless.
   */
  readonly #pushed = new Map<string, { sentAt: number | undefined }>();
  /**
   * A push failed after its line went out: no more pushes on this stream. Such a failure is a fault of this
   * agent or of Node (it never happened in tests), and pushing on would meet it again for every file.
   */
  #pushOff = false;
  /** Whether the client takes pushes now (`POST /v1/push`): off while it is behind, on again once it caught up. */
  #pushWanted = true;

  constructor(readonly stream: http2.ServerHttp2Stream, readonly source: string, private readonly pushMax: number,
    private readonly bodies: FileBodies, private readonly log: Logger) {}

  /** The path of a root-relative path as this client sees it (relative to its source), or undefined if outside. */
  relative(p: string): string | undefined {
    if (this.source === '') return p;
    return p.startsWith(`${this.source}/`) ? p.slice(this.source.length + 1) : undefined;
  }

  /** Sends `a`'s line; the body of a file just completed (`live`) is pushed behind it when the client takes pushes. */
  send(a: Announcement): void {
    // A barrier says the client has been told of every file completed before it (A5): not before the listing is out.
    if (a.t === 'barrier' && this.#listing) {
      this.#listing.then.push(a);
      return;
    }
    let line: string;
    if (a.t === 'file') {
      const rel = this.relative(a.entry.path);
      if (rel === undefined) return;
      const e = a.entry;
      const push = a.live === true && this.#push(e) ? { push: true } : {};
      line = JSON.stringify({ t: 'file', id: e.id, path: rel, size: Number(e.size), mtime_ns: String(e.mtimeNs), mode: e.mode, ...push });
    } else if (a.t === 'refused' || a.t === 'unrefused') {
      const rel = this.relative(a.path);
      if (rel === undefined) return;
      line = JSON.stringify(a.t === 'refused' ? { t: 'refused', path: rel, reason: a.reason, bytes: a.bytes } : { t: 'unrefused', path: rel, bytes: a.bytes });
    } else {
      line = JSON.stringify(a);
    }
    this.write(`${line}\n`);
  }

  /**
   * Pushes the body of `e` (a PUSH_PROMISE for `GET /v1/file?id=`, answered as that request would be), unless
   * as many pushes as the client takes are unacknowledged, the file is too large, or the client does not take
   * pushes. The promise is submitted before the announcement's line, so the client knows of it when it reads
   * the line; the body follows on the next turn of the loop. Saves the client's request: one round trip per
   * file, and one stream it opens (A6). A promise can still be dropped: by the client (it turned pushes off
   * meanwhile: RST_STREAM CANCEL) or by this side's nghttp2 before it went out (it read that SETTINGS first:
   * the pushed stream closes with an error). Either way the slot is released and the client requests the file.
   * Mind that Node 20 turns a dropped frame into a reset of the events stream with a negative code, which
   * throws, once anything listens for 'frameError': nothing here may.
   */
  #push(e: FileEntry): boolean {
    if (this.#pushOff || !this.#pushWanted || e.size > PUSH_SIZE_MAX || !this.stream.pushAllowed || this.#draining) return false;
    const now = monotonicMs();
    for (const [id, p] of this.#pushed) if (p.sentAt !== undefined && now - p.sentAt > PUSH_HOLD_MS) this.#pushed.delete(id);
    if (this.#pushed.size >= this.pushMax) return false;
    const push: { sentAt: number | undefined } = { sentAt: undefined };
    const release = (): void => { if (this.#pushed.get(e.id) === push) this.#pushed.delete(e.id); };
    try {
      this.stream.pushStream({ ':path': `/v1/file?id=${encodeURIComponent(e.id)}` }, (err, pushed) => {
        if (err) {
          release();
          this.#stopPushing(err);
          return;
        }
        pushed.on('error', (x) => this.log.debug({ err: x }, 'pushed stream error'));
        // No longer counts once it ended in a way the client will not acknowledge: cancelled (not taken; the
        // client requests the file when it wants it), or the body was not the announced file's.
        pushed.once('close', () => {
          const whole = pushed.rstCode === http2.constants.NGHTTP2_NO_ERROR && Number(pushed.sentHeaders[':status']) === 200;
          if (!whole || pushed.sentTrailers?.['x-furka-unchanged'] !== '1') release();
          else push.sentAt = monotonicMs();
        });
        try {
          this.bodies.send(pushed, e);
        } catch (x) {
          this.log.error({ err: x, path: e.path }, 'cannot push a file: the client requests it');
          if (!pushed.destroyed) pushed.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        }
      });
    } catch (x) {
      this.#stopPushing(x as Error);
      return false;
    }
    this.#pushed.set(e.id, push);
    return true;
  }

  /** The client says whether it takes pushes now (`POST /v1/push?on=`). */
  wantsPushes(on: boolean): void {
    this.#pushWanted = on;
  }

  /** The client acknowledged `ids`: pushes of them no longer count. */
  acked(ids: string[]): void {
    for (const id of ids) this.#pushed.delete(id);
  }

  /**
   * A push could not start. No more on this stream: a client told that a body is pushed waits for it a while.
   * With no stream ids left (after 2^30 pushes on one connection), the connection is closed: the client
   * reconnects, and a new one has ids again.
   */
  #stopPushing(err: Error): void {
    if (this.#pushOff) return;
    this.#pushOff = true;
    this.log.warn({ err }, 'cannot push a file to a client: it requests files from now on');
    if ((err as NodeJS.ErrnoException).code === 'ERR_HTTP2_OUT_OF_STREAMS') this.stream.session?.close();
  }

  /** Sends every line of `listing`, then `then`, at the pace the client reads them (#pump). */
  list(listing: Iterable<Announcement>, then: Announcement): void {
    this.#listing = { lines: listing[Symbol.iterator](), then: [then] };
    this.#pump();
  }

  #pump(): void {
    const l = this.#listing;
    while (l && !this.#draining) {
      if (this.stream.destroyed || this.stream.closed) {
        this.#listing = undefined;
        return;
      }
      const next = l.lines.next();
      if (next.done) {
        this.#listing = undefined;
        for (const a of l.then) this.send(a);
        return;
      }
      this.send(next.value);
    }
  }

  write(text: string): void {
    if (this.stream.destroyed || this.stream.closed || this.stream.writableEnded) return;
    if (this.#draining) {
      this.#queue.push(text);
      this.#queuedBytes += text.length;
      if (this.#queuedBytes > CLIENT_BACKLOG_MAX) {
        this.log.warn({ backlogBytes: this.#queuedBytes }, 'an events client does not read: closing its stream (it reconnects and gets the listing)');
        this.#queue = [];
        this.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return;
    }
    if (!this.stream.write(text)) {
      this.#draining = true;
      this.stream.once('drain', () => this.#flush());
    }
  }

  /**
   * Ends the stream with `text` as its last line, behind every line queued for a client that is behind (its
   * 'drain' would not come once the stream ended): the queue, at most CLIENT_BACKLOG_MAX, is handed to the stream
   * at once. The rest of a listing being sent is dropped: the client asks again, and lists again.
   */
  end(text: string): void {
    this.#listing = undefined;
    if (this.stream.destroyed || this.stream.closed) return;
    const queued = this.#queue.join('');
    this.#queue = [];
    this.#queuedBytes = 0;
    this.stream.end(queued + text);
  }

  #flush(): void {
    this.#draining = false;
    const text = this.#queue.join('');
    this.#queue = [];
    this.#queuedBytes = 0;
    if (text) this.write(text);
    this.#pump();
  }
}

/**
 * Acknowledged files taken aside at once, before one question to the kernel for all of them: each holds two
 * descriptors meanwhile (its directory's and its own), so a large acknowledgement goes in slices.
 */
const ASIDE_AT_ONCE = 64;
/**
 * Peers remembered as logged, per reason (each logged once): beyond that all are forgotten and logged once again.
 * Bounded, as the addresses are the peers' choice (an IPv6 prefix has more than the agent has memory).
 */
const LOGGED_PEERS_MAX = 1024;

/** The request's path as a URL, or undefined when it is none ('//[' makes URL throw). */
function parsedPath(p: string | undefined): URL | undefined {
  try {
    return new URL(p ?? '/', 'http://agent');
  } catch {
    return undefined;
  }
}

/** Whether `key` is new to `said` (a bounded set of what was logged: emptied at LOGGED_PEERS_MAX); noted if so. */
function firstTime(said: Set<string>, key: string): boolean {
  if (said.has(key)) return false;
  if (said.size >= LOGGED_PEERS_MAX) said.clear();
  said.add(key);
  return true;
}

export class AgentServer {
  readonly #server = http2.createServer({ maxSessionMemory: SESSION_MEMORY_MB, settings: { maxConcurrentStreams: MAX_STREAMS } });
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  /** The TCP connections of allowed peers, cut at a stop that their sessions' graceful end does not finish (close()). */
  readonly #sockets = new Set<Socket>();
  readonly #clients = new Set<EventsClient>();
  /** Which events client holds which source: one furkad per source at a time (source-holders.ts). */
  readonly #holders: SourceHolders;
  /** Addresses not allowed, as logged so far: each is logged once (firstTime). */
  readonly #refusedPeers = new Set<string>();
  /** Addresses whose requests came without the key so far: each is logged once. */
  readonly #keylessPeers = new Set<string>();
  /** The proof each connection's requests must carry, once its client's challenge was answered (#hello). */
  readonly #proofs = new WeakMap<http2.Http2Session, string>();
  /** Connections that have not carried the key yet: bounded in number and time (keyless-sessions.ts). */
  readonly #keyless: KeylessSessions<http2.ServerHttp2Session>;
  /** Addresses whose connections were closed for carrying no key: each is logged once for each reason. */
  readonly #closedPeers = new Set<string>();
  readonly #bodies: FileBodies;
  /** Ends following the catalog's announcements (close()). */
  #unsubscribe: () => void = () => {};
  #sourceCheck: NodeJS.Timeout | undefined;

  /** `leases`: asks whether a file is still open for writing anywhere, before it is sent as whole and before it is deleted. */
  /** `key`: what every request must carry (A1); one without it is answered 401 and nothing else. */
  constructor(private readonly catalog: Catalog, private readonly allow: AllowList, private readonly key: KeyCheck, private readonly log: Logger, sendTimeoutMs: number,
    private readonly leases: LeaseCheck) {
    this.#bodies = new FileBodies(catalog, log, sendTimeoutMs, leases);
    this.#holders = new SourceHolders(log);
    this.#keyless = new KeylessSessions((session, why) => {
      const who = session.socket?.remoteAddress ?? '(unknown)';
      if (!firstTime(this.#closedPeers, `${why} ${who}`)) return;
      log.warn({ peer: who }, why === 'timeout' ? `closed a connection that sent no request with the key within ${KEYLESS_MS / 1000} s (logged once per address)`
        : 'closed the oldest of too many connections waiting to send a request with the key (logged once per address)');
    });
    // Checked on the TCP connection, before the HTTP/2 session sends its first frame: a peer not allowed is sent nothing.
    this.#server.prependListener('connection', (socket: Socket) => {
      if (!this.#allowed(socket.remoteAddress)) {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#server.on('session', (session) => {
      // A connection refused above (destroyed, and logged with its address) still brings its session, whose socket
      // has no address any more (nor does one its peer closed at once): no second line for it, which said
      // "(unknown)" as the peer of every refused connection.
      const address = session.socket?.remoteAddress;
      if (address === undefined || !this.#allowed(address)) {
        session.destroy();
        return;
      }
      this.#sessions.add(session);
      this.#keyless.add(session);
      session.on('close', () => {
        this.#sessions.delete(session);
        this.#keyless.gone(session);
      });
      session.on('error', (e) => log.debug({ err: e }, 'session error'));
    });
    this.#server.on('stream', (stream, headers) => {
      stream.on('error', (e) => log.debug({ err: e }, 'stream error'));
      // Parsed once, and never thrown out of this handler: a path URL cannot parse ('//[') ended the agent, sent by
      // anyone an allowed address, without the key, once the key challenge was looked for before the key.
      const url = parsedPath(headers[':path']);
      // The key challenge is the one request answered without the key: its answer proves the agent holds it.
      if (url && this.#hello(stream, headers, url)) return;
      // Before anything else: a request without the key learns nothing, takes nothing, deletes nothing.
      if (!this.#keyed(stream, headers)) return;
      if (!url) {
        reply(stream, 400, { error: 'not a path' });
        return;
      }
      try {
        this.#route(stream, headers, url);
      } catch (e) {
        log.error({ err: e }, 'request failed');
        reply(stream, 500, { error: String((e as Error).message) });
      }
    });
    this.#server.setTimeout(0);
  }

  get clients(): number { return this.#clients.size; }

  /** Listens on address:port, and from then on passes the catalog's announcements to the clients. */
  listen(port: number, address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      // Said as grimseld and furkad say it (common/tcp-listener.ts), not as a bare "listen EADDRINUSE" (h12).
      const failed = (e: NodeJS.ErrnoException): void => {
        const why = e.code === 'EADDRINUSE' ? 'the port is in use (is another furka-agent, or another daemon, running on it?)'
          : e.code === 'EACCES' && port > 0 && port < 1024 ? `${e.message} (a port below 1024 needs CAP_NET_BIND_SERVICE)` : e.message;
        reject(Object.assign(new Error(`cannot listen on ${address}:${port}: ${why}`), { code: e.code }));
      };
      this.#server.once('error', failed);
      this.#server.listen(port, address, () => {
        this.#server.off('error', failed);
        this.#unsubscribe = this.catalog.announced.on((a) => this.announce(a));
        this.#sourceCheck = setInterval(() => this.#endGoneSources(), SOURCE_CHECK_MS).unref();
        resolve();
      });
    });
  }

  /** Passes an announcement to every events client whose source covers it (a new file's body pushed where taken). */
  announce(a: Announcement): void {
    for (const c of this.#clients) c.send(a);
  }

  /**
   * Ends the stream of every events client whose source is no longer a directory (deleted on the detector, a run
   * directory taken away): a `gone` line says why, so that furkad shows it and asks again (404 until it is made
   * again) instead of showing the detector idle while its files go elsewhere.
   */
  #endGoneSources(): void {
    for (const c of this.#clients) {
      const missing = sourceMissing(this.catalog.root, c.source);
      if (missing === undefined || c.stream.destroyed || c.stream.closed) continue;
      this.log.warn({ source: `/${c.source}` }, `${missing}: its events stream is ended`);
      this.#clients.delete(c);
      c.end(`${JSON.stringify({ t: 'gone', error: missing })}\n`);
    }
  }

  close(): Promise<void> {
    clearInterval(this.#sourceCheck);
    this.#unsubscribe();
    return new Promise((resolve) => {
      // A session's destroy ends its connection gracefully: what is queued on it is sent first. Over a link that went
      // down without a word, that waited for the link, and the stop took minutes, past the unit's TimeoutStopSec
      // (hostile tester h13): after CLOSE_GRACE_MS the connections are cut.
      const cut = setTimeout(() => { for (const s of this.#sockets) s.destroy(); }, CLOSE_GRACE_MS);
      this.#server.close(() => {
        clearTimeout(cut);
        resolve();
      });
      for (const s of this.#sessions) s.destroy();
    });
  }

  #allowed(address: string | undefined): boolean {
    if (this.allow.allows(address)) return true;
    const who = address ?? '(unknown)';
    if (firstTime(this.#refusedPeers, who)) this.log.warn({ peer: who }, 'connection from an address not in allow: closed (logged once per address)');
    return false;
  }

  /**
   * `GET /v1/hello?nonce=FURKAD_NONCE`, furkad's challenge at each connection (shared-key.ts, keyProofs): answered
   * with the agent's own challenge and its proof that it holds the key, and the connection's later requests may then
   * prove the key (`authorization: Furka-Proof PROOF`) instead of carrying it. Whether the request was this one.
   */
  #hello(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, url: URL): boolean {
    if (url.pathname !== '/v1/hello') return false;
    const nonce = url.searchParams.get('nonce');
    if (headers[':method'] !== 'GET') {
      reply(stream, 405, { error: 'GET only' });
    } else if (!validNonce(nonce)) {
      reply(stream, 400, { error: 'nonce must be 32 to 128 lowercase hex digits' });
    } else if (stream.session) {
      const answer = this.key.answer(nonce);
      this.#proofs.set(stream.session, answer.expect);
      reply(stream, 200, { t: 'hello', agent: 'furka-agent', protocol: PROTOCOL, nonce: answer.nonce, proof: answer.proof });
    }
    return true;
  }

  /**
   * Whether the request carries the key. If not it is answered 401, with a body that says so, and its peer is
   * logged once: the address alone says only which host, and every local user of an allowed host has it.
   */
  #keyed(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    if (this.key.accepts(headers.authorization, stream.session ? this.#proofs.get(stream.session) : undefined)) {
      if (stream.session) this.#keyless.keyed(stream.session as http2.ServerHttp2Session);
      return true;
    }
    const who = stream.session?.socket?.remoteAddress ?? '(unknown)';
    if (firstTime(this.#keylessPeers, who)) {
      this.log.warn({ peer: who, path: headers[':path'] }, `a request ${headers.authorization === undefined ? 'without a key' : 'with a wrong key'}: ` +
        "refused (401); furkad's agent_key_file must hold this agent's key_file (logged once per address)");
    }
    if (!stream.destroyed && !stream.closed) {
      stream.respond({ ':status': 401, 'www-authenticate': 'Bearer realm="furka-agent"', 'content-type': 'application/json' });
      stream.end(JSON.stringify({ error: "no key or a wrong key: every request must carry the agent's key (authorization: Bearer KEY)" }));
    }
    return false;
  }

  #route(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, url: URL): void {
    const method = headers[':method'];
    const routes: Record<string, [string, () => void]> = {
      '/v1/events': ['GET', () => {
        this.#events(stream, url).catch((e: Error) => {
          this.log.error({ err: e }, 'events request failed');
          reply(stream, 500, { error: e.message });
        });
      }],
      '/v1/file': ['GET', () => this.#file(stream, url)],
      '/v1/ack': ['POST', () => this.#ack(stream)],
      '/v1/barrier': ['POST', () => this.#barrier(stream, url)],
      '/v1/push': ['POST', () => this.#pushWish(stream, url)],
    };
    const route = routes[url.pathname];
    if (!route) return reply(stream, 404, { error: 'no such resource' });
    if (method !== route[0]) {
      stream.respond({ ':status': 405, allow: route[0] });
      stream.end();
      return;
    }
    route[1]();
  }

  async #events(stream: http2.ServerHttp2Stream, url: URL): Promise<void> {
    const source = parseSource(url.searchParams.get('source'));
    if (source === undefined) return reply(stream, 400, { error: "bad source: a directory below the root, without '..'" });
    const push = parsePush(url.searchParams.get('push'));
    if (push === undefined) return reply(stream, 400, { error: 'bad push: the number of bodies to push at once, 0 to 999' });
    const observe = parseObserve(url.searchParams.get('observe'));
    if (observe === undefined) return reply(stream, 400, { error: 'bad observe: 1 (only watch, hold no source) or 0' });
    const linked = linkOnTheWay(this.catalog.root, source);
    if (linked !== undefined) {
      // The agent reaches files from its root without following links: nothing below a link is ever announced.
      return reply(stream, 400, { error: `source /${source}: /${linked} is a symbolic link; the agent serves the directories below its root ` +
        'as they are, so nothing would ever be sent for it: set the source to the directory the link leads to' });
    }
    if (this.catalog.filter.skipsPath(source)) {
      // Nothing below a hidden or excluded directory is ever announced (a writer's temp directory: name-filter.ts).
      return reply(stream, 400, { error: `source /${source}: a directory on its way starts with '.' or matches the agent's exclude, ` +
        'and the agent never sends files below such a directory (a writer\'s temp directory): set the source to a directory outside it' });
    }
    const missing = sourceMissing(this.catalog.root, source);
    if (missing !== undefined) return reply(stream, 404, { error: missing });
    // One furkad per source: two would each be sent every file, and whichever acknowledged first had it deleted
    // from under the other (A4). A client that only watches (observe=1: curl, a test) holds nothing.
    if (!observe) {
      const claim = await this.#holders.claim(source, stream);
      if ('gone' in claim) return;
      if (!claim.granted) return this.#held(stream, source, claim.holder);
    }
    if (stream.destroyed || stream.closed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    const client = new EventsClient(stream, source, push, this.#bodies, this.log);
    client.write(`${JSON.stringify({ t: 'hello', agent: 'furka-agent', protocol: PROTOCOL, root: this.catalog.root, source: `/${source}` })}\n`);
    // Live announcements go to it from now on too, between the listing's lines (furkad takes a file twice
    // announced once); 'synced' follows the whole listing.
    this.#clients.add(client);
    client.list(this.catalog.listing(), { t: 'synced' });
    stream.on('close', () => this.#clients.delete(client));
    const socket = stream.session?.socket;
    this.log.info({ source: `/${source}`, peer: peerName({ address: socket?.remoteAddress ?? '(unknown)', port: socket?.remotePort ?? 0 }),
      ...(observe ? { observe } : {}), clients: this.#clients.size }, 'events client connected');
  }

  /** 409 for an events request whose source overlaps one a live client holds: the body names that client. */
  #held(stream: http2.ServerHttp2Stream, source: string, h: Holder): void {
    const same = h.source === source ? '' : ` (it holds /${h.source}, which overlaps)`;
    reply(stream, 409, {
      error: `source /${source} is held by another events client, ${peerName(h)}${same}, since ${h.since}, which answers: ` +
        'one furkad per source at a time, so that no file goes to two PPUs; served once that client is gone',
      holder: { address: h.address, port: h.port, source: `/${h.source}`, since: h.since },
    });
  }

  #file(stream: http2.ServerHttp2Stream, url: URL): void {
    // `path` (optional): the name furkad was told of; x-furka-path says which name the body has.
    const id = url.searchParams.get('id') ?? '';
    const at = url.searchParams.get('path');
    const entry = at === null ? this.catalog.byId(id) : this.catalog.byIdAt(id, at);
    if (!entry) return reply(stream, 404, { error: 'no such id' });
    this.#bodies.send(stream, entry);
  }

  /**
   * Puts barrier `id` into the kernel's event stream (barrier.ts): `{"t":"barrier","id":ID}` follows on every
   * events stream once all files completed before this request are announced there. 503 if the mark cannot be
   * made: then no such line comes.
   */
  #barrier(stream: http2.ServerHttp2Stream, url: URL): void {
    const id = url.searchParams.get('id') ?? '';
    if (!validBarrierId(id)) return reply(stream, 400, { error: 'bad id: 1 to 64 of A-Z a-z 0-9 - _' });
    try {
      this.catalog.placeBarrier(id);
    } catch (e) {
      this.log.warn({ err: e, barrier: id }, 'cannot place a barrier mark in the root');
      return reply(stream, 503, { error: `cannot place a barrier mark in the root: ${(e as Error).message}` });
    }
    reply(stream, 200, { id });
  }

  /**
   * `POST /v1/push?on=0|1`: whether the client takes pushes now, for its events streams on this connection. Asked
   * of a request, not of HTTP/2's SETTINGS_ENABLE_PUSH: a promise already queued when that setting goes off fails,
   * and Node 20 ends the whole connection at such a failure.
   */
  #pushWish(stream: http2.ServerHttp2Stream, url: URL): void {
    const on = url.searchParams.get('on');
    if (on !== '0' && on !== '1') return reply(stream, 400, { error: 'bad on: 1 (push bodies) or 0 (announce only)' });
    for (const c of this.#clients) if (c.stream.session === stream.session) c.wantsPushes(on === '1');
    stream.respond({ ':status': 204 }, { endStream: true });
  }

  #ack(stream: http2.ServerHttp2Stream): void {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (b: Buffer) => {
      size += b.length;
      if (size > ACK_BODY_MAX) {
        reply(stream, 413, { error: `body larger than ${ACK_BODY_MAX} bytes` });
        stream.close();
        return;
      }
      chunks.push(b);
    });
    stream.on('end', () => {
      if (size > ACK_BODY_MAX) return;
      let ids: unknown;
      let paths: unknown;
      let sums: unknown;
      try {
        ({ ids, paths, sums } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { ids?: unknown; paths?: unknown; sums?: unknown });
      } catch {
        ids = undefined;
      }
      const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((i) => typeof i === 'string');
      if (!strings(ids) || (paths !== undefined && (!strings(paths) || paths.length !== ids.length))) {
        return reply(stream, 400, { error: 'body must be {"ids":["ID", ...]} or {"ids":["ID", ...],"paths":["PATH", ...]} (as many paths as ids)' });
      }
      // sums (optional, '' where unknown): checksums of what furkad placed; the file is compared with each before
      // it is deleted. One that is not a checksum is refused, never taken as unknown (a file would go unchecked).
      let placedSums: string[] | undefined;
      if (sums !== undefined) {
        placedSums = strings(sums) && sums.length === ids.length ? sums.map((x) => { const v = x.trim().toLowerCase(); return untagged(v) ?? v; }) : undefined;
        const at = placedSums === undefined ? -1 : placedSums.findIndex((x) => x !== '' && !isBareChecksum(x));
        if (placedSums === undefined || at >= 0) {
          const bad = placedSums === undefined ? sums : (sums as string[])[at];
          return reply(stream, 400, { error: `sums must be one XXH3-128 checksum (32 hex digits, or "xxh128:" and them) or "" per id; not ${JSON.stringify(bad).slice(0, 80)}` });
        }
      }
      this.#delete(ids, paths as string[] | undefined, placedSums).then((answer) => reply(stream, 200, answer), (e: Error) => {
        this.log.error({ err: e }, 'acknowledgement failed');
        reply(stream, 500, { error: e.message });
      });
    });
  }

  /**
   * Deletes each acknowledged source that is still the announced file and that no process still writes (A4);
   * says why each other one stays. All are taken aside first, then one question to the kernel for all of them
   * (lease-check.ts), then each deleted or put back.
   */
  async #delete(ids: string[], paths?: string[], sums?: string[]): Promise<{ deleted: string[]; kept: { id: string; reason: string }[] }> {
    const deleted: string[] = [];
    const kept: { id: string; reason: string }[] = [];
    for (let at = 0; at < ids.length; at += ASIDE_AT_ONCE) {
      const taken: Array<{ id: string; entry: FileEntry; t: TakenAside; sent: Sent | undefined; placed: string | undefined }> = [];
      for (let i = at; i < Math.min(at + ASIDE_AT_ONCE, ids.length); i++) {
        const id = ids[i]!;
        const entry: FileEntry | undefined = paths ? this.catalog.byIdAt(id, paths[i]!) : this.catalog.byId(id);
        if (!entry) {
          kept.push({ id, reason: 'unknown' });
          continue;
        }
        // Placed under another name than the file has now (renamed after it was complete: the id is the same):
        // that name was not placed; the file waits for its own acknowledgement under it. Or gone altogether.
        if (paths && paths[i] !== entry.path) {
          kept.push({ id, reason: this.catalog.current(entry) ? 'moved' : 'gone' });
          continue;
        }
        // A newer version under its name, which the file system cannot tell from this one (catalog.ts): kept.
        if (this.catalog.rewritten(entry)) {
          kept.push({ id, reason: 'changed' });
          continue;
        }
        let r: Removal | TakenAside;
        try {
          r = this.catalog.files.takeAside(entry.path, entry.id);
        } catch (e) {
          this.#notRemovable(e, entry, id, kept);
          continue;
        }
        if ('fd' in r) taken.push({ id, entry, t: r, sent: this.#bodies.takeSent(id, entry.path), placed: sums?.[i] || undefined });
        else this.#removed(r, entry, id, undefined, deleted, kept);
      }
      // Never rejects: what cannot be told counts as written (kept). Then each file not written is compared with
      // what was sent of it (file-body.ts): changed since, though its id says not (rewritten in place with the
      // same size and mtime), it is not the file furkad placed.
      const written = await this.#written(taken.map((x) => x.t));
      const other = await this.#otherThanSent(taken, written);
      // Each one finished, whatever happens to another: none is left under its hidden name.
      taken.forEach(({ id, entry, t }, i) => {
        try {
          // Rewritten while the question was out (its close read meanwhile), or not what was sent: put back.
          const changed = other[i]! || this.catalog.rewritten(entry);
          const r = this.catalog.files.finishAside(t, written[i]!, changed);
          this.#removed(r, entry, id, t.asideRel, deleted, kept);
          if (other[i] && !written[i] && (r.restoredAs === undefined || r.restoredAs === entry.path)) {
            this.log.warn({ path: entry.path }, 'an acknowledged file changed after it was sent although its id did not (rewritten in place with the same size and mtime): kept, announced again as a new version');
            this.catalog.newVersion(entry);
          }
        } catch (e) {
          this.#notRemovable(e, entry, id, kept);
        }
      });
    }
    for (const c of this.#clients) c.acked(ids);
    this.log.debug({ deleted: deleted.length, kept: kept.length }, 'acknowledged');
    return { deleted, kept };
  }

  /**
   * For each file taken aside and not `written`, whether it is other than what furkad placed: its checksum
   * `placed` where furkad sent it, else what was sent of it (file-body.ts). The bytes are compared (read in the
   * thread pool, one file at a time) unless the send is known to be what was placed and nothing can have
   * changed since: its ctime has not moved and it was not read within a tick of it. A file sent twice with
   * other bytes and no word of which was placed is other. False where there is nothing to compare with (the
   * id alone decides, as before). A read that fails counts as other: kept.
   */
  async #otherThanSent(taken: Array<{ t: TakenAside; sent: Sent | undefined; placed: string | undefined }>, written: boolean[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (const [i, { t, sent, placed }] of taken.entries()) {
      const against = placed ?? sent?.hex;
      if (against === undefined || written[i]) out.push(false);
      else if (!placed && sent!.differed) out.push(true);
      else if (sent && sent.hex === against && !sent.differed && sent.ctimeNs === t.ctimeNs && !sent.young) out.push(false);
      else out.push(await checksumOfFdInPool(t.fd).then((hex) => hex !== against, () => true));
    }
    return out;
  }

  /**
   * Whether some process still writes each file taken aside: asked of the kernel (a read lease), and where it
   * would not say (no python3, no leases there), of /proc (one walk for all of them). When in doubt: written.
   */
  async #written(taken: TakenAside[]): Promise<boolean[]> {
    const said = await this.leases.written(taken.map((t) => t.fd));
    const unsure = taken.filter((_, i) => said[i] === undefined);
    let walked = new Set<string>();
    if (unsure.length > 0) {
      try {
        walked = filesBeingWritten(new Set(unsure.map((t) => t.file)));
      } catch (e) {
        this.log.error({ err: e }, 'cannot tell whether acknowledged files are still being written: kept');
        return taken.map((t, i) => said[i] ?? true);
      }
    }
    return taken.map((t, i) => said[i] ?? walked.has(t.file));
  }

  /** What one acknowledged file's removal came to, for the catalog, the log and the answer. */
  #removed(r: Removal, entry: FileEntry, id: string, asideRel: string | undefined, deleted: string[], kept: { id: string; reason: string }[]): void {
    const { outcome, restoredAs, renamed } = r;
    if (outcome === 'deleted' || outcome === 'gone') this.catalog.forget(entry);
    if (outcome === 'deleted') deleted.push(id);
    else kept.push({ id, reason: outcome });
    if (outcome === 'written') {
      // A writer with a second descriptor still has it open: not deleted, its close announces it again.
      // Put back with link(2), its writer's close comes under the aside name; by rename(2), under its own.
      this.catalog.stillWritten(entry, asideRel !== undefined && !renamed ? { aside: asideRel, as: restoredAs ?? entry.path } : undefined, renamed ? restoredAs : undefined);
      this.log.warn({ path: entry.path, ...(restoredAs !== entry.path ? { restoredAs } : {}) },
        'an acknowledged file is still open for writing: kept, and announced again once its writer closes it');
      return;
    }
    // Changed since it was sent: announced again once complete, also when no event says so (a bare utime).
    if (outcome === 'changed') this.catalog.suspect(entry.path);
    // Put back by rename(2): its MOVED_TO announces it, and no later "created" of that name is to be taken for it.
    if (restoredAs !== undefined && renamed) {
      this.log.warn({ path: entry.path, restoredAs }, 'an acknowledged file changed while it was being deleted, or another took its name: kept, put back by rename (no room for a link), announced again');
    } else if (restoredAs !== undefined && asideRel !== undefined) {
      // Written to while the question was out, and closed since (its close was reported under the aside name):
      // put back, and announced again at the "created" its put-back makes.
      this.catalog.restored(restoredAs);
      this.log.warn({ path: entry.path, restoredAs }, 'an acknowledged file was written to while it was being deleted: kept, announced again');
    } else if (restoredAs !== undefined) {
      // Another file took the name between the check and the deletion: it was put back, never deleted.
      this.catalog.restored(restoredAs);
      this.log.warn({ path: entry.path, restoredAs }, restoredAs === entry.path
        ? 'an acknowledged file was replaced while it was being deleted: the new file is kept'
        : 'an acknowledged file was replaced twice while it was being deleted: the newer files are kept, one under a numbered name');
    }
  }

  /** Still there and not removable (an immutable file, say): it stays, as a changed file would. */
  #notRemovable(e: unknown, entry: FileEntry, id: string, kept: { id: string; reason: string }[]): void {
    this.log.error({ err: e, path: entry.path }, 'cannot delete an acknowledged file');
    kept.push({ id, reason: 'changed' });
  }
}

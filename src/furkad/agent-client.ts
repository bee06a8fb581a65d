// furkad's end of one furka-agent connection (docs/agent-protocol.md): the announcements of complete files,
// fetching one into staging, acknowledging placed ones (A3, A4). No policy here: the agent transport
// decides what to fetch when, and what a failure means.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { closeSync, constants, openSync, writeSync, writevSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Checksum } from '../common/checksum.js';
import { keyProofs, newNonce, PROOF_SCHEME, sameSecret, validNonce } from '../common/shared-key.js';
import { sentChecksum, type SentChecksum } from '../common/checksum-trailer.js';
import { AgentPushes, BodyReply, discard } from './agent-pushes.js';
import { monotonicMs } from '../common/monotonic.js';
import { notHttp2 } from './agent-peer.js';
import { followAddress, hostLookup } from './host-lookup.js';

/** A complete file the agent announced: `path` is relative to the detector's source directory. */
export interface Announced {
  id: string;
  path: string;
  size: number;
  mtimeNs: bigint;
  mode: number;
  /** The agent pushes its body (protocol 2): a fetch of it takes that instead of asking. */
  pushed?: boolean;
}

/** What a fetch brought: `unchanged` is the agent's word that the bytes sent are the announced file's. */
export interface Fetched {
  bytes: number;
  unchanged: boolean;
  /** The checksum (hex) of the bytes received, taken as they were written: no second read (I2). */
  checksum: string;
  /** The checksum the agent sent with them (I1). */
  sent: SentChecksum;
  /** `dest`, still open (for writing): the caller's to close, after it has set the file's owner, mode and times. */
  fd: number;
}

/** An answer the agent gives that is not a transport failure: the file is gone or changed (404, 410). */
export class FileGone extends Error {}

/** The agent's file of that id has another name now (renamed or linked after it was complete; the id stays). */
export class OtherName extends FileGone {}

/** How long a request may go unanswered, and how often the connection is checked while idle. */
const REQUEST_TIMEOUT_MS = 30_000;
const PING_EVERY_MS = 5_000;
/**
 * How long the agent may take to answer a new connection's events request: as long as an open connection may go
 * without answering a ping. An agent that accepted the connection and then says nothing (a frozen detector server)
 * holds the run for that long, and a shift change or a stop waits for that run (F6): with the request timeout it
 * was 30 s, past busctl's 25 s and systemd's TimeoutStopSec.
 */
const CONNECT_TIMEOUT_MS = 2 * PING_EVERY_MS;
/** The most of the key challenge's answer read (a few hundred bytes from an agent). */
const HELLO_BODY_MAX = 4096;
/**
 * Flow-control windows: HTTP/2's default 64 KiB per stream would hold a 6 MB image to a trickle of round
 * trips. Large windows let several files stream at full speed on the one connection.
 */
const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;
/** Frames of up to 1 MiB instead of HTTP/2's 16 KiB: fewer chunks, fewer writes per image. */
const MAX_FRAME = (1 << 20) - 1;
/**
 * Received pieces are written once this many bytes wait, with one writev: Node's HTTP/2 hands a body over in
 * 16 KiB frames whatever MAX_FRAME says (nghttp2 sends no larger DATA frames unless told by a callback Node does
 * not set), and a write system call per frame cost furkad more than the copy itself (BENCHMARKS.md).
 */
const WRITE_BATCH = 256 << 10;

export interface AgentClientEvents {
  file: (f: Announced) => void;
  /** `key`: what tells this name from others shown alike (its bytes, from an agent that sends them; else the path). */
  refused: (path: string, reason: string, key: string) => void;
  /** A name refused before is gone from the detector. */
  unrefused: (path: string, key: string) => void;
  synced: () => void;
  /** The agent's barrier `id` came on the events stream, read at `at` (monotonicMs()). */
  barrier: (id: string, at: number) => void;
  /** The connection or the events stream ended: nothing more is announced until reconnect(). */
  down: (why: string) => void;
}

export class AgentClient extends EventEmitter {
  #session: http2.ClientHttp2Session | undefined;
  /** The session's socket: destroyed with it when the connection is given up (abandon). */
  #socket: net.Socket | undefined;
  #ping: NodeJS.Timeout | undefined;
  #isDown = true;
  /** Why the last connection was given up (#down, close): what a body it cut off is said with. */
  #downWhy: string | undefined;
  /** Barriers waited for (passBarrier): close() ends them. */
  readonly #barriers = new Set<(why: string) => void>();
  /** Bodies the agent pushed, until their fetches claim them. */
  readonly #pushes: AgentPushes;
  /** Whether furkad wants pushes now (takePushes); a new connection starts with them on. */
  #pushesWanted = true;
  /** What the agent was last told about pushes, and whether that request awaits its answer. */
  #pushesTold = true;
  #telling = false;

  /**
   * `authorization` header of every request of the connection: the proof of the key for its challenges (#helloed),
   * made once the agent proved it holds the key; the agent answers 401 to a request without it (A1).
   */
  #auth: { authorization: string } = { authorization: '' };

  /**
   * `key`: the agent's key and the file it was read from (agent_key_file, named when the agent refuses it).
   * `pushes`: how many bodies the agent may push at once behind their announcements (0: every file is requested).
   */
  constructor(readonly url: string, readonly source: string, private readonly key: { value: string; file: string }, private readonly pushes = 0) {
    super();
    this.#pushes = new AgentPushes(pushes);
  }

  override on<E extends keyof AgentClientEvents>(event: E, listener: AgentClientEvents[E]): this {
    return super.on(event, listener);
  }

  get connected(): boolean {
    return !this.#isDown;
  }

  /**
   * Opens the connection and the events stream; resolves once the agent said hello, rejects if it did not, with
   * what went wrong as far as furkad can tell: no connection made, a connection on which nothing answered, a
   * peer that closed it without a word (the agent's `allow`), or a peer that is no HTTP/2 server (agent-peer.ts).
   */
  connect(): Promise<void> {
    this.close();
    return new Promise((resolve, reject) => {
      let answered = false;
      const { hostname, port } = new URL(this.url);
      const host = hostname.replace(/^\[|\]$/g, '');
      // TCP_NODELAY: a small announcement or acknowledgement must not wait for Nagle's timer.
      // A name is looked up outside the process, bounded (host-lookup.ts): a DNS server that does not answer holds up
      // this detector only, says so, and never keeps a stopping furkad.
      const socket = net.connect({ host, port: Number(port), noDelay: true, lookup: hostLookup });
      let tcp = false;
      socket.once('connect', () => { tcp = true; });
      // A name that did not resolve is the reason, whichever of the session's streams fails first with it.
      let unresolved: string | undefined;
      socket.once('lookup', (e: Error | null) => {
        if (e) unresolved = `cannot connect to the agent at ${this.url}: ${e.message}`;
      });
      const notReached = followAddress(socket, host);
      const session = http2.connect(this.url, {
        settings: { initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME },
        createConnection: () => socket,
      });
      this.#session = session;
      this.#socket = socket;
      this.#pushesWanted = true;
      this.#pushesTold = true;
      this.#telling = false;
      // Events of a session given up (timed out, closed, replaced by a newer one) may still come: Node emits
      // 'connect' on a destroyed session when its socket connects late. They concern that session only.
      const current = (): boolean => this.#session === session && !session.destroyed;
      const fail = (said: string, how?: 'timeout' | 'said'): void => {
        const why = unresolved ?? said;
        clearTimeout(timer);
        // Closed by furkad itself (close(): a stop, a run cut short, a newer connection): nothing to tell of the peer.
        const given = this.#session !== session;
        if (!given) this.#down(why);
        if (answered) return;
        answered = true;
        // The connection is given up whatever the reason is found to be: its socket too (a connect still
        // under way would go on retrying its SYN, and a late connection would reach a session that is gone).
        const bytes = socket.bytesRead;
        abandon(session, socket);
        if (given) reject(new Error(`connecting to the agent at ${this.url} was given up`));
        else if (how === 'said') reject(new Error(why));
        else {
          void this.#reason(why, { tcp, bytes, timedOut: how === 'timeout', host, port: Number(port) }).then((r) => {
            // After the reason, which looks at the same address: the name's next one is tried next time.
            if (!tcp) notReached();
            reject(new Error(r));
          });
        }
      };
      session.on('error', (e: Error) => fail(`connection to the agent at ${this.url} failed: ${wordsOf(e)}`));
      session.on('close', () => fail(`the agent at ${this.url} closed the connection`));
      session.on('goaway', () => fail(`the agent at ${this.url} is going away`));
      session.on('connect', () => {
        if (!current()) return;
        try {
          session.setLocalWindowSize(SESSION_WINDOW);
        } catch (e) {
          fail(`connection to the agent at ${this.url} failed: ${(e as Error).message}`);
        }
      });
      const timer = setTimeout(() => fail(`no answer from the agent at ${this.url} within ${CONNECT_TIMEOUT_MS / 1000} s`, 'timeout'), CONNECT_TIMEOUT_MS);
      session.on('stream', (pushed: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders) => this.#pushes.arrived(pushed, headers));
      // The key challenge first (shared-key.ts): furkad proves its key without sending it, and only to an agent
      // that proved it holds it, so a program that took the agent's port learns nothing and feeds furkad nothing.
      const nonce = newNonce();
      const hello = session.request({ ':method': 'GET', ':path': `/v1/hello?nonce=${nonce}` });
      hello.setEncoding('utf8');
      let helloStatus = 0;
      let helloBody = '';
      hello.on('response', (headers) => { helloStatus = Number(headers[':status']); });
      hello.on('data', (chunk: string) => { if (helloBody.length < HELLO_BODY_MAX) helloBody += chunk; });
      // Ended with its connection (refused, reset, closed; Node 16 ends the stream first): the session's errors,
      // which follow, say why. Ended otherwise without an answer (reset alone, or furkad gave the session up: Node
      // 16 may emit nothing more for it, and the attempt must end now, at a stop or a shift change): said here.
      const helloWithConnection = (): boolean => this.#session === session &&
        (!tcp || (hello.rstCode !== undefined && hello.rstCode !== http2.constants.NGHTTP2_NO_ERROR && (session.closed || session.destroyed)));
      hello.on('end', () => {
        if (answered || helloWithConnection()) return;
        if (!current() || helloStatus === 0) {
          fail(`the agent at ${this.url} ended furkad's key challenge unanswered`);
          return;
        }
        const auth = this.#helloed(helloStatus, helloBody, nonce);
        if (typeof auth === 'string') {
          fail(auth, 'said');
          session.destroy();
          return;
        }
        this.#auth = auth;
        openEvents();
      });
      hello.on('error', (e: Error) => (this.#session === session && !tcp ? undefined : fail(`the key challenge to the agent at ${this.url}: ${e.message}`)));
      const openEvents = (): void => {
        const push = this.pushes > 0 ? `&push=${this.pushes}` : '';
        const events = session.request({ ...this.#auth, ':method': 'GET', ':path': `/v1/events?source=${encodeURIComponent(this.source)}${push}` });
        events.setEncoding('utf8');
        let buffered = '';
        let refusedWith: number | undefined;
        /** The agent's last line when it ended the stream because the source was taken away ('gone'). */
        let gone: string | undefined;
        events.on('response', (headers) => {
          const status = headers[':status'];
          if (status !== 200) refusedWith = Number(status);
        });
        // A refusal's body says why (a source that is a link, say): read, then said (Detectors lastError).
        const refusal = (body: string): void => {
          clearTimeout(timer);
          let why = '';
          let holder: { address?: unknown; port?: unknown; source?: unknown } | undefined;
          try {
            const parsed = JSON.parse(body) as { error?: unknown; holder?: typeof holder };
            why = String(parsed.error ?? '');
            holder = typeof parsed.holder === 'object' && parsed.holder !== null ? parsed.holder : undefined;
          } catch { /* not JSON: the status alone */ }
          // 401: the key is not the agent's; said as that, not as a refused address or a bad source.
          if (refusedWith === 401) {
            fail(`the agent at ${this.url} refused furkad's key (HTTP 401): the key in ${this.key.file} (agent_key_file) does not match ` +
              "the agent's key_file; copy the detector server's /etc/ppu/furka-agent.key to it (README, Install)", 'said');
          } else if (refusedWith === 409 && holder?.address !== undefined) {
            // Another furkad holds this source (or one overlapping it): said as that, naming it, and asked again
            // with the loop's back-off, so that this one takes over once the other is gone (A4, F1).
            const held = holder.source !== undefined && holder.source !== this.source ? ` (it holds '${String(holder.source)}', which overlaps)` : '';
            fail(`the agent at ${this.url} serves '${this.source}' to another furkad, at ${String(holder.address)} port ${String(holder.port)}${held}: ` +
              'one PPU per detector source; taken over once that one is gone (stop the other furkad, or give one of them another source)', 'said');
          } else {
            fail(`the agent at ${this.url} refused the events stream of '${this.source}': HTTP ${refusedWith}${why ? `: ${why}` : ''}`, 'said');
          }
          session.destroy();
      };
      events.on('data', (chunk: string) => {
        buffered += chunk;
        if (refusedWith !== undefined) return;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() === '') continue;
          let ev: Record<string, unknown>;
          try {
            ev = JSON.parse(line) as Record<string, unknown>;
          } catch {
            fail(`the agent at ${this.url} sent a line that is not JSON: ${line.slice(0, 200)}`, 'said');
            session.destroy();
            return;
          }
          if (ev['t'] === 'hello') {
            clearTimeout(timer);
            answered = true;
            this.#isDown = false;
            this.#downWhy = undefined;
            this.#startPings(session);
            resolve();
          } else if (ev['t'] === 'file') {
            const pushed = ev['push'] === true;
            if (pushed) this.#pushes.promised(String(ev['id']));
            this.emit('file', {
              id: String(ev['id']), path: String(ev['path']), size: Number(ev['size']),
              mtimeNs: BigInt(String(ev['mtime_ns'])), mode: Number(ev['mode']), pushed,
            } satisfies Announced);
          } else if (ev['t'] === 'refused') {
            this.emit('refused', String(ev['path']), String(ev['reason']), String(ev['bytes'] ?? ev['path']));
          } else if (ev['t'] === 'unrefused') {
            this.emit('unrefused', String(ev['path']), String(ev['bytes'] ?? ev['path']));
          } else if (ev['t'] === 'synced') {
            this.emit('synced');
          } else if (ev['t'] === 'gone') {
            // The source was taken away on the detector: the stream ends after this line; said as the agent's words.
            gone = String(ev['error']);
          } else if (ev['t'] === 'barrier') {
            // The time is taken here, in line order: every file line before it was handled before it.
            this.emit('barrier', String(ev['id']), monotonicMs());
          }
        }
      });
      // A stream cancelled with its connection (refused, reset, closed: Node 16 ends it first, before the errors
      // that say why) did not end by the agent's word: the stream's error, or the session's error or close, which
      // follow, give the reason. Unless furkad gave the session up itself: Node 16 may emit nothing more for one
      // that never connected, and the attempt must end now (a stop, a shift change). A stream reset alone, its
      // session still up, is said here: nothing else would follow it (the pings are still answered).
      const withConnection = (): boolean => this.#session === session &&
        (!tcp || (events.rstCode !== undefined && events.rstCode !== http2.constants.NGHTTP2_NO_ERROR && (session.closed || session.destroyed)));
      events.on('end', () => (withConnection() ? undefined : refusedWith !== undefined ? refusal(buffered.slice(0, 2000))
        : fail(`the agent at ${this.url} ended the events stream${gone === undefined ? '' : ` of '${this.source}': ${gone}`}`, gone === undefined ? undefined : 'said')));
      events.on('error', (e: Error) => (this.#session === session && !tcp ? undefined : fail(`events stream from ${this.url}: ${e.message}`)));
      };
    });
  }

  /**
   * The agent's answer to furkad's challenge `nonce`: the header that proves furkad's key on this connection, or,
   * if the agent did not prove it holds the key, why not (said in Detectors). An agent from before 2026-12-05
   * answers 401 (it wants the key itself, which furkad no longer sends).
   */
  #helloed(status: number, body: string, nonce: string): { authorization: string } | string {
    const url = this.url;
    if (status === 401) {
      return `the agent at ${url} does not answer furkad's key challenge (HTTP 401): it is a furka-agent from before 2026-12-05, or no furka-agent; ` +
        'upgrade furka-agent on the detector server (furkad no longer sends its key, which a program that took the agent\'s port could read)';
    }
    if (status !== 200) return `the agent at ${url} answered furkad's key challenge with HTTP ${status}: no furka-agent of 2026-12-05 or later listens there`;
    let answer: { nonce?: unknown; proof?: unknown } = {};
    try {
      answer = JSON.parse(body) as typeof answer;
    } catch { /* said below */ }
    if (!validNonce(answer.nonce) || typeof answer.proof !== 'string') return `the agent at ${url} answered furkad's key challenge with no challenge and proof of its own: no furka-agent listens there`;
    const proofs = keyProofs(this.key.value, nonce, answer.nonce);
    if (!sameSecret(answer.proof, proofs.agent)) {
      return `the agent at ${url} did not prove it holds furkad's key: the key in ${this.key.file} (agent_key_file) does not match the agent's key_file ` +
        "(or a program other than furka-agent took its port); copy the detector server's /etc/ppu/furka-agent.key to it (README, Install)";
    }
    return { authorization: `${PROOF_SCHEME} ${proofs.furkad}` };
  }

  /**
   * Streams the file `id` into `dest` (created, must not exist). A file the agent no longer has throws FileGone.
   * A body the agent pushed behind the announcement is read from its pushed stream; any other is requested.
   * Each chunk is written synchronously: `dest` is on the PPU ramdisk (tmpfs), where a write is a memory copy of
   * microseconds, far less than a round trip through libuv's thread pool per 16 KiB frame. Each chunk is
   * hashed as it is written; comparing with the agent's checksum is the caller's (agent-transport.ts). Resolves
   * with `dest` still open (Fetched.fd), which the caller closes.
   */
  async fetch(id: string, dest: string, rel: string, pushesToTry = 2): Promise<Fetched> {
    if (!this.#session || this.#isDown) throw new Error(`not connected to the agent at ${this.url}`);
    // Created before a pushed body is claimed: a name that is taken (EEXIST) leaves the push for the next try.
    const fd = openSync(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    const pushed = await this.#pushes.claim(id);
    const session = this.#session;
    let reply = pushed;
    const named = this.#rootPath(rel);
    try {
      if (!session || this.#isDown) throw new Error(`not connected to the agent at ${this.url}`);
      reply ??= new BodyReply(session.request({ ...this.#auth, ':method': 'GET', ':path': `/v1/file?id=${encodeURIComponent(id)}&path=${encodeURIComponent(named)}` }), 'response');
    } catch (e) {
      if (pushed) discard(pushed.stream);
      closeSync(fd);
      await unlink(dest).catch(() => undefined);
      throw e;
    }
    const got = this.#receive(id, named, dest, fd, reply);
    if (!pushed || pushesToTry <= 1) return got;
    // A body pushed for another name of the file (the one it had before a rename, say): this name's is asked for.
    return got.catch((e: Error) => {
      if (e instanceof OtherName) return this.fetch(id, dest, rel, pushesToTry - 1);
      throw e;
    });
  }

  /** `rel` (below the source, as announced) as the agent names files: below its root (x-furka-path, /v1/ack). */
  #rootPath(rel: string): string {
    return [...this.source.split('/').filter((p) => p !== '' && p !== '.'), rel].join('/');
  }

  /**
   * Writes the body `reply` carries into `dest`, open as `openFd` (handed on with the answer, closed here on a
   * failure), hashing it as it comes. A body whose file has another name than `expected` now (x-furka-path; a
   * file renamed or linked after it was complete keeps its id) throws FileGone: it is fetched under that name,
   * for which it is announced too.
   */
  #receive(id: string, expected: string, dest: string, openFd: number, reply: BodyReply): Promise<Fetched> {
    return new Promise<Fetched>((resolve, reject) => {
      let fd: number | undefined = openFd;
      const req = reply.stream;
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.close(http2.constants.NGHTTP2_CANCEL));
      let bytes = 0;
      const sum = new Checksum();
      let failed: Error | undefined;
      const close = (): void => {
        if (fd === undefined) return;
        try {
          closeSync(fd);
        } catch { /* closed */ }
        fd = undefined;
      };
      const fail = (e: Error): void => {
        if (failed) return;
        failed = e;
        close();
        sum.discard();
        discard(req);
        void unlink(dest).catch(() => undefined).then(() => reject(e));
      };
      reply.headers((headers) => {
        const status = Number(headers[':status']);
        if (status === 404 || status === 410) fail(new FileGone(`the agent no longer has ${id} (HTTP ${status})`));
        else if (status !== 200) fail(new Error(`the agent answered HTTP ${status} for ${id}`));
        else if (!namedAs(headers['x-furka-path'], expected)) fail(new OtherName(`the agent's file ${id} is no longer named ${expected}`));
      });
      let waiting: Buffer[] = [];
      let waitingBytes = 0;
      const flush = (): void => {
        if (waitingBytes === 0 || fd === undefined) return;
        writeAll(fd, waiting, waitingBytes);
        waiting = [];
        waitingBytes = 0;
      };
      req.on('data', (b: Buffer) => {
        if (failed || fd === undefined) return;
        try {
          sum.update(b);
          bytes += b.length;
          waiting.push(b);
          waitingBytes += b.length;
          if (waitingBytes >= WRITE_BATCH) flush();
        } catch (e) {
          fail(e as Error);
        }
      });
      req.on('error', (e: Error) => fail(e));
      // Said with why furkad gave the connection up where it did (a ping unanswered, a stop), not as the agent's doing.
      const cutOff = (how: string): void => fail(new Error(`fetching ${id} was cut off: ${this.#isDown ? this.#downWhy ?? how : how}`));
      const closed = (): void => {
        if (failed) return;
        if (req.rstCode !== undefined && req.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          cutOff(`reset (code ${req.rstCode})`);
          return;
        }
        // A session destroyed mid-body can close the stream with code 0 and neither 'end' nor 'error'.
        if (!req.readableEnded) {
          cutOff("the connection closed before the file's end");
          return;
        }
        // The agent ends every 200 body with its trailers (its word on the file, and the checksum); a body
        // without them was cut off: Node ends it as if whole when furkad destroyed the session itself.
        const trailers = reply.trailers;
        if (trailers['x-furka-unchanged'] === undefined) {
          cutOff("the body ended without the agent's trailers");
          return;
        }
        try {
          flush();
        } catch (e) {
          fail(e as Error);
          return;
        }
        const unchanged = trailers['x-furka-unchanged'] === '1';
        const sent: SentChecksum = sentChecksum(trailers);
        // The descriptor goes to the caller with the answer: one open less per file than opening it again.
        const kept = fd!;
        fd = undefined;
        sum.hex().then((checksum) => resolve({ bytes, unchanged, checksum, sent, fd: kept }), (e: Error) => {
          closeSync(kept);
          reject(e);
        });
      };
      // A pushed stream may have closed before this fetch took it (an empty body, or one cut off).
      if (reply.closed) closed();
      else req.on('close', closed);
    });
  }

  /**
   * Tells the agent whether to push bodies now (`POST /v1/push?on=0|1`, which the agent reads before each push):
   * off while furkad is behind, where a pushed body would wait behind older files and be cancelled unread.
   * Not HTTP/2's SETTINGS_ENABLE_PUSH, which it was: a promise the agent's nghttp2 had queued when that setting
   * went off failed to be sent, and Node 20 closes the whole session at such a frame error (found by a
   * long-run tester: the connection ended every 1-2 minutes under load, each time said as a detector failure).
   * Pushes already promised when the agent reads the request still come, and are taken or cancelled as ever.
   */
  takePushes(on: boolean): void {
    if (this.pushes === 0) return;
    this.#pushesWanted = on;
    this.#tellPushes();
  }

  /** Sends the agent what takePushes last wanted, one request at a time: the last word is the one that counts. */
  #tellPushes(): void {
    const session = this.#session;
    if (this.#telling || this.#pushesWanted === this.#pushesTold || !session || session.destroyed) return;
    const on = this.#pushesWanted;
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request({ ...this.#auth, ':method': 'POST', ':path': `/v1/push?on=${on ? 1 : 0}` });
    } catch {
      return; // the session is ending: the next one starts with pushes on
    }
    this.#telling = true;
    this.#pushesTold = on;
    // An agent before this request answers 404 and goes on pushing: furkad takes or cancels what comes, as above.
    req.on('error', () => undefined);
    req.resume();
    req.on('close', () => {
      if (this.#session !== session) return;
      this.#telling = false;
      this.#tellPushes();
    });
    req.end();
  }

  /**
   * Acknowledges placed files, each with the path (below the source) it was placed as: the agent deletes each
   * source still unchanged and still of that name. Returns the ids it deleted and why it kept the others.
   */
  ack(files: Array<{ id: string; rel: string; sum?: string }>): Promise<{ deleted: string[]; kept: Array<{ id: string; reason: string }> }> {
    const session = this.#session;
    if (!session || this.#isDown) return Promise.reject(new Error(`not connected to the agent at ${this.url}`));
    return new Promise((resolve, reject) => {
      const req = session.request({ ...this.#auth, ':method': 'POST', ':path': '/v1/ack', 'content-type': 'application/json' });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.close(http2.constants.NGHTTP2_CANCEL));
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => { status = Number(h[':status']); });
      req.on('data', (s: string) => { body += s; });
      req.on('error', reject);
      const unanswered = (): void => reject(new Error(`the agent at ${this.url} closed the connection before answering an acknowledgement`));
      // As in fetch: a stream closed without its end (the connection gone) is no answer.
      req.on('close', () => { if (!req.readableEnded) unanswered(); });
      req.on('end', () => {
        // No status: the stream was cut with its connection (Node 16 ends it before its error), no answer at all.
        if (status === 0) return unanswered();
        if (status !== 200) return reject(new Error(`the agent answered HTTP ${status} to an acknowledgement: ${body.slice(0, 200)}`));
        try {
          resolve(JSON.parse(body) as { deleted: string[]; kept: Array<{ id: string; reason: string }> });
        } catch {
          reject(new Error(`the agent's answer to an acknowledgement is not JSON: ${body.slice(0, 200)}`));
        }
      });
      // paths: the agent keeps a file that has another name now (an agent that predates them ignores them).
      // sums: what was placed, where known ('' where not): an agent restarted since it sent a file compares
      // the file with it before deleting it (docs/agent-protocol.md).
      req.end(JSON.stringify({ ids: files.map((f) => f.id), paths: files.map((f) => this.#rootPath(f.rel)), sums: files.map((f) => f.sum ?? '') }));
    });
  }

  /**
   * Asks the agent for a barrier and waits for it on the events stream (A5): resolves with the moment it came
   * (monotonicMs()), by which every file the agent's kernel said complete before this call has been
   * announced. Rejects after `timeoutMs`, when the connection goes down, or when the agent cannot place one
   * (an agent older than barriers answers 404).
   */
  passBarrier(timeoutMs: number): Promise<number> {
    const session = this.#session;
    if (!session || this.#isDown) return Promise.reject(new Error(`not connected to the agent at ${this.url}`));
    const id = randomBytes(12).toString('base64url');
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let cancel = (): void => {};
      const end = (): void => {
        clearTimeout(timer);
        cancel();
        this.#barriers.delete(fail);
        this.off('barrier', seen);
        this.off('down', fail);
      };
      const seen = (got: string, at: number): void => {
        if (got !== id) return;
        end();
        resolve(at);
      };
      const fail = (why: string): void => {
        end();
        reject(new Error(why));
      };
      this.#barriers.add(fail);
      this.on('barrier', seen);
      this.on('down', fail);
      timer = setTimeout(() => fail(`the agent at ${this.url} did not pass a barrier within ${timeoutMs} ms`), timeoutMs);
      let req: http2.ClientHttp2Stream;
      try {
        req = session.request({ ...this.#auth, ':method': 'POST', ':path': `/v1/barrier?id=${id}` });
      } catch (e) {
        fail(`barrier request to ${this.url}: ${(e as Error).message}`);
        return;
      }
      cancel = () => { if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL); };
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => {
        const status = Number(h[':status']);
        if (status === 404) fail(`the agent at ${this.url} has no barriers (an older furka-agent)`);
        else if (status !== 200) req.on('end', () => fail(`the agent at ${this.url} answered HTTP ${status} to a barrier: ${body.slice(0, 200)}`));
      });
      req.on('data', (t: string) => { body += t; });
      req.on('error', (e: Error) => fail(`barrier request to ${this.url}: ${e.message}`));
      req.end();
    });
  }

  /** Bytes read so far on `session`'s connection while it is the current one (0 once it is not). */
  #bytesRead(session: http2.ClientHttp2Session): number {
    return this.#session === session ? this.#socket?.bytesRead ?? 0 : 0;
  }

  /**
   * Whether the agent answers a ping within the connect timeout (single-thread mode asks before a run takes the
   * license's one transfer slot, F8): undefined if it does, else why not; a connection that did not answer is
   * given up as one that stopped answering pings is (the next run connects anew).
   */
  answers(): Promise<string | undefined> {
    const session = this.#session;
    if (!session || this.#isDown) return Promise.resolve(`not connected to the agent at ${this.url}`);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const lost = (why: string): void => {
        clearTimeout(timer);
        if (this.#session === session) {
          this.#down(why);
          if (this.#socket) abandon(session, this.#socket);
        }
        resolve(why);
      };
      // As the periodic pings (#startPings): bytes still arriving are the agent answering, its pong queued behind them.
      let readThen = this.#bytesRead(session);
      const check = (): void => {
        const read = this.#bytesRead(session);
        if (read > readThen) {
          readThen = read;
          timer = setTimeout(check, CONNECT_TIMEOUT_MS);
          return;
        }
        lost(`the agent at ${this.url} does not answer (no ping reply, and nothing received, within ${CONNECT_TIMEOUT_MS / 1000} s)`);
      };
      timer = setTimeout(check, CONNECT_TIMEOUT_MS);
      try {
        const sent = session.ping((err) => {
          if (err) return lost(`the agent at ${this.url} stopped answering: ${err.message}`);
          clearTimeout(timer);
          resolve(undefined);
        });
        // Pings still unanswered by the dozen: the periodic check gives the connection up; the run finds out.
        if (!sent) {
          clearTimeout(timer);
          resolve(undefined);
        }
      } catch (e) {
        lost(`the connection to the agent at ${this.url} ended: ${(e as Error).message}`);
      }
    });
  }

  close(): void {
    this.#downWhy ??= `the connection to the agent at ${this.url} was closed`;
    for (const fail of [...this.#barriers]) fail(`the connection to the agent at ${this.url} was closed`);
    this.#pushes.clear();
    if (this.#ping) clearInterval(this.#ping);
    this.#ping = undefined;
    const s = this.#session;
    const socket = this.#socket;
    this.#session = undefined;
    this.#socket = undefined;
    this.#isDown = true;
    if (s && socket) abandon(s, socket);
  }

  /**
   * A connection that stops answering pings is a dead one, even if TCP has not noticed. Only while `session` is
   * the current one: a ping cancelled by its session's end must not take a newer connection down.
   */
  #startPings(session: http2.ClientHttp2Session): void {
    let unanswered = false;
    /** The connection's bytes read when the ping in flight was sent, or last found moving. */
    let readThen = 0;
    const bytesRead = (): number => this.#bytesRead(session);
    const lost = (why: string): void => {
      if (this.#session !== session) return;
      this.#down(why);
      if (this.#socket) abandon(session, this.#socket);
    };
    this.#ping = setInterval(() => {
      if (unanswered) {
        // On a link slower than the files come, the ping's answer waits behind the bodies the agent sent before it,
        // for longer than this. Bytes still arriving are an answer enough: taken for a dead link, the connection was
        // closed every 10 s and the body in flight cut off and fetched again, so that almost nothing got through
        // (hostile tester h13: 4 files a minute at 5 Mbit/s, where the link carries 35).
        const read = bytesRead();
        if (read > readThen) {
          readThen = read;
          return;
        }
        lost(`the agent at ${this.url} stopped answering (no ping reply, and nothing received, within ${PING_EVERY_MS / 1000} s)`);
        return;
      }
      readThen = bytesRead();
      try {
        unanswered = session.ping((err) => {
          unanswered = false;
          if (err) lost(`the agent at ${this.url} stopped answering: ${err.message}`);
        });
      } catch (e) {
        lost(`the connection to the agent at ${this.url} ended: ${(e as Error).message}`);
      }
    }, PING_EVERY_MS);
    this.#ping.unref();
  }

  /**
   * Why a connection attempt failed, as far as furkad can tell (`why`: what Node said): no connection made, a
   * connection on which nothing answered (a stopped agent, a hung host, a link gone), a peer that closed it
   * without a word (the agent does so to an address not in its `allow`, A1), or one that answered with
   * something other than HTTP/2 (looked at again to say what: agent-peer.ts).
   */
  async #reason(why: string, c: { tcp: boolean; bytes: number; timedOut: boolean; host: string; port: number }): Promise<string> {
    if (c.bytes > 0) {
      const other = await notHttp2(c.host, c.port).catch(() => undefined);
      return other ? `${why}: not an HTTP/2 server, so not a furka-agent: ${other}` : why;
    }
    if (!c.tcp) {
      if (c.timedOut) return `${why}: no connection could be made (the detector server is off, or the link to it is down)`;
      const refused = why.match(/\bconnect E[A-Z]+\b/g) ?? [];
      if (refused.length > 0 && refused.every((r) => r === 'connect ECONNREFUSED')) {
        return `${why}: nothing listens on port ${c.port} there (furka-agent is not running, or port is not the agent's)`;
      }
      return why;
    }
    if (c.timedOut) return `${why}: the connection was made but nothing answered on it (the agent is stopped or hung, or the link went down)`;
    // Or the agent is out of file descriptors: the kernel completes the connection, and Node closes what it cannot accept
    // (hostile tester h15, under a low LimitNOFILE); its log says so every second.
    return `${why}; it accepted the connection and closed it unanswered: is this PPU's address in the agent's 'allow'? ` +
      "(or the agent is out of file descriptors: see its log)";
  }

  /** Marks the connection down; says so once, and only if it had been up. */
  #down(why: string): void {
    const wasUp = !this.#isDown;
    this.#isDown = true;
    this.#downWhy ??= why;
    this.#pushes.clear();
    if (this.#ping) clearInterval(this.#ping);
    this.#ping = undefined;
    if (wasUp) this.emit('down', why);
  }
}

/** An error's words. Node 20's AggregateError (no address of a name could be reached) has none of its own. */
function wordsOf(e: Error): string {
  if (e.message !== '' || !(e instanceof AggregateError)) return e.message;
  return (e.errors as unknown[]).map((x) => (x instanceof Error ? x.message : String(x))).join('; ');
}

/**
 * Gives a connection up for good: the session, and its socket, which Node would otherwise leave to end
 * gracefully (a connect still under way goes on, a half-open link keeps it for TCP's whole timeout).
 */
function abandon(session: http2.ClientHttp2Session, socket: net.Socket): void {
  session.destroy();
  socket.destroy();
}

/** Writes all of `pieces` (`total` bytes) at the file's offset: one writev, more only after a short write. */
function writeAll(fd: number, pieces: Buffer[], total: number): void {
  let done = writevSync(fd, pieces);
  if (done === total) return;
  for (const p of pieces) {
    if (done >= p.length) {
      done -= p.length;
      continue;
    }
    for (let at = done; at < p.length;) at += writeSync(fd, p, at, p.length - at);
    done = 0;
  }
}

/**
 * Whether x-furka-path `header` (URI-encoded, below the agent's root) names `expected`. An agent that sends
 * none (none has been released without it) is taken at its word.
 */
function namedAs(header: string | string[] | undefined, expected: string): boolean {
  if (typeof header !== 'string') return true;
  try {
    return decodeURI(header) === expected;
  } catch {
    return false;
  }
}

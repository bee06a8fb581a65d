// A TCP listener for the daemons' services (grimseld's status and message ports, G9, G10; both daemons' metrics
// endpoints): listen, know the real port, bound the connections in all and per peer, tell a refused client why
// in the service's own form, close every connection on stop.
import { createServer, type Server, type Socket } from 'node:net';
import { ConfigError } from './config-file.js';
import { loopbackPeerUid } from './peer-owner.js';

/** Most a peer may leave unread before it is cut off: a client that never reads must not grow our memory. */
export const DEFAULT_MAX_UNREAD_BYTES = 1024 * 1024;
/**
 * Most connections at once per service: beamline scripts need a handful; a peer that opens thousands must not
 * use up a root daemon's descriptors (its copies need them) nor, at DEFAULT_MAX_UNREAD_BYTES each, its memory.
 */
export const MAX_CONNECTIONS = 64;
/**
 * Most connections at once per peer: per local user (uid of the peer's socket, loopback) or per remote address
 * (every script of one workstation shares them). Without it one local user holding MAX_CONNECTIONS idle
 * connections locked every other script out. root's own are bounded by MAX_CONNECTIONS only.
 */
export const MAX_PER_PEER = 8;
/**
 * Refused connections kept open at once to tell their client why (one line, then our end closed, their requests
 * read and dropped): a client that closes at once gets a reset instead of a reason, when the requests it had sent
 * were left unread. Beyond this many, or after REFUSED_LINGER_MS, a refused connection is closed at once.
 */
const MAX_REFUSING = 16;
const REFUSED_LINGER_MS = 2000;

/** Says that a peer was refused (once per peer until it has fewer connections; `peer` 'all' for the total bound). */
export type PeerRefused = (peer: string, why: string) => void;

export interface ListenerOptions {
  maxConnections?: number;
  maxPerPeer?: number;
  /** What a refused client reads before the close, for the reason `why` (a sentence): a line of the protocol. */
  refusal: (why: string) => string;
  onRefused?: PeerRefused;
  uidOf?: (socket: Socket) => number | undefined;
}

export class TcpListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Connections per peer ('uid N' or 'address A'), and the peers told about since they were at the limit. */
  readonly #perPeer = new Map<string, number>();
  readonly #refusedSaid = new Set<string>();
  /** Refused connections still open to tell their client why. */
  readonly #refusing = new Set<Socket>();
  readonly #maxConnections: number;
  readonly #maxPerPeer: number;

  /**
   * `what` names the service in errors and refusals ("status", "message", "metrics"); `onConnection` gets each
   * connection let in, with its peer (undefined for root's).
   */
  constructor(readonly what: string, onConnection: (socket: Socket, peer: string | undefined) => void, private readonly opts: ListenerOptions) {
    this.#maxConnections = opts.maxConnections ?? MAX_CONNECTIONS;
    this.#maxPerPeer = opts.maxPerPeer ?? MAX_PER_PEER;
    this.#server = createServer((socket) => {
      // A peer that vanishes (reset, broken pipe) only ends its own connection.
      socket.on('error', () => socket.destroy());
      const peer = this.#peerOf(socket);
      const refused = this.#admit(socket, peer);
      if (refused !== undefined) return this.#refuse(socket, refused);
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      // Detect peers that died without closing, so their subscription does not linger.
      socket.setKeepAlive(true, 60_000);
      socket.setNoDelay(true);
      onConnection(socket, peer);
    });
    // The backstop: what the kernel hands over beyond it is closed by Node at once, without a reason.
    this.#server.maxConnections = this.#maxConnections + MAX_REFUSING;
  }

  /** Counts `socket` for its peer and returns undefined, or why it is refused (said once per peer in the log). */
  #admit(socket: Socket, peer: string | undefined): string | undefined {
    const said = (who: string, why: string): string => {
      if (!this.#refusedSaid.has(who)) {
        this.#refusedSaid.add(who);
        this.opts.onRefused?.(who, why);
      }
      return why;
    };
    if (this.#sockets.size >= this.#maxConnections) {
      return said('all', `the ${this.what} service has ${this.#maxConnections} connections open, its limit; try again later`);
    }
    this.#refusedSaid.delete('all');
    if (peer === undefined) return undefined;
    const n = this.#perPeer.get(peer) ?? 0;
    if (n >= this.#maxPerPeer) {
      return said(peer, `${peer} has ${this.#maxPerPeer} ${this.what} connections open already, the most one ` +
        `${peer.startsWith('uid') ? 'local user' : 'remote address'} may hold; close one first`);
    }
    this.#perPeer.set(peer, n + 1);
    socket.on('close', () => {
      const left = (this.#perPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#perPeer.set(peer, left);
      else this.#perPeer.delete(peer);
      this.#refusedSaid.delete(peer);
    });
    return undefined;
  }

  /** Tells the client why, ends our side and drops what it sends until it closes (bounded in number and time). */
  #refuse(socket: Socket, why: string): void {
    if (this.#refusing.size >= MAX_REFUSING) {
      socket.destroy();
      return;
    }
    this.#refusing.add(socket);
    const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    socket.on('close', () => {
      this.#refusing.delete(socket);
      clearTimeout(timer);
    });
    socket.resume();
    socket.end(this.opts.refusal(why));
  }

  /** Whose connection `socket` is, for MAX_PER_PEER: undefined for root (bounded by MAX_CONNECTIONS alone). */
  #peerOf(socket: Socket): string | undefined {
    const uid = (this.opts.uidOf ?? loopbackPeerUid)(socket);
    if (uid === 0) return undefined;
    return uid !== undefined ? `uid ${uid}` : `address ${socket.remoteAddress ?? '?'}`;
  }

  /** Listens on address:port (0 = any free port) and returns the port actually bound. */
  listen(port: number, address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException): void => {
        const why = e.code === 'EADDRINUSE' ? 'the port is in use (is another daemon running on it?)'
          : e.code === 'EACCES' && port > 0 && port < 1024 ? `${e.message} (a port below 1024 needs CAP_NET_BIND_SERVICE, which ` +
            'the shipped units do not give: take one from 1024 up)' : e.message;
        reject(Object.assign(new Error(`cannot listen for ${this.what} clients on ${address}:${port}: ${why}`), { code: e.code }));
      };
      this.#server.once('error', failed);
      this.#server.listen(port, address, () => {
        this.#server.off('error', failed);
        resolve(this.port);
      });
    });
  }

  /** The bound port, 0 before listen(). */
  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  get connections(): number {
    return this.#sockets.size;
  }

  /**
   * Stops accepting and drops every connection. With `lingerMs`, each connection is ended instead, so that what was
   * written to it last (a message published while the daemon stops) still reaches its peer, and dropped only if it
   * has not closed within that time (a peer that does not read).
   */
  async close(lingerMs = 0): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
    for (const s of this.#refusing) s.destroy();
    const open = [...this.#sockets];
    if (lingerMs > 0 && open.length) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, lingerMs);
        let left = open.length;
        for (const s of open) {
          s.once('close', () => { if (--left === 0) { clearTimeout(timer); resolve(); } });
          s.end();
        }
      });
    }
    for (const s of open) s.destroy();
    return closed;
  }
}

/**
 * Writes one line to a peer unless it has left more than `maxUnread` bytes unread, in which case it is
 * disconnected instead: a slow or dead peer costs a bounded buffer, never a wait.
 * Returns 'sent', 'cut' (disconnected now, worth a log line) or 'gone' (already closed).
 */
export function writeLineOrCut(socket: Socket, line: string, maxUnread: number): 'sent' | 'cut' | 'gone' {
  if (socket.destroyed) return 'gone';
  if (socket.writableLength > maxUnread) {
    socket.destroy();
    return 'cut';
  }
  socket.write(`${line}\n`);
  return 'sent';
}

/** A ConfigError thrown once the daemon has started components: runDaemon ends it with EX_CONFIG as configOrExit would. */
export class ListenConfigError extends ConfigError {
  readonly exitCode = 78;
}

/**
 * Runs `listen` for the port of top-level key `key` of config `file`. A port the kernel refuses us (EACCES: below
 * 1024 without CAP_NET_BIND_SERVICE) is a configuration error naming the key, exit 78, which the units do not
 * restart: starting again never cures it. A port in use or an address not up yet stays a failure (exit 1,
 * restarted), since the next start may find it free or up.
 */
export async function listenConfigured<T>(file: string, key: string, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
    throw new ListenConfigError(file, [`top level (before any section), key '${key}': ${(e as Error).message}`]);
  }
}

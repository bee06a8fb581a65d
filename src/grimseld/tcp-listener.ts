// A TCP listener for grimseld's line protocols (G9, G10): listen, know the real port, close every connection on stop.
import { createServer, type Server, type Socket } from 'node:net';
import { loopbackPeerUid } from './peer-owner.js';

/** Most a peer may leave unread before it is cut off: a client that never reads must not grow our memory. */
export const DEFAULT_MAX_UNREAD_BYTES = 1024 * 1024;
/**
 * Most connections at once per service: beamline scripts need a handful; a peer that opens thousands must not
 * use up root grimseld's descriptors (its copies need them) nor, at DEFAULT_MAX_UNREAD_BYTES each, its memory.
 * Connections beyond it are closed at once.
 */
export const MAX_CONNECTIONS = 64;
/**
 * Most connections at once per peer: per local user (uid of the peer's socket, loopback) or per remote address.
 * Without it one local user holding MAX_CONNECTIONS idle connections locked every other script out of status
 * and messages. root's own are bounded by MAX_CONNECTIONS only.
 */
export const MAX_PER_PEER = 8;

/** Says that a peer was refused for having MAX_PER_PEER connections (once per peer until it has fewer). */
export type PeerRefused = (peer: string, limit: number) => void;

export class TcpListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Connections per peer ('uid N' or 'address A'), and the peers told about since they were at the limit. */
  readonly #perPeer = new Map<string, number>();
  readonly #refusedSaid = new Set<string>();

  /** `what` names the service in errors ("status", "message"). */
  constructor(readonly what: string, onConnection: (socket: Socket) => void, maxConnections = MAX_CONNECTIONS,
    private readonly maxPerPeer = MAX_PER_PEER, private readonly onRefused: PeerRefused = () => undefined,
    private readonly uidOf: (socket: Socket) => number | undefined = loopbackPeerUid) {
    this.#server = createServer((socket) => {
      const peer = this.#peerOf(socket);
      if (peer !== undefined) {
        const n = this.#perPeer.get(peer) ?? 0;
        if (n >= this.maxPerPeer) {
          if (!this.#refusedSaid.has(peer)) {
            this.#refusedSaid.add(peer);
            this.onRefused(peer, this.maxPerPeer);
          }
          socket.destroy();
          return;
        }
        this.#perPeer.set(peer, n + 1);
        socket.on('close', () => {
          const left = (this.#perPeer.get(peer) ?? 1) - 1;
          if (left > 0) this.#perPeer.set(peer, left);
          else this.#perPeer.delete(peer);
          this.#refusedSaid.delete(peer);
        });
      }
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      // A peer that vanishes (reset, broken pipe) only ends its own connection.
      socket.on('error', () => socket.destroy());
      // Detect peers that died without closing, so their subscription does not linger.
      socket.setKeepAlive(true, 60_000);
      socket.setNoDelay(true);
      onConnection(socket);
    });
    this.#server.maxConnections = maxConnections;
  }

  /** Whose connection `socket` is, for MAX_PER_PEER: undefined for root (bounded by MAX_CONNECTIONS alone). */
  #peerOf(socket: Socket): string | undefined {
    const uid = this.uidOf(socket);
    if (uid === 0) return undefined;
    return uid !== undefined ? `uid ${uid}` : `address ${socket.remoteAddress ?? '?'}`;
  }

  /** Listens on address:port (0 = any free port) and returns the port actually bound. */
  listen(port: number, address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException): void => {
        const why = e.code === 'EADDRINUSE' ? 'the port is in use (is another grimseld running?)' : e.message;
        reject(new Error(`cannot listen for ${this.what} clients on ${address}:${port}: ${why}`));
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

  /** Stops accepting and drops every connection. */
  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
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

// A TCP listener for grimseld's line protocols (G9, G10): listen, know the real port, close every connection on stop.
import { createServer, type Server, type Socket } from 'node:net';

/** Most a peer may leave unread before it is cut off: a client that never reads must not grow our memory. */
export const DEFAULT_MAX_UNREAD_BYTES = 1024 * 1024;
/**
 * Most connections at once per service: beamline scripts need a handful; a peer that opens thousands must not
 * use up root grimseld's descriptors (its copies need them) nor, at DEFAULT_MAX_UNREAD_BYTES each, its memory.
 * Connections beyond it are closed at once.
 */
export const MAX_CONNECTIONS = 64;

export class TcpListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  /** `what` names the service in errors ("status", "message"). */
  constructor(readonly what: string, onConnection: (socket: Socket) => void, maxConnections = MAX_CONNECTIONS) {
    this.#server = createServer((socket) => {
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

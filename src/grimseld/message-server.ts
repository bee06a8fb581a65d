// grimseld's TCP message service (G10): every subscriber gets one JSON line per message, and a subscriber
// that does not keep up is disconnected, never waited for.
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { Message, MessageHub } from './messages.js';
import { DEFAULT_MAX_UNREAD_BYTES, TcpListener, writeLineOrCut } from '../common/tcp-listener.js';

/** The first line on every connection: tells a client it is subscribed, so nothing after it is missed. */
export const MESSAGE_GREETING = { hello: 'grimseld messages', version: 1 } as const;

export class MessageServer {
  readonly #listener: TcpListener;

  constructor(private readonly hub: MessageHub, private readonly log: Logger,
    private readonly maxUnread = DEFAULT_MAX_UNREAD_BYTES) {
    // A refused subscriber reads one error line instead of the greeting, then the connection ends.
    this.#listener = new TcpListener('message', (s) => this.#subscribe(s), {
      refusal: (why) => `${JSON.stringify({ error: `refused: ${why}` })}\n`,
      onRefused: (peer, why) => this.log.warn({ peer }, `message subscriber refused: ${why} (said once until it has fewer)`),
    });
  }

  /** Listens (port 0: any free port) and returns the bound port. */
  async start(port: number, address: string): Promise<number> {
    const bound = await this.#listener.listen(port, address);
    this.log.info({ address, port: bound }, `message server listening on ${address}:${bound}`);
    return bound;
  }

  get port(): number {
    return this.#listener.port;
  }

  get subscribers(): number {
    return this.#listener.connections;
  }

  /** Subscribers get what was published up to now (at most 1 s for one that does not read), then the end. */
  stop(): Promise<void> {
    return this.#listener.close(1000);
  }

  #subscribe(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const unsubscribe = this.hub.subscribe((m: Message) => {
      const line = JSON.stringify({ errcode: m.errcode, shortMessage: m.shortMessage, longMessage: m.longMessage, time: m.time });
      if (writeLineOrCut(socket, line, this.maxUnread) === 'cut') {
        this.log.warn({ peer, unread: socket.writableLength }, `message subscriber ${peer} disconnected: it left more than ${this.maxUnread} bytes unread`);
      }
    });
    socket.on('close', unsubscribe);
    // Subscribers have nothing to say; whatever they send is read and dropped so it cannot pile up.
    socket.resume();
    writeLineOrCut(socket, JSON.stringify(MESSAGE_GREETING), this.maxUnread);
    this.log.debug({ peer }, 'message subscriber connected');
  }
}

// grimseld's messages to subscribers (G10): the six codes, their severity, and fan-out to listeners
// (the D-Bus signal, TCP subscribers). Publishing never blocks or throws into the copying path.
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/logger.js';

export const MessageCodes = ['FILLSTATE_LIMIT', 'ALMOST_OVERFLOW', 'DISK_OVERFLOW', 'COPY_ERROR', 'LINK_ERROR', 'DEL_ERROR'] as const;
export type MessageCode = (typeof MessageCodes)[number];

export interface Message {
  errcode: MessageCode;
  /** FILLSTATE_LIMIT, ALMOST_OVERFLOW, DISK_OVERFLOW: the mount point; COPY_ERROR: `src:dest`; LINK_ERROR, DEL_ERROR: the file. */
  shortMessage: string;
  longMessage: string;
  /** ms since the epoch. */
  time: number;
}

/** Policy as a table: how loud each code is in the log. */
const SEVERITY: Record<MessageCode, 'warn' | 'error'> = {
  FILLSTATE_LIMIT: 'warn',
  ALMOST_OVERFLOW: 'warn',
  DISK_OVERFLOW: 'error',
  COPY_ERROR: 'error',
  LINK_ERROR: 'error',
  DEL_ERROR: 'error',
};

export class MessageHub {
  readonly #events = new EventEmitter();

  constructor(private readonly log: Logger) {
    this.#events.setMaxListeners(0);
  }

  publish(errcode: MessageCode, shortMessage: string, longMessage: string): void {
    const msg: Message = { errcode, shortMessage, longMessage, time: Date.now() }; // wall clock: when it was said, for a reader
    this.log[SEVERITY[errcode]]({ errcode, short: shortMessage }, longMessage);
    for (const listener of this.#events.listeners('message') as Array<(m: Message) => void>) {
      try {
        listener(msg);
      } catch (e) {
        this.log.warn({ err: e }, 'a message listener failed');
      }
    }
  }

  /** Subscribes to every message; returns the unsubscribe function. */
  subscribe(listener: (m: Message) => void): () => void {
    this.#events.on('message', listener);
    return () => this.#events.off('message', listener);
  }
}

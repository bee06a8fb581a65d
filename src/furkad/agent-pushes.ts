// Bodies a furka-agent pushed behind their announcements (protocol 2, docs/agent-protocol.md), kept until a fetch
// claims them: the fetch then reads a body already on its way instead of asking for it, one round trip less per
// file (A6). A push nobody claims soon is cancelled; the file is then requested as any other.
import * as http2 from 'node:http2';

/** How long a pushed body waits for its fetch. */
const UNCLAIMED_MS = 2000;

/** A stream carrying a file's body, requested or pushed, with its headers and trailers kept as they come. */
export class BodyReply {
  #headers: http2.IncomingHttpHeaders | undefined;
  #onHeaders: ((h: http2.IncomingHttpHeaders) => void) | undefined;
  #trailers: http2.IncomingHttpHeaders | undefined;
  #closed = false;

  /** `headersEvent`: 'response' for a request, 'push' for a pushed stream. */
  constructor(readonly stream: http2.ClientHttp2Stream, headersEvent: 'response' | 'push') {
    stream.once(headersEvent, (h: http2.IncomingHttpHeaders) => {
      this.#headers = h;
      this.#onHeaders?.(h);
    });
    stream.once('trailers', (t: http2.IncomingHttpHeaders) => { this.#trailers = t; });
    stream.once('close', () => { this.#closed = true; });
  }

  /**
   * The stream has closed already: a pushed empty body does so before anyone reads it (its end needs no
   * reading), and so does one the agent or the connection cut off.
   */
  get closed(): boolean {
    return this.#closed;
  }

  /** Calls `cb` with the response headers: now, if they came already. */
  headers(cb: (h: http2.IncomingHttpHeaders) => void): void {
    if (this.#headers) cb(this.#headers);
    else this.#onHeaders = cb;
  }

  /** The trailers, once they came (before the stream's end). */
  get trailers(): http2.IncomingHttpHeaders {
    return this.#trailers ?? {};
  }
}

/**
 * Ends a stream nobody will read: reset with `code`, then destroyed. A closed stream is not enough: Node keeps one
 * that holds bytes not yet read (a pushed body that came whole, or came in before the reset reached the agent),
 * and those bytes, until it is read to its end.
 */
export function discard(stream: http2.ClientHttp2Stream, code: number = http2.constants.NGHTTP2_CANCEL): void {
  if (!stream.closed) stream.close(code);
  if (!stream.destroyed) stream.destroy();
}

export class AgentPushes {
  /** `max`: pushed bodies kept unclaimed at most (the agent pushes no more than that unacknowledged). */
  constructor(private readonly max: number) {}

  /** Pushed bodies not yet claimed, by id. */
  readonly #bodies = new Map<string, { reply: BodyReply; timer: NodeJS.Timeout }>();
  /**
   * Ids whose line said `push` and whose pushed stream has not been seen yet: a fetch of one waits for it, but
   * only to the end of this turn of the event loop. The agent sends a file's PUSH_PROMISE before its line, so
   * by the time the line is read the promise has been read too; Node only tells of the pushed stream on the
   * next tick. A promise that was not read by then was never made to this client: the agent may have failed to
   * make it.
   */
  readonly #promised = new Map<string, NodeJS.Immediate>();
  readonly #waiters = new Map<string, (r: BodyReply | undefined) => void>();

  /** A pushed stream came (the session's 'stream' event): kept for its fetch, or given to the one waiting. */
  arrived(stream: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const id = new URL(headers[':path'] ?? '/', 'http://agent').searchParams.get('id');
    if (headers[':method'] !== 'GET' || id === null) {
      discard(stream, http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const reply = new BodyReply(stream, 'push');
    if (this.#unpromise(id, reply)) return;
    this.#drop(id);
    if (this.#bodies.size >= this.max) {
      discard(stream); // more than asked for: the file is requested when its turn comes
      return;
    }
    const timer = setTimeout(() => this.#drop(id), UNCLAIMED_MS);
    timer.unref();
    this.#bodies.set(id, { reply, timer });
  }

  /** The line of `id` said its body is pushed. */
  promised(id: string): void {
    if (this.#bodies.has(id) || this.#waiters.has(id)) return;
    this.#unpromise(id);
    this.#promised.set(id, setImmediate(() => this.#unpromise(id)));
  }

  /** The pushed body of `id`, once it is there; undefined if none was pushed or it did not come in time. */
  claim(id: string): Promise<BodyReply | undefined> {
    const kept = this.#bodies.get(id);
    if (kept) {
      clearTimeout(kept.timer);
      this.#bodies.delete(id);
      // One cut off before its end (the agent or the connection reset it) brings nothing: the file is requested.
      const cut = kept.reply.stream.destroyed && !kept.reply.stream.readableEnded;
      return Promise.resolve(cut ? undefined : kept.reply);
    }
    if (!this.#promised.has(id) || this.#waiters.has(id)) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.set(id, resolve));
  }

  /** The connection ended: every kept body is cancelled, every waiting fetch goes on without one. */
  clear(): void {
    for (const id of [...this.#bodies.keys()]) this.#drop(id);
    for (const id of [...this.#promised.keys()]) this.#unpromise(id);
  }

  #drop(id: string): void {
    const kept = this.#bodies.get(id);
    if (!kept) return;
    clearTimeout(kept.timer);
    this.#bodies.delete(id);
    discard(kept.reply.stream);
  }

  /** `id` is no longer expected: a fetch waiting for it gets `reply` (true), or goes on without one. */
  #unpromise(id: string, reply?: BodyReply): boolean {
    clearImmediate(this.#promised.get(id));
    this.#promised.delete(id);
    const waiter = this.#waiters.get(id);
    this.#waiters.delete(id);
    waiter?.(reply);
    return waiter !== undefined && reply !== undefined;
  }
}

// Connections that have not carried the agent's key yet (A1). An allowed address names a host, not a user, and
// every local user of the PPU has it: without a bound, one of them opened idle connections until the agent ran out
// of file descriptors, and the next file event ended it (found by a hostile tester; under systemd it came back and
// was taken down again, while files piled up on the detector). A connection gets KEYLESS_MS to send a request with
// the key; of those still waiting, the oldest is closed when more than KEYLESS_MAX wait. A connection that carried
// the key (furkad's) is never closed for this: keyless ones cannot crowd it out. furkad's own new connection is
// keyless for a round trip or two (its key challenge, then its first keyed request): KEYLESS_MAX is large enough
// that a flood of new connections cannot make it the oldest in that time (with 32, a local user's flood from the
// PPU closed one of furkad's attempts in 10 to 20, found by a reviewer), and small enough to keep the agent's
// descriptors and memory bounded.

/** How many connections may wait for their first keyed request at once. */
export const KEYLESS_MAX = 256;
/** How long a connection may go without a keyed request before it is closed. */
export const KEYLESS_MS = 10_000;

/** What is closed: an HTTP/2 session (its socket with it). */
export interface Closable {
  destroy(): void;
}

export class KeylessSessions<S extends Closable> {
  /** Waiting connections, oldest first (a Map keeps the order they came in), each with its timer. */
  readonly #waiting = new Map<S, NodeJS.Timeout>();

  /** `closed`: told of each connection closed here, and why (the server logs it). */
  constructor(private readonly closed: (s: S, why: 'timeout' | 'crowded') => void, private readonly max = KEYLESS_MAX, private readonly ms = KEYLESS_MS) {}

  /** A new connection: waits for its key; the oldest waiting one goes if there are too many now. */
  add(s: S): void {
    const timer = setTimeout(() => this.#close(s, 'timeout'), this.ms);
    timer.unref();
    this.#waiting.set(s, timer);
    if (this.#waiting.size > this.max) this.#close(this.#waiting.keys().next().value as S, 'crowded');
  }

  /** `s` carried the key: it stays as long as it likes. */
  keyed(s: S): void {
    this.gone(s);
  }

  /** `s` closed (by its peer, or here): forgotten. */
  gone(s: S): void {
    const timer = this.#waiting.get(s);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#waiting.delete(s);
  }

  get size(): number {
    return this.#waiting.size;
  }

  #close(s: S, why: 'timeout' | 'crowded'): void {
    this.gone(s);
    this.closed(s, why);
    s.destroy();
  }
}

// Hands shift starts and delivered files to grimseld, in order, over its intake interface (SPEC F6).
// Nothing is dropped: while grimseld is away, events wait here and are re-sent when it returns.
import type { ClientInterface } from 'dbus-next';
import { callMethod, type MessageBus } from '../dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../dbus/names.js';
import { sleep, wakeOrAbort } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Outbox } from './outbox.js';

export type HandoverEvent =
  | { kind: 'shift'; usertime: bigint; uid: number; gid: number }
  | { kind: 'files'; usertime: bigint; uid: number; gid: number; paths: string[]; ids: number[] };

/** At most this many paths in one call: keeps each D-Bus message well below the bus limits. */
const MAX_BATCH = 2000;

export class Handover {
  #queue: HandoverEvent[] = [];
  #wake: (() => void) | undefined;
  #pending = 0;
  #down = false;
  #idle: Array<() => void> = [];
  #intake: ClientInterface | undefined;

  constructor(private readonly bus: MessageBus, private readonly log: Logger, private readonly outbox: Outbox) {}

  /** Number of file paths not yet acknowledged by grimseld. */
  get pending(): number {
    return this.#pending;
  }

  shiftStarted(usertime: bigint, uid: number, gid: number): void {
    this.#push({ kind: 'shift', usertime, uid, gid });
  }

  /** Notes files in the outbox before they are placed under their final names (see Outbox). */
  intend(usertime: bigint, uid: number, gid: number, paths: string[]): number | undefined {
    return paths.length > 0 ? this.outbox.note(usertime, uid, gid, paths) : undefined;
  }

  /** Queues placed files for grimseld; `id` (from intend) is acknowledged once grimseld has them. */
  delivered(usertime: bigint, uid: number, gid: number, paths: string[], id?: number): void {
    const ids = id === undefined ? [] : [id];
    if (paths.length === 0) {
      this.outbox.ack(ids);
      return;
    }
    this.#pending += paths.length;
    this.#push({ kind: 'files', usertime, uid, gid, paths, ids });
  }

  /** Resolves once every queued event has been acknowledged. */
  drained(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #push(ev: HandoverEvent): void {
    const last = this.#queue[this.#queue.length - 1];
    // Merge consecutive deliveries of one shift into one call (the head may be in flight: not it).
    if (ev.kind === 'files' && last?.kind === 'files' && last.usertime === ev.usertime &&
        this.#queue.length > 1 && last.paths.length + ev.paths.length <= MAX_BATCH) {
      last.paths.push(...ev.paths);
      last.ids.push(...ev.ids);
    } else {
      this.#queue.push(ev);
    }
    this.#wake?.();
  }

  /** Sends queued events one at a time, in order, until `signal` aborts and the queue is empty. */
  async run(signal: AbortSignal): Promise<void> {
    let backoff = 100;
    for (;;) {
      const ev = this.#queue[0];
      if (!ev) {
        this.#idle.splice(0).forEach((r) => r());
        if (signal.aborted) return;
        // One wait per emptied queue, i.e. per run that moved files: the abort listener must not pile up.
        await wakeOrAbort((wake) => { this.#wake = wake; }, signal);
        this.#wake = undefined;
        continue;
      }
      try {
        await this.#send(ev);
        this.#queue.shift();
        if (ev.kind === 'files') {
          this.#pending -= ev.paths.length;
          this.outbox.ack(ev.ids);
        }
        if (this.#down) this.log.info('grimseld reachable again; hand-over resumed');
        this.#down = false;
        backoff = 100;
      } catch (e) {
        if (!this.#down) this.log.error({ err: (e as Error).message }, 'cannot hand over to grimseld; holding files until it answers');
        this.#down = true;
        // On shutdown, give up after a short grace: the outbox keeps them, the next start re-sends them.
        if (signal.aborted && backoff >= 1600) return;
        await sleep(backoff, signal.aborted ? undefined : signal);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  async #send(ev: HandoverEvent): Promise<void> {
    try {
      // The proxy is introspected once and kept: one round trip per call on the hot path.
      this.#intake ??= (await this.bus.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
      if (ev.kind === 'shift') await callMethod(this.#intake, 'ShiftStarted', ev.usertime, ev.uid, ev.gid);
      else await callMethod(this.#intake, 'Delivered', ev.usertime, ev.uid, ev.gid, ev.paths);
    } catch (e) {
      this.#intake = undefined;
      throw e;
    }
  }
}

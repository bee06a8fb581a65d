// Hands shift starts and delivered files to grimseld, in order, over its intake interface (F6).
// Nothing is dropped: while grimseld is away, events wait here and are re-sent when it returns. No call waits
// for ever: each has a deadline, and a change of grimseld's bus owner ends the wait for the old one at once.
import type { ClientInterface } from 'dbus-next';
import { BusEnded, callMethod, watchNameOwner, within, type MessageBus } from '../dbus/bus.js';
import type { DeliveredFile } from '../dbus/intake-interface.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../dbus/names.js';
import { wakeOrAbort } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Outbox } from './outbox.js';
import { hasNumberedPart } from '../common/numbered-name.js';
import type { Component } from '../common/service.js';
import { monotonicMs } from '../common/monotonic.js';

export type HandoverEvent =
  | { kind: 'shift'; usertime: bigint; uid: number; gid: number }
  | { kind: 'files'; usertime: bigint; uid: number; gid: number; files: DeliveredFile[]; ids: number[] };

/** At most this many files in one call: keeps each D-Bus message well below the bus limits (~0.4 MB). */
const MAX_BATCH = 2000;
/**
 * How long one call may go unanswered before it is abandoned and sent again. Delivered is answered once
 * grimseld has journaled the files (one fsync): well under a second normally, seconds on a loaded disk.
 * A grimseld stopped (SIGSTOP) or hung keeps its bus name, so only a deadline ends such a wait.
 */
const CALL_TIMEOUT_MS = 20_000;
/** Waits between attempts while grimseld is away: short, since an attempt to an absent name costs one bus round trip. */
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 1000;
/** On shutdown, queued events are tried this long more; what is left stays in the outbox for the next start. */
const STOP_GRACE_MS = 3000;

/**
 * A failed hand-over in an administrator's words: the bus's "name ... was not provided by any .service files"
 * (ServiceUnknown) and NameHasNoOwner mean grimseld is not on the bus; other errors are said as they are.
 */
export function failureText(e: unknown): string {
  const type = (e as { type?: unknown }).type;
  if (typeof type === 'string' && /\.(ServiceUnknown|NameHasNoOwner)$/.test(type)) {
    return `grimseld is not running (nobody owns ${GRIMSEL_NAME} on the bus)`;
  }
  return (e as Error).message ?? String(e);
}

export class Handover implements Component {
  readonly name = 'hand-over to grimseld';
  #queue: HandoverEvent[] = [];
  #wake: (() => void) | undefined;
  #pending = 0;
  #down = false;
  /** Why the last hand-over failed, until one goes through ('' = none): shown in the Handover property. */
  #lastError = '';
  #idle: Array<() => void> = [];
  #intake: ClientInterface | undefined;
  /** Ends the call in flight (grimseld changed hands: its answer will never come). */
  #inFlight: AbortController | undefined;
  /** Ends the pause between two attempts early. */
  #nudge: (() => void) | undefined;
  /** Counts grimseld's new owners: one that came while an attempt failed means no pause before the next. */
  #owners = 0;
  /** The shift last started (shiftStarted): told to every new owner of grimseld's name. */
  #shift: { usertime: bigint; uid: number; gid: number } | undefined;
  /** A write to the outbox failed (furkad's state_dir full) and none has succeeded since (#record). */
  #stateFull = false;
  /** Ends the sending started by start(). */
  readonly #stop = new AbortController();
  #running: Promise<void> = Promise.resolve();

  constructor(private readonly bus: MessageBus, private readonly log: Logger, private readonly outbox: Outbox,
    private readonly callTimeoutMs = CALL_TIMEOUT_MS) {}

  /** Follows grimseld's bus name, then sends what is queued and whatever comes (run()) until stop(). */
  async start(): Promise<void> {
    // A grimseld (re)started is handed the waiting files at once, not at the next retry (G12, F10).
    await watchNameOwner(this.bus, GRIMSEL_NAME, (owner) => this.grimseldChanged(owner));
    this.#running = this.run(this.#stop.signal);
  }

  /** Sends what is queued for a short grace more; what is left stays in the outbox for the next start. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }

  /** Number of file paths not yet acknowledged by grimseld. */
  get pending(): number {
    return this.#pending;
  }

  /** grimseld's (or the bus's) answer to the last hand-over that failed, until one goes through; '' = none. */
  get lastError(): string {
    return this.#lastError;
  }

  shiftStarted(usertime: bigint, uid: number, gid: number): void {
    this.#shift = { usertime, uid, gid };
    this.#push({ kind: 'shift', usertime, uid, gid });
  }

  /** Notes files (path, checksum, detector) in the outbox before they are placed under their final names (see Outbox). */
  intend(usertime: bigint, uid: number, gid: number, files: DeliveredFile[]): number | undefined {
    return files.length > 0 ? this.outbox.note(usertime, uid, gid, files) : undefined;
  }

  /** Queues placed files for grimseld; `id` (from intend) is acknowledged once grimseld has them. */
  delivered(usertime: bigint, uid: number, gid: number, files: DeliveredFile[], id?: number): void {
    const ids = id === undefined ? [] : [id];
    // A file placed beside another under a numbered name, or into a numbered directory (a file holds the
    // directory's name): the note must name it, not the other file.
    if (id !== undefined && files.some(([p]) => hasNumberedPart(p))) this.#record(() => this.outbox.placed(id, usertime, uid, gid, files));
    if (files.length === 0) {
      this.#record(() => this.outbox.ack(ids));
      return;
    }
    this.#pending += files.length;
    this.#push({ kind: 'files', usertime, uid, gid, files, ids });
  }

  /**
   * grimseld's bus name changed hands ('' = nobody has it now). The call in flight went to a process that
   * is gone or going: it is abandoned and, once there is an owner, sent again at once.
   */
  grimseldChanged(owner: string): void {
    this.#intake = undefined;
    this.#inFlight?.abort(new Error(owner ? 'grimseld restarted' : 'grimseld left the bus'));
    if (!owner) return;
    this.#owners++;
    // A grimseld whose journal was lost (moved away, emptied) knows no shift: told the current one again at once,
    // not only with furkad's next file, so that an operator's files (AddFile, the FIFO) are taken meanwhile too.
    // One it knows is a no-op to it. Not while a shift start is still queued: that one is told anyway. Right after
    // the head (which may be in flight, and is taken off the queue once answered): files of an earlier shift still
    // queued would otherwise make that shift grimseld's current one until they are through.
    if (this.#shift && !this.#queue.some((ev) => ev.kind === 'shift')) {
      this.#queue.splice(Math.min(1, this.#queue.length), 0, { kind: 'shift', ...this.#shift });
      this.#wake?.();
    }
    this.#nudge?.();
  }

  /**
   * Writes to the outbox what is already true (files placed, or taken by grimseld): a full state_dir does not
   * undo it, nor is it grimseld's failure. The outbox holds it in memory and writes it with its next write that
   * fits (RewritableLog); said once until a write succeeds again. Should furkad stop before then, its next start
   * hands those files over again, and grimseld takes each once.
   */
  #record(write: () => void): void {
    try {
      write();
      if (this.#stateFull) this.log.info("furkad's state_dir takes the hand-over outbox again");
      this.#stateFull = false;
    } catch (e) {
      if (!this.#stateFull) {
        this.log.error({ err: (e as Error).message }, "cannot write the hand-over outbox in furkad's state_dir (full?); " +
          'the hand-over goes on, and the outbox is written with its next write that fits');
      }
      this.#stateFull = true;
    }
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
        this.#queue.length > 1 && last.files.length + ev.files.length <= MAX_BATCH) {
      last.files.push(...ev.files);
      last.ids.push(...ev.ids);
    } else {
      this.#queue.push(ev);
    }
    this.#wake?.();
  }

  /** Sends queued events one at a time, in order, until `signal` aborts and the queue is empty. */
  async run(signal: AbortSignal): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    let giveUpAt = Infinity;
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
      const owners = this.#owners;
      try {
        await this.#send(ev);
        this.#queue.shift();
        if (ev.kind === 'files') {
          this.#pending -= ev.files.length;
          // Taken by grimseld: noted so, or with the next outbox write that fits. Not a failure to hand over.
          this.#record(() => this.outbox.ack(ev.ids));
        }
        if (this.#down) this.log.info('grimseld reachable again; hand-over resumed');
        this.#down = false;
        this.#lastError = '';
        backoff = BACKOFF_MIN_MS;
      } catch (e) {
        const why = failureText(e);
        if (!this.#down) this.log.error({ err: why }, 'cannot hand over to grimseld; keeping files until it answers');
        this.#down = true;
        this.#lastError = why;
        // On shutdown, give up after a short grace (at once without a bus: no retry can reach grimseld): the outbox
        // keeps them, the next start re-sends them.
        if (signal.aborted && e instanceof BusEnded) return;
        if (signal.aborted) {
          giveUpAt = Math.min(giveUpAt, monotonicMs() + STOP_GRACE_MS);
          if (monotonicMs() >= giveUpAt) return;
        }
        if (owners === this.#owners) await this.#pause(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /**
   * Waits `ms`, or less: until grimseld gets a new owner (grimseldChanged) or `signal` aborts. Once furkad is
   * stopping, the wait is the whole `ms`: the grace retries must not spin.
   */
  async #pause(ms: number, signal: AbortSignal): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await wakeOrAbort((wake) => {
      timer = setTimeout(wake, ms);
      this.#nudge = wake;
    }, signal.aborted ? new AbortController().signal : signal);
    clearTimeout(timer);
    this.#nudge = undefined;
  }

  async #send(ev: HandoverEvent): Promise<void> {
    const attempt = new AbortController();
    this.#inFlight = attempt;
    try {
      // The proxy is introspected once and kept: one round trip per call on the hot path.
      this.#intake ??= await this.#introspect(attempt.signal);
      const call = ev.kind === 'shift'
        ? callMethod(this.#intake, 'ShiftStarted', ev.usertime, ev.uid, ev.gid)
        : callMethod(this.#intake, 'Delivered', ev.usertime, ev.uid, ev.gid, ev.files);
      await within(call, this.callTimeoutMs, ev.kind === 'shift' ? 'ShiftStarted' : `Delivered (${ev.files.length} files)`, attempt.signal);
    } catch (e) {
      this.#intake = undefined;
      throw e;
    } finally {
      if (this.#inFlight === attempt) this.#inFlight = undefined;
    }
  }

  async #introspect(signal: AbortSignal): Promise<ClientInterface> {
    const proxy = await within(this.bus.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH), this.callTimeoutMs, 'introspecting grimseld', signal);
    const intake = proxy.getInterface(INTAKE_IFACE);
    // A grimseld that owns its name has exported the interface first; anything else is not (yet) grimseld.
    if (!intake) throw new Error(`${GRIMSEL_NAME} has no ${INTAKE_IFACE} interface`);
    return intake;
  }
}

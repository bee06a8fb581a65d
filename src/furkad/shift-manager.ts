// Owns the current shift and changes it: hold every detector, drain the old shift, announce, go (F6).
import { DBusError } from 'dbus-next';
import type { FurkadConfig } from './config.js';
import { DRAIN_MAX_MS, HOLD_CUT_MS, type DetectorLoop } from './detector.js';
import type { Handover } from './handover.js';
import { ChangeTimer } from './change-timer.js';
import { planShift, ShiftRequestError, type Shift } from './shift.js';
import type { RunningShift } from './shift-resume.js';
import { ErrorNames } from '../dbus/errors.js';
import type { Logger } from '../common/logger.js';
import type { Component } from '../common/service.js';
import { Topic } from '../common/topic.js';

/** What a shift change asks of each detector loop (fakes in unit tests). */
export type ShiftLoop = Pick<DetectorLoop, 'id' | 'hold' | 'drain' | 'leaveBehind' | 'assign' | 'release'>;

/** The steps of a shift change or a stop, as ChangeTimer says them. */
const HOLD = 'waiting for the runs in flight';
const DRAIN = "the ending shift's last runs";
const LEAVE = 'setting aside what they could not place';
const QUEUED = 'waiting for the shift change before it';

/**
 * A shift change keeps within this from its call (busctl gives up on a StartShift after 25 s, F6): one that
 * waited for the change before it (calls in quick succession, each of which may wait for a large file on a slow
 * link) cuts its run in flight and ends its drain sooner. What its drain does not take stays the ending shift's
 * all the same: the transport says what it owes that shift (owe(), A5), rsync by listing the detector once more,
 * in up to OWE_RESERVE_MS, which is kept back for it.
 */
export const CHANGE_BUDGET_MS = 20_000;
const OWE_RESERVE_MS = 3_000;
/** The least a change that spent its budget waiting still gives the run in flight, and the drain. */
const MIN_CUT_MS = 500;
const MIN_DRAIN_MS = 1_000;

const clamp = (ms: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, Math.round(ms)));

/** How long a change with `leftMs` of its budget left lets the run in flight go on (hold's cut). */
export function holdCutMs(leftMs: number): number {
  return clamp(leftMs - DRAIN_MAX_MS - OWE_RESERVE_MS, MIN_CUT_MS, HOLD_CUT_MS);
}

/** How long a change with `leftMs` of its budget left lets the drain go on. */
export function drainBoundMs(leftMs: number): number {
  return clamp(leftMs - OWE_RESERVE_MS, MIN_DRAIN_MS, DRAIN_MAX_MS);
}

export class ShiftManager implements Component {
  #shift: Shift | undefined;
  /** Shift changes run one after another, never interleaved. */
  #chain: Promise<void> = Promise.resolve();
  /** stop() has begun: no shift starts any more. */
  #stopping = false;
  /** Raised after every shift change (the bus interface signals it). */
  readonly changed = new Topic();
  readonly name = 'first shift';

  constructor(
    private readonly config: FurkadConfig,
    private readonly loops: ReadonlyMap<string, ShiftLoop>,
    /** Only the shift announcement is needed here (a fake in unit tests). */
    private readonly handover: Pick<Handover, 'shiftStarted'>,
    private readonly log: Logger,
    /** Keeps a started shift's id for the next furkad (shift-floor.ts, writeLastShift); nothing in unit tests. */
    private readonly keepId: (usertime: bigint) => void = () => undefined,
    /**
     * Keeps the running shift for a furkad started after this one ends other than cleanly (shift-resume.ts), and
     * lets go of it when that fails (the one kept before must not go on instead).
     */
    private readonly running: { keep(shift: Shift): void; forget(): void } = { keep: () => undefined, forget: () => undefined },
    /** The shift of a furkad that ended other than cleanly, and why it is not to go on ('' = it is; shift-resume.ts). */
    private readonly resume?: { shift: RunningShift; whyNot: string },
    /** Times each change (a fake clock in unit tests). */
    private readonly newTimer: () => ChangeTimer = () => new ChangeTimer(),
  ) {}

  /**
   * A process start is a shift start with the configured defaults (F6), unless the furkad before did not stop
   * cleanly: then its shift goes on, same id, owner and detectors (shift-resume.ts).
   */
  async start(): Promise<void> {
    // The bus name is owned before the first shift starts: a StartShift that came meanwhile stands (begin(first)).
    const r = this.resume?.shift;
    if (r && this.resume?.whyNot) {
      this.log.info({ uid: r.uid, gid: r.gid, usertime: String(r.usertime), why: this.resume.whyNot },
        'the last furkad did not stop cleanly, but its shift does not go on: starting the configured default shift');
    } else if (r) {
      let shift: Shift | undefined;
      try {
        shift = { ...planShift(this.config, r.uid, r.gid, r.requested), usertime: r.usertime };
      } catch (e) {
        this.log.error({ err: (e as Error).message, uid: r.uid, gid: r.gid, usertime: String(r.usertime) },
          'the shift the last furkad ran cannot go on (the configuration changed?): starting the configured default shift');
      }
      if (shift) {
        this.log.warn({ usertime: String(r.usertime), uid: r.uid, gid: r.gid },
          'the last furkad did not stop cleanly (killed, crashed, or it lost the bus): the shift it ran goes on, not the configured default one');
        await this.begin(shift, true);
        return;
      }
    }
    await this.begin(planShift(this.config, this.config.uid, this.config.gid), true);
  }

  /**
   * A stop (`systemctl stop` or `restart`, an upgrade) ends the running shift as a shift change would (A5): what
   * every detector had completed by now is placed in it, bounded like a change's drain, and what cannot be
   * placed is set aside for it (leaveBehind), for the next furkad to place there. Without this, the next
   * furkad's default shift (F6) took every file announced but not yet placed, owner and directory included.
   * Unlike a change, a detector backing off is drained too, and a run the stop's signal ended (`systemctl kill`
   * signals rsync as well) is no failure (DetectorLoop.drain). What even that cannot take but the transport had
   * learned of (the PPU ramdisk full, the bound passed) stays this shift's, owed to it for the next furkad as at a
   * change (owe()); only what it never learned of (a detector away) goes to the next furkad's default shift, said
   * in the log: a stop asked for always starts the default shift (F6, shift-resume.ts). Shift changes not begun
   * by then are refused: the loops stop next.
   */
  async stop(): Promise<void> {
    // Changes asked for before the stop but not begun yet are refused too: each could take as long as the stop.
    this.#stopping = true;
    const step = this.#chain.then(async () => {
      if (!this.#shift) return;
      const all = [...this.loops.values()];
      const timer = this.newTimer();
      try {
        await timer.each(HOLD, all, (l) => l.hold());
        await timer.each(DRAIN, all, (l) => l.drain('stop'));
        await timer.each(LEAVE, all, (l) => l.leaveBehind('stop'));
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'placing the files of the running shift at the stop failed; the next furkad takes them into its shift');
      }
      // systemd kills furkad TimeoutStopSec (30 s) after the stop began: said before that, with what it waited for.
      if (timer.slow) this.log.warn({ took_ms: timer.ms, waited: timer.describe() }, `placing the running shift's files at the stop took ${Math.round(timer.ms / 1000)} s`);
    });
    this.#chain = step.catch(() => {});
    await step;
  }

  get shift(): Shift | undefined {
    return this.#shift;
  }

  currentShift(): { usertime: bigint; uid: number; gid: number } {
    const s = this.#shift;
    return s ? { usertime: s.usertime, uid: s.uid, gid: s.gid } : { usertime: 0n, uid: 0, gid: 0 };
  }

  /** D-Bus StartShift: validate first, so a bad request leaves the running shift untouched. */
  async startShift(uid: number, gid: number, detectors: Array<[string, string, string]>): Promise<void> {
    let shift: Shift;
    try {
      shift = planShift(this.config, uid, gid, detectors);
    } catch (e) {
      if (e instanceof ShiftRequestError) throw new DBusError(ErrorNames[e.reason], e.message);
      throw e;
    }
    await this.begin(shift);
  }

  /**
   * Keeps the shift's id for the next furkad (shift-floor.ts); says so when the clock is behind it, since its
   * start time then reads later than it was (status, G9). Not kept (state_dir unwritable): said, and the shift
   * goes on.
   */
  #keep(usertime: bigint): void {
    const behindS = Number(usertime - BigInt(Date.now()) * 1000n) / 1e6; // wall clock: usertime is a time of day
    if (behindS > 1) {
      this.log.warn({ usertime: String(usertime), behind_s: Math.round(behindS) }, 'the clock is behind the start of the last shift: ' +
        'this shift\'s id is set just after that one\'s, so that it counts as the newest (its start time reads that much late)');
    }
    try {
      this.keepId(usertime);
    } catch (e) {
      this.log.error({ err: (e as Error).message, state_dir: this.config.state_dir },
        'cannot keep the shift\'s id in state_dir: a furkad restarted after the clock was set back could start a shift that sorts before this one');
    }
  }

  /** Switches to `shift`: files written before this call land in the old shift, later ones in the new. */
  begin(shift: Shift, first = false): Promise<void> {
    // Timed from the call, as busctl times it: a change queued behind another has less left (CHANGE_BUDGET_MS).
    const timer = this.newTimer();
    const step = this.#chain.then(async () => {
      if (this.#stopping) throw new DBusError(ErrorNames.Failed, 'furkad is stopping: the shift change was not made; start the shift again once it runs');
      // The first shift never replaces one a StartShift began meanwhile.
      if (first && this.#shift) return;
      const all = [...this.loops.values()];
      timer.waited(QUEUED);
      try {
        await timer.each(HOLD, all, (l) => l.hold(holdCutMs(timer.left(CHANGE_BUDGET_MS))));
        if (this.#shift) {
          const bound = drainBoundMs(timer.left(CHANGE_BUDGET_MS));
          await timer.each(DRAIN, all, (l) => l.drain('change', bound));
        }
        // What the old shift could not place stays the old shift's, set aside and retried in the background.
        await timer.each(LEAVE, all, (l) => l.leaveBehind());
        // Kept before grimseld hears of it: a furkad killed in between goes on with it, and grimseld hears again.
        try {
          this.running.keep(shift);
        } catch (e) {
          this.running.forget();
          this.log.error({ err: (e as Error).message, state_dir: this.config.state_dir },
            'cannot keep the running shift in state_dir: a furkad started after a crash will start the configured default shift instead');
        }
        // Announced before any file of the new shift can be handed over (the hand-over is ordered).
        this.handover.shiftStarted(shift.usertime, shift.uid, shift.gid);
        this.#keep(shift.usertime);
        for (const loop of all) loop.assign(shift, shift.detectors.find((d) => d.id === loop.id));
        this.#shift = shift;
        this.log.info({ usertime: String(shift.usertime), uid: shift.uid, gid: shift.gid, usrdir: shift.usrdir,
          detectors: shift.detectors.map((d) => `${d.id}:${d.source}->${d.target}`), took_ms: timer.ms }, 'shift started');
        if (timer.slow) {
          this.log.warn({ uid: shift.uid, gid: shift.gid, took_ms: timer.ms, waited: timer.describe() }, `the shift change took ${Math.round(timer.ms / 1000)} s, ` +
            'waiting for the detectors named (busctl gives up on a StartShift after 25 s and says it timed out, but the shift starts all the same)');
        }
      } catch (e) {
        this.log.error({ err: (e as Error).message, uid: shift.uid, gid: shift.gid }, 'the shift change failed; the detectors go on in the shift they had');
        throw e;
      } finally {
        // Whatever happened: a change that failed half-way must not leave the detectors paused until some later
        // change succeeds (no data would flow meanwhile). They go on in the shift they have.
        for (const loop of all) loop.release();
      }
      this.changed.emit();
    });
    this.#chain = step.catch(() => {});
    return step;
  }
}

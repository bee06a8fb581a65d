// One detector's loop, whatever its transport: run, place complete files, hand over, pause; its own back-off,
// never waiting on another detector (F1, F2, F5, F10). How files leave the detector is the transport's (transport.ts).
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, rmdir } from 'node:fs/promises';
import * as path from 'node:path';
import { deliveredPath, splitMarked, STAGING_NAME, unmark } from '../common/paths.js';
import { anySignal, sleep, wakeOrAbort } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Handover } from './handover.js';
import { confinement, type Assignment, type Shift } from './shift.js';
import type { TransferGate } from './transfer-gate.js';
import { ShiftDir, stagedExists } from './shift-dir.js';
import { DirFd } from '../common/dir-fd.js';
import { writeDurablyAsync } from '../common/durable-file.js';
import { moveAside, onlyRootChanges, sayMovedAside } from './foreign-entries.js';
import { clearTemp, moveAcross } from './cross-device-move.js';
import { sweepEndedShifts } from './shift-sweep.js';
import { Batches } from '../common/batches.js';
import { Topic } from '../common/topic.js';
import type { Component } from '../common/service.js';
import type { OwedShift, Placed, RunContext, RunOutcome, Transport, Verdict } from './transport.js';
import type { DeliveredFile } from '../dbus/intake-interface.js';
import type { DetectorState, DetectorStatus } from '../dbus/furka-interface.js';
import { monotonicMs } from '../common/monotonic.js';
import { originOf, type DetectorPlace, type DetectorPlaces } from './detector-places.js';
import { moveEntries } from './config-change.js';
import { filesBelow } from './files-below.js';
import { roomOf } from '../common/statfs.js';
import { makeDirs } from '../common/make-dirs.js';
import { outOfInodes } from './room-notice.js';

/** What a loop keeps about itself: its DetectorStatus (the bus's), and what only the metrics read. */
export interface DetectorStats extends Omit<DetectorStatus, 'id'> {
  state: DetectorState;
  /** Runs that moved files (this process). */
  runs: number;
  /** Files left on the detector because their names cannot be handed over (RunOutcome.refused). */
  refused: number;
}

/** What the loop needs of the hand-over: note before placing, queue once placed (a fake in unit tests). */
export type LoopHandover = Pick<Handover, 'intend' | 'delivered'>;

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

/** Next back-off after a failure: doubling from 100 ms, bounded at 10 s; a fatal verdict waits the longest (F10). */
export function nextBackoff(current: number, verdict: 'retry' | 'fatal'): number {
  return verdict === 'fatal' ? BACKOFF_MAX_MS : Math.min(Math.max(current * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
}

/** Where a transport writes first: a root-only directory below the target, so nothing incomplete carries a final name (F2). */
export function stagingDir(target: string, id: string): string {
  return path.join(unmark(target), STAGING_NAME, id);
}

/**
 * Where complete files of an earlier shift wait that could not be placed into its directory (a link its user
 * planted there): beside staging, out of reach of the transport's later runs, one directory per shift and detector.
 */
export function leftBehindDir(target: string, id: string, usertime: bigint): string {
  return path.join(unmark(target), STAGING_NAME, LEFT_BEHIND_NAME, `${usertime}-${id}`);
}

/** On disk since the first furkad that set files aside: a furkad started later finds them there (never renamed). */
const LEFT_BEHIND_NAME = '.held';
/** Beside a keeping place's `files/`: copies from another file system being made (cross-device-move.ts). */
const COPYING_NAME = 'copying';
/** lastError of a detector the current shift does not serve (StartShift named other detectors only). */
export const NOT_IN_SHIFT = 'not served in this shift (StartShift named other detectors): files written on it stay on the detector';
/** How long a detector waits for work after a run that moved files before it shows as idle. */
const IDLE_AFTER_MS = 1000;

/** A shift change (or a stop) waits at most this long for files the transport still owes the old shift (F6, A5). */
export const DRAIN_MAX_MS = 10_000;
/**
 * A shift change (or a stop) waits this long for the run in flight to end by itself, then ends it: an rsync
 * run against a frozen daemon waits out its I/O timeout (30 s, up to an hour), an agent's fetches their pings.
 * What it had not finished is the drain's to take (not a failure: no back-off).
 */
export const HOLD_CUT_MS = 5_000;
/** Left-behind files are tried again after this long, doubling to the most. */
/** How often empty directories of ended shifts are swept from the target, besides each shift's first run. */
const SWEEP_EVERY_MS = 60_000;

const LEFT_BEHIND_RETRY_MS = [1000, 10_000] as const;

/** Files of an earlier shift, complete, that wait to be placed into that shift's directory (F6, G12). */
interface LeftBehind {
  shift: { usertime: bigint; uid: number; gid: number; usrdir: string };
  /** The marked target they were delivered below. */
  target: string;
  dir: ShiftDir;
  /** leftBehindDir(): `files/` holds them under their paths, `shift.json` says whose they are. */
  root: string;
  rels: Set<string>;
  error: string;
}

/** A file offered by `complete()`, and how to tell its caller what became of it. */
interface Offer {
  rel: string;
  /** As it arrived (I1), '' when unknown. */
  checksum: string;
  done: (how: keyof Placed | 'unnoted') => void;
}

export class DetectorLoop implements Component {
  readonly name: string;
  readonly stats: DetectorStats = { state: 'idle', files: 0, bytes: 0, lastError: '', lastRunUs: 0, runs: 0, refused: 0 };
  /** Raised when `stats` changed (the bus interface coalesces these). */
  readonly changed = new Topic();
  #shift: Shift | undefined;
  #assignment: Assignment | undefined;
  #dir: ShiftDir | undefined;
  #dirReady = false;
  #held = false;
  /** hold() waits for the run in flight: it should take no new files (RunContext.wantsEnd). */
  #ending = false;
  /**
   * The cutoff of the shift change under way (Infinity: none): what the transport learned of by then belongs
   * to the old shift. When hold() was first called, moved on to the transport's barrier once that passed.
   * And whether drain() runs.
   */
  #heldAt = Infinity;
  #draining = false;
  /** While drain() runs: aborted at its deadline or at the loop's stop; its runs' signal. */
  #drainSignal: AbortSignal | undefined;
  /** What the drain under way is for: a stop's run ended by its bound is furkad's doing, not the detector's failure. */
  #drainAt: 'change' | 'stop' = 'change';
  /** How long the last hold() let the run in flight go on before it ended it (said in the log). */
  #cutAfterMs = HOLD_CUT_MS;
  /** Ends the run in flight (hold(), after HOLD_CUT_MS). */
  #runCut: AbortController | undefined;
  /** hold() has waited HOLD_CUT_MS: a run that starts while it still waits is ended at once (the loop was preparing, say). */
  #cutDue = false;
  /** Shift changes so far, and the transport's barrier for the one under way (hold()). */
  #holds = 0;
  #barrierPassed: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  /** The run in flight (or a resolved promise): shift changes wait on it. */
  #current: Promise<number> = Promise.resolve(0);
  #backoff = 0;
  /**
   * How the last run ended: `ok`, `failed` (backed off, F10), or `ended` early by a shift change or stop (cut
   * after HOLD_CUT_MS, or a signal that came with a stop): then the drain takes what it left.
   */
  #lastRun: 'ok' | 'failed' | 'ended' = 'ok';
  /** The last failed run failed for want of room on the PPU ramdisk (#failed: said once whichever file). */
  #noRoom = false;
  /** The shift change (#holds) whose runs ended by a signal not furkad's were said in the log (once each). */
  #saidSignalled = 0;
  /** Files that could not be given their final names: each is logged once, and lastError stays while any is left. */
  #failing = new Set<string>();
  #signal: AbortSignal = new AbortController().signal;
  /** Ends the loop started by start(). */
  readonly #stop = new AbortController();
  #running: Promise<void> = Promise.resolve();
  readonly #sleep: typeof sleep;
  /** Complete files of earlier shifts not yet in their shift's directory: retried in the background, never placed in a later one. */
  #leftBehind: LeftBehind[] = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #retryMs: number = LEFT_BEHIND_RETRY_MS[0];
  /** Sets files owed to ended shifts aside (RunContext.setAside) one batch at a time: a run's fetches complete concurrently. */
  #asideChain: Promise<unknown> = Promise.resolve();
  /** Files (keeping place and path) that could not be set aside, said in the log (#moveInto): each once until it is. */
  #saidAside = new Set<string>();
  /** When empty directories of ended shifts were last swept (shift-sweep.ts). */
  #sweptAt = -Infinity;
  /** Where it keeps files, recorded for a furkad started with a changed furkad.conf (detector-places.ts). */
  readonly #places: Pick<DetectorPlaces, 'note'> | undefined;
  /** Places of detectors furkad.conf no longer names so (config-change.ts) whose set-aside files this loop takes up at start. */
  #takeUp: DetectorPlace[] = [];
  /** Staging directories of such detectors whose files this loop places, moved into its own staging when it prepares that. */
  #stagedFrom: Array<{ dir: string; from: string }> = [];
  /** Files of such a detector that no configured detector can take (config-change.ts): said while nothing else is. */
  #stranded = '';

  constructor(
    readonly id: string,
    private readonly transport: Transport,
    private readonly handover: LoopHandover,
    private readonly gate: TransferGate,
    private readonly log: Logger,
    /** Tests pass a sleep that records the pause and returns at once. */
    options: { sleep?: typeof sleep; places?: Pick<DetectorPlaces, 'note'> } = {},
  ) {
    this.#sleep = options.sleep ?? sleep;
    this.#places = options.places;
    this.name = `detector ${id}`;
  }

  /** Runs the loop (run()) until stop(): it serves nothing until a shift assigns it a detector. */
  start(): void {
    this.#running = this.run(this.#stop.signal);
    // In the loop's chain, before its first run: files an earlier furkad set aside under a detector name or target
    // furkad.conf no longer has are placed for their shifts like this detector's own (A5).
    const places = this.#takeUp;
    this.#takeUp = [];
    if (places.length > 0) {
      this.#current = this.#current.then(async () => {
        for (const p of places) await this.#adoptLeftBehind(p.target, p.configuredTarget, p.id);
        return 0;
      });
    }
  }

  /** Files set aside at `p`, a place of a detector furkad.conf no longer serves so, are this loop's to place (before start()). */
  takeUp(p: DetectorPlace): void {
    this.#takeUp.push(p);
  }

  /**
   * Files taken off detector `from` (furkad.conf no longer serves it so) left in its staging `dir`: moved into this
   * loop's staging when it next prepares it, and placed with its next run as any staged leftovers (F2, F6).
   */
  takeStaged(dir: string, from: string): void {
    this.#stagedFrom.push({ dir, from });
  }

  /** Files of a detector furkad.conf no longer serves so that no loop can take (config-change.ts): said in lastError while nothing else is. */
  strand(note: string): void {
    this.#stranded = note;
    if (this.stats.lastError === '') {
      this.stats.lastError = note;
      this.changed.emit();
    }
  }

  /** Ends the loop: the run in flight finishes, its files handed over, and the transport is closed. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }

  /**
   * Stops starting new runs and waits for the one in flight; its files are handed over by then. One still in
   * flight after `cutMs` (at most HOLD_CUT_MS: a change that waited its turn has less) is ended.
   */
  async hold(cutMs = HOLD_CUT_MS): Promise<void> {
    // A5: what the transport learns of from now on belongs to the next shift (RunContext.learnedBy)...
    const first = this.#heldAt === Infinity;
    this.#heldAt = Math.min(this.#heldAt, monotonicMs());
    this.#held = true;
    // ...unless it was complete before now: the transport's barrier says by when it had learned of all those.
    if (first) {
      this.#holds++;
      if (this.#assignment) this.#barrierPassed = this.#barrier(this.#holds);
    }
    // The run in flight is asked to end soon (wantsEnd): what it has not taken is left for the drain runs. One
    // that does not end by itself soon is ended (HOLD_CUT_MS).
    this.#ending = true;
    const cut = setTimeout(() => {
      this.#cutDue = true;
      this.#runCut?.abort();
    }, this.#cutAfterMs = Math.min(cutMs, HOLD_CUT_MS));
    try {
      await Promise.all([this.#current, this.#barrierPassed]);
    } finally {
      clearTimeout(cut);
      this.#cutDue = false;
      this.#ending = false;
    }
  }

  /**
   * Moves the cutoff of shift change `hold` (the count of hold() calls that started one) to the transport's
   * barrier, if it has one (A5); never the cutoff of a later change (one that failed left its barrier behind).
   */
  async #barrier(hold: number): Promise<void> {
    const at = await this.transport.barrier?.().catch(() => undefined);
    if (at !== undefined && hold === this.#holds && this.#heldAt !== Infinity) this.#heldAt = Math.max(this.#heldAt, at);
  }

  /**
   * One more run in the current shift, so that files written before a shift change (`change`) or a stop
   * (`stop`) land in it (F6, A5). It ends after `boundMs` at most (DRAIN_MAX_MS: a change that waited its turn has
   * less); what it did not take then is the ending shift's still, if the transport can say what it owes (owe()).
   */
  async drain(at: 'change' | 'stop' = 'change', boundMs = DRAIN_MAX_MS): Promise<void> {
    const a = this.#assignment;
    if (!a) return;
    // At a shift change, a detector backing off after a failed run is not tried again for the old shift (it may
    // be away, and the change must not wait for it), unless its transport says it is still connected and owes
    // files learned before the change (the agent after a fetch cut short): then one drain run, A5. At a stop it
    // is tried regardless, within the same bound: the stop's own SIGTERM may have ended its last run
    // (`systemctl kill furkad` and KillMode=control-group signal rsync too), and what a stop leaves unlearned goes
    // to the next furkad's default shift (F6), another user's, not back to this one after a pause.
    if (at === 'change' && this.#backoff > 0 && !(this.transport.connected?.() && this.transport.pendingSince?.(this.#heldAt, a, this.#heldAt))) return;
    // Runs of the drain take only what the transport learned of before the shift change was asked for (hold):
    // RunContext.learnedBy.
    this.#draining = true;
    this.#drainAt = at;
    // The whole drain ends DRAIN_MAX_MS after it began, whatever its runs wait for: their signal aborts then (an
    // agent that stopped answering has its connection closed; what it still owes goes to the next shift, and
    // is sent again, A4). A shift change or a stop must never wait on the old shift for long (F6).
    const deadline = new AbortController();
    const bound = Math.min(boundMs, DRAIN_MAX_MS);
    const timer = setTimeout(() => deadline.abort(), bound);
    const drainSignal = anySignal([this.#signal, deadline.signal]);
    this.#drainSignal = drainSignal.signal;
    try {
      await this.#exclusive();
      // Files the transport learned of before the call and has not taken yet (settle_ms: still settling) are
      // waited for; how long at most is the transport's to say. Over rsync a file is learned of when a run lists
      // it, so what the first drain run saw counts. A run ended early (a signal that came with a stop) is run
      // again: what it had not taken is still owed.
      const seenBy = monotonicMs();
      while (this.#lastRun !== 'failed' && !drainSignal.signal.aborted
        && (this.#lastRun === 'ended' || this.transport.pendingSince?.(seenBy, a, this.#heldAt))) {
        await this.#sleep(Math.max(a.config.minpause, 10));
        await this.#exclusive();
      }
      // Said where the administrator looks: such files are not lost, but they go to another shift than theirs.
      if (this.#lastRun === 'failed' || deadline.signal.aborted) {
        // Out of time first: a run the deadline ended counts as failed too, with rsync's word for the signal.
        const why = deadline.signal.aborted ? `the drain ran out of time (${+(bound / 1000).toFixed(1)} s)` : `the detector failed (${this.stats.lastError})`;
        // A transport that can say which files it owes the ending shift (owe(): the agent's announced files,
        // rsync's listed or settling ones) keeps them that shift's (leaveBehind), at a stop too: fetched by the next
        // furkad. What it did not learn of (a detector away) goes to the next shift.
        const where = !this.transport.owe ? (at === 'stop' ? 'go to the shift the next furkad starts (the configured default one, F6)' : 'go to the new shift')
          : at === 'stop' ? "those it knew of stay the running shift's: fetched by the next furkad into its directory, with its owner (A5); " +
            'any it did not know of go to the shift the next furkad starts (the configured default one, F6)'
          : "stay the ending shift's: fetched later into its directory, with its owner (A5)";
        this.log.warn({ detector: this.id, at }, `${why} at the ${at === 'stop' ? 'stop' : 'shift change'}: files completed on it ` +
          `before then that furkad had not taken yet stay on the detector and ${where}`);
      }
    } finally {
      clearTimeout(timer);
      drainSignal.dispose();
      this.#drainSignal = undefined;
      this.#draining = false;
    }
  }

  /**
   * At a shift change, after the drain: files of the ending shift that could not be given their final names
   * (a link planted in its directory) belong to it, not to the next one. They leave staging for
   * leftBehindDir(), where the transport's later runs neither overwrite nor offer them, and are tried again in
   * the background for that shift's directory, handed over with that shift once placed. The shift change
   * itself never waits for them (F6).
   */
  async leaveBehind(at: 'change' | 'stop' = 'change'): Promise<void> {
    const shift = this.#shift;
    const a = this.#assignment;
    const dir = this.#dir;
    const rels = [...this.#failing];
    this.#failing.clear();
    // What the transport learned of before the change and the drain did not take (a full PPU ramdisk, the drain
    // out of time, the detector away) is the ending shift's too, whenever it is fetched (A5): set aside for it then.
    // At a stop as well, by the next furkad (the records are kept in state_dir): a stop while the PPU ramdisk was
    // full gave everything the running shift had learned of to the next furkad's default shift, another user's
    // (found by a hostile tester: a whole shift's images). What it did not learn of is the next shift's (F6).
    if (shift && a && this.transport.owe) {
      const owed = this.transport.owe(this.#heldAt, { usertime: shift.usertime, uid: shift.uid, gid: shift.gid, usrdir: shift.usrdir,
        target: a.target, configuredTarget: a.config.target });
      if (owed > 0) {
        this.log.warn({ detector: this.id, files: owed, uid: shift.uid, gid: shift.gid, usertime: String(shift.usertime) },
          `${owed} ${owed === 1 ? 'file' : 'files'} known before the ${at === 'stop' ? 'stop' : 'shift change'} could not be taken yet: ` +
          (at === 'stop' ? "they stay the running shift's, fetched by the next furkad into that shift's directory with its owner (never the default shift's)"
            : "they stay the ending shift's, fetched later into that shift's directory with its owner (never the new one's)"));
      }
    }
    if (!shift || !a || !dir || rels.length === 0) return;
    const staging = stagingDir(a.target, this.id);
    const root = leftBehindDir(a.target, this.id, shift.usertime);
    const lb: LeftBehind = { shift: { usertime: shift.usertime, uid: shift.uid, gid: shift.gid, usrdir: shift.usrdir }, target: a.target, dir, root, rels: new Set(), error: this.stats.lastError };
    await this.#keepFor(lb);
    // Gone from staging: nothing to keep, and nothing to say.
    await this.#moveInto(lb, staging, rels, 'a file of the ending shift cannot be set aside; it stays in staging', true);
    // Only what was really set aside: a file that stayed in staging is still this transport's to offer.
    this.transport.forget?.([...lb.rels], shift.usertime);
    if (lb.rels.size === 0) {
      await rm(root, { recursive: true, force: true });
      return;
    }
    this.#leftBehind.push(lb);
    this.log.warn({ detector: this.id, files: lb.rels.size, uid: shift.uid, gid: shift.gid, usertime: String(shift.usertime), kept: root },
      `${lb.rels.size} complete ${lb.rels.size === 1 ? 'file' : 'files'} of the ending shift could not be placed into ${dir.root}: kept in ${root}, ` +
      "tried again in the background for that shift's directory (never the new one's)");
    this.#retryMs = LEFT_BEHIND_RETRY_MS[0];
    this.#sayLeftBehind('');
    this.#scheduleRetry();
  }

  /**
   * RunContext.setAside: files fetched into staging for the ended shift `owed` (owed to it) go where
   * leaveBehind() keeps that shift's files, and are placed into its directory in the background, soon (A5).
   * `owed` comes from this furkad's shift change or from its own state_dir (root's, like the outbox).
   */
  async #setAside(owed: OwedShift, staging: string, rels: string[]): Promise<string[]> {
    const step = this.#asideChain.then(async () => {
      const root = leftBehindDir(owed.target, this.id, owed.usertime);
      let lb = this.#leftBehind.find((l) => l.root === root);
      if (!lb) {
        const shift = { usertime: owed.usertime, uid: owed.uid, gid: owed.gid, usrdir: owed.usrdir };
        const dir = new ShiftDir(unmark(owed.target), owed.usrdir, owed.uid, owed.gid, this.log, splitMarked(owed.target).root, confinement(owed.configuredTarget));
        lb = { shift, target: owed.target, dir, root, rels: new Set(), error: 'fetched after its shift ended' };
        await this.#keepFor(lb);
        // What an earlier furkad kept there and did not place (killed meanwhile): placed with the rest. On the
        // current target #adoptLeftBehind takes it up; this one may be another (the ended shift's own target).
        // A copy from another file system it was making is made again (its staged file is still there).
        for (const rel of await keptFiles(root)) lb.rels.add(rel);
        await clearTemp(path.join(root, COPYING_NAME));
        this.#leftBehind.push(lb);
        // Removed by a retry once nothing is owed to that shift any more (the owed files renamed or removed on the
        // detector before they were taken): not left in staging for ever.
        this.#scheduleRetry();
      }
      // None: that shift's keeping place made ready only (see RunContext.setAside).
      if (rels.length === 0) return [];
      return this.#moveInto(lb, staging, rels, 'a file of an earlier shift cannot be set aside for it; it stays in staging', false);
    });
    this.#asideChain = step.catch(() => undefined);
    const moved = await step;
    if (moved.length > 0) {
      // Placed by the next retry, at the shortest wait: not up to LEFT_BEHIND_RETRY_MS[1] behind an older one's.
      if (this.#retryTimer) clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#retryMs = LEFT_BEHIND_RETRY_MS[0];
      this.#scheduleRetry();
    }
    return moved;
  }

  /** Makes `lb`'s directory, whose it is written first (shift.json): a furkad killed meanwhile finds it beside its files (adoptLeftBehind). */
  async #keepFor(lb: LeftBehind): Promise<void> {
    try {
      await makeDirs(lb.root, 0o700);
    } catch (e) {
      throw await this.#noRoomToKeep(e as NodeJS.ErrnoException, lb);
    }
    // Whole or not at all: one cut short (no room on a full PPU ramdisk) would be refused by every later furkad.
    try {
      await writeDurablyAsync(path.join(lb.root, 'shift.json'), JSON.stringify({ ...lb.shift, usertime: String(lb.shift.usertime), target: lb.target }), { mode: 0o600 });
    } catch (e) {
      // Nothing kept there yet: no directory left behind that no furkad could take up.
      await rmdir(lb.root).catch(() => undefined);
      throw await this.#noRoomToKeep(e as NodeJS.ErrnoException, lb);
    }
  }

  /**
   * `e`, or, where the PPU ramdisk has no room (ENOSPC), what is short, in words: it stops a shift change, and
   * "ENOENT: mkdir …/.held" (Node's recursive mkdir; makeDirs says ENOSPC) sent the administrator looking for a
   * missing directory on a ramdisk out of inodes (hostile tester h15).
   */
  async #noRoomToKeep(e: NodeJS.ErrnoException, lb: LeftBehind): Promise<Error> {
    if (e.code !== 'ENOSPC') return e;
    const on = splitMarked(lb.target).root;
    const room = await roomOf(on);
    const free = room?.bytes;
    const inodes = room?.inodes;
    const short = inodes?.free === 0 ? outOfInodes(free, inodes.total) : free !== undefined && free < 65536 ? `the PPU ramdisk is full (${free} bytes free)` : undefined;
    if (!short) return e;
    return new Error(`cannot keep files of an ended shift of detector ${this.id} apart in ${lb.root} (${e.message}): ${short}; make room there`);
  }

  /**
   * Moves `rels` from `staging` into `lb`'s files and returns those moved. One that cannot be moved stays in staging,
   * named in the log with `failed`, unless it is gone from staging and `quietIfGone`.
   */
  async #moveInto(lb: LeftBehind, staging: string, rels: string[], failed: string, quietIfGone: boolean): Promise<string[]> {
    const moved: string[] = [];
    for (const rel of rels) {
      const said = `${lb.root}\n${rel}`;
      try {
        const dest = path.join(lb.root, 'files', rel);
        await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
        await rename(path.join(staging, rel), dest).catch((e: NodeJS.ErrnoException) => {
          // The ended shift's target is on another file system than this one's staging (its shift targeted
          // another mount): copied there whole, then the staged file removed (cross-device-move.ts, A5).
          if (e.code !== 'EXDEV') throw e;
          return moveAcross(path.join(staging, rel), dest, path.join(lb.root, COPYING_NAME));
        });
        lb.rels.add(rel);
        moved.push(rel);
        this.#saidAside.delete(said);
      } catch (e) {
        if (quietIfGone && (e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        // Once per file until it is moved: one tried again every run (no room for its copy on the ended shift's
        // full target, say) would fill the log.
        if (this.#saidAside.has(said)) continue;
        if (this.#saidAside.size >= 1000) this.#saidAside.clear();
        this.#saidAside.add(said);
        this.log.error({ detector: this.id, file: rel, err: (e as Error).message }, `${failed} (said once per file)`);
      }
    }
    return moved;
  }

  /** What lastError says while files of earlier shifts wait ('' = none). */
  #leftBehindNote(): string {
    const n = this.#leftBehind.reduce((sum, lb) => sum + lb.rels.size, 0);
    const first = this.#leftBehind[0];
    if (n === 0 || !first) return '';
    return `${n} ${n === 1 ? 'file' : 'files'} of an earlier shift (${first.shift.uid}:${first.shift.gid}) wait in ${first.root}: ${first.error}`;
  }

  #scheduleRetry(): void {
    if (this.#retryTimer || this.#leftBehind.length === 0 || this.#signal.aborted) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // In the loop's chain: never at the same time as a run or a shift change of this detector.
      this.#current = this.#current.then(async () => {
        await this.#retryLeftBehind().catch((e: Error) => this.log.error({ detector: this.id, err: e.message }, 'retrying files of an earlier shift failed'));
        return 0;
      });
      void this.#current.then(() => this.#scheduleRetry());
    }, this.#retryMs);
    this.#retryTimer.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, LEFT_BEHIND_RETRY_MS[1]);
  }

  /** Places left-behind files into their own shift's directory and hands them over with that shift. */
  async #retryLeftBehind(): Promise<void> {
    const before = this.#leftBehindNote();
    for (const lb of [...this.#leftBehind]) {
      const offers = [...lb.rels];
      // Handed over without their checksums: the ones they arrived with are on the files (I3), not here.
      const marked = (rels: string[]): DeliveredFile[] => rels.map((r) => [deliveredPath(lb.target, lb.shift.usrdir, r), '', this.id]);
      const noted = this.handover.intend(lb.shift.usertime, lb.shift.uid, lb.shift.gid, marked(offers));
      const placed: string[] = [];
      const names: string[] = [];
      for (const rel of offers) {
        try {
          names.push(await lb.dir.place({ root: path.join(lb.root, 'files'), rel }, rel));
          placed.push(rel);
          lb.rels.delete(rel);
        } catch (e) {
          // ENOENT may also come from the destination (a directory of that shift removed meanwhile): only a kept
          // copy that is really gone is let go of; otherwise it is tried again.
          const kept = (e as NodeJS.ErrnoException).code === 'ENOENT' && stagedExists({ root: path.join(lb.root, 'files'), rel });
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !kept) {
            lb.rels.delete(rel);
            this.log.warn({ detector: this.id, file: rel, kept: lb.root }, 'a file of an earlier shift is gone from where it was kept; its source, if still on the detector, is taken again');
            this.transport.keptCopyLost?.([rel], lb.shift.usertime);
          } else {
            lb.error = `cannot move ${rel} into place: ${(e as Error).message}`;
          }
        }
      }
      this.handover.delivered(lb.shift.usertime, lb.shift.uid, lb.shift.gid, marked(names), noted);
      if (placed.length > 0) {
        this.transport.afterPlaced?.(placed, lb.shift.usertime);
        this.log.info({ detector: this.id, files: placed.length, uid: lb.shift.uid, gid: lb.shift.gid, dir: lb.dir.root },
          "files of an earlier shift placed into that shift's directory and handed over with it");
      }
      // Not kept open between tries: it is opened again (and its directory made again if need be) by the next.
      lb.dir.close();
      // Kept while the transport still owes files to that shift: made ready for them (#setAside with none).
      if (lb.rels.size === 0 && !this.transport.owes?.(lb.shift.usertime)) {
        this.#leftBehind.splice(this.#leftBehind.indexOf(lb), 1);
        await rm(lb.root, { recursive: true, force: true });
      }
    }
    this.#sayLeftBehind(before);
  }

  /** lastError follows the left-behind files, unless something of the current shift has more to say. */
  #sayLeftBehind(before: string): void {
    const after = this.#leftBehindNote();
    if (after !== before && this.#failing.size === 0 && this.#backoff === 0 && this.stats.refused === 0) {
      // A detector this shift does not serve keeps saying so once the earlier shift's files are placed.
      this.stats.lastError = after || (this.#shift && !this.#assignment ? NOT_IN_SHIFT : this.#stranded);
      this.changed.emit();
    }
  }

  /**
   * Files an earlier furkad set aside (leftBehind) below this target are taken up again: their shift.json
   * says whose they are. Only what is not already being retried. `id`: the detector they were set aside for,
   * this one or one furkad.conf no longer serves so (takeUp; `configuredTarget` then its configured target).
   */
  async #adoptLeftBehind(target: string, configuredTarget: string, id = this.id): Promise<void> {
    const aside = path.dirname(leftBehindDir(target, id, 0n));
    for (const name of await readdir(aside).catch(() => [] as string[])) {
      if (!name.endsWith(`-${id}`)) continue;
      const root = path.join(aside, name);
      if (this.#leftBehind.some((lb) => lb.root === root)) continue;
      try {
        // Only what furkad set aside itself: root's, written by nobody else, for this very target. A record a
        // user could write (placed there with usrdir empty before files named so were refused, or made by hand)
        // would have root create directories and place files wherever it says (docs/threat-model.md).
        for (const p of [aside, root, path.join(root, 'shift.json')]) {
          const st = await lstat(p);
          if (st.uid !== (process.getuid?.() ?? 0) || (st.mode & 0o022) !== 0 || st.isSymbolicLink()) throw new Error(`${p} is not furkad's own (owner ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`);
        }
        const meta = JSON.parse(await readFile(path.join(root, 'shift.json'), 'utf8')) as { usertime: string; uid: number; gid: number; usrdir: string; target: string };
        if (typeof meta.target !== 'string' || path.resolve(unmark(meta.target)) !== path.resolve(target)) {
          throw new Error(`its shift.json names another target (${String(meta.target)}), not ${target}`);
        }
        if (await this.#dropUnfilled(root)) continue;
        const rels = await keptFiles(root, 'must exist');
        await clearTemp(path.join(root, COPYING_NAME));
        const shift = { usertime: BigInt(meta.usertime), uid: meta.uid, gid: meta.gid, usrdir: meta.usrdir };
        const dir = new ShiftDir(unmark(meta.target), meta.usrdir, meta.uid, meta.gid, this.log, splitMarked(meta.target).root,
          confinement(configuredTarget));
        this.#leftBehind.push({ shift, target: meta.target, dir, root, rels: new Set(rels), error: 'kept by an earlier furkad' });
        this.log.warn({ detector: this.id, ...(id === this.id ? {} : { setAsideFor: id }), files: rels.length, uid: meta.uid, gid: meta.gid, kept: root },
          `files of an earlier shift set aside by an earlier furkad${id === this.id ? '' : ` for detector ${id} (furkad.conf changed since)`}: tried again for their shift`);
      } catch (e) {
        this.log.error({ detector: this.id, kept: root, err: (e as Error).message }, 'files of an earlier shift are kept here but cannot be taken up; see its shift.json');
      }
    }
    this.#scheduleRetry();
  }

  /**
   * A keeping place without `files/` holds nothing: made ready at a shift change (#keepFor) for files owed to the
   * ending shift, and the furkad was killed before one was moved in. Removed without a word (true), where it was
   * said at every start as files kept that cannot be taken up (ENOENT …/files). In the set-aside chain: a
   * #setAside making it ready again meanwhile keeps it. Anything else in it (not furkad's) leaves it to be said.
   */
  async #dropUnfilled(root: string): Promise<boolean> {
    if (await lstat(path.join(root, 'files')).then(() => true, (e: NodeJS.ErrnoException) => e.code !== 'ENOENT')) return false;
    const step = this.#asideChain.then(async () => {
      if (this.#leftBehind.some((lb) => lb.root === root)) return true;
      if ((await readdir(root)).some((n) => n !== 'shift.json' && n !== COPYING_NAME)) return false;
      await clearTemp(path.join(root, COPYING_NAME));
      await rm(path.join(root, 'shift.json'), { force: true });
      await rmdir(root);
      return true;
    });
    this.#asideChain = step.catch(() => undefined);
    return step;
  }

  /** What the furkad before this one (ended by a crash) counted for shift `usertime`: added, if this loop serves that shift. */
  countEarlier(usertime: bigint, counts: { files: number; bytes: number }): void {
    if (this.#shift?.usertime !== usertime || !this.#assignment) return;
    this.stats.files += counts.files;
    this.stats.bytes += counts.bytes;
    this.changed.emit();
  }

  /** Serves `assignment` of `shift` from now on (undefined: this detector is idle in that shift). */
  assign(shift: Shift, assignment: Assignment | undefined): void {
    // The old shift's directory handle: files set aside for it (leaveBehind) open it again when retried.
    this.#dir?.close();
    this.#shift = shift;
    this.#assignment = assignment;
    this.#dir = assignment && new ShiftDir(unmark(assignment.target), shift.usrdir, shift.uid, shift.gid, this.log,
      splitMarked(assignment.target).root, confinement(assignment.config.target));
    this.#dirReady = false;
    this.stats.files = 0;
    this.stats.bytes = 0;
    // A detector the shift leaves out is not served, and its files pile up on its ramdisk (a full one stops the
    // experiment): said where an operator looks (Detectors, ppuctl status), not shown as an idle detector.
    if (!assignment) {
      this.stats.state = 'idle';
      this.stats.lastError = NOT_IN_SHIFT;
    } else if (this.stats.lastError === NOT_IN_SHIFT) {
      this.stats.lastError = '';
    }
    this.changed.emit();
  }

  release(): void {
    this.#heldAt = Infinity;
    this.#held = false;
    this.#wake?.();
    // A loop waiting for work from the old assignment's connection runs at once with the new one (its source).
    this.transport.wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    await this.transport.prepare?.(signal);
    while (!signal.aborted) {
      const a = this.#assignment;
      if (!a || this.#held) {
        this.transport.standDown?.();
        await wakeOrAbort((wake) => { this.#wake = wake; }, signal);
        continue;
      }
      const moved = await this.#exclusive();
      if (monotonicMs() - this.#sweptAt > SWEEP_EVERY_MS && this.#dirReady) {
        this.#current = this.#current.then(() => { this.#sweep(); return 0; });
      }
      // F5: minpause after every run, interrun_pause on top after a run that moved files.
      if (this.#backoff > 0) {
        this.transport.standDown?.();
        await this.#sleep(this.#backoff, signal);
      } else {
        // The pause runs from now and is the least there is between two runs; a transport that can tell
        // when there is work (waitForWork) may make it longer, never shorter.
        const pause = this.#sleep(a.config.minpause + (moved > 0 ? a.config.interrun_pause : 0), signal);
        const work = this.transport.waitForWork?.(signal);
        await pause;
        // A transport that is told of work runs only then: a detector with nothing announced for a while is
        // idle, not still 'transferring' from its last run (Detectors).
        const idle = setTimeout(() => { if (this.stats.state === 'transferring') this.#setState('idle'); }, IDLE_AFTER_MS);
        try {
          await work;
        } finally {
          clearTimeout(idle);
        }
      }
    }
    await this.#current;
    this.#dir?.close();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.transport.close?.();
  }

  #exclusive(): Promise<number> {
    this.#current = this.#current.then(() => this.#runOnce());
    return this.#current;
  }

  #setState(state: DetectorState): void {
    if (this.stats.state === state) return;
    this.stats.state = state;
    this.changed.emit();
  }

  async #runOnce(): Promise<number> {
    const shift = this.#shift;
    const a = this.#assignment;
    const dir = this.#dir;
    if (!shift || !a || !dir) return 0;
    this.#showUnreachable();
    const staging = stagingDir(a.target, this.id);
    let placed = 0;
    let failure: unknown;
    // Files offered while a batch is being placed go together as the next one: one outbox line and one
    // hand-over per batch, not per file. A failure to note them (a full state_dir) fails the run when it ends.
    const handOver = async (batch: Offer[]): Promise<void> => {
      try {
        placed += await this.#handOver(shift, a, batch, staging, dir);
      } catch (e) {
        // A note too big for the room left in the state_dir: halves are noted (and placed) in the room there is.
        if (e instanceof NotNoted && batch.length > 1 && failure === undefined) {
          const half = Math.ceil(batch.length / 2);
          await handOver(batch.slice(0, half));
          await handOver(batch.slice(half));
          return;
        }
        failure ??= e instanceof NotNoted ? e.cause : e;
        batch.forEach((o) => o.done('unnoted'));
      }
    };
    const batches = new Batches<Offer>(handOver);
    // A drain out of time, or a loop stopping, ends the run (nothing more is started); so does hold() (#runCut).
    const loopSignal = this.#drainSignal ?? this.#signal;
    if (loopSignal.aborted) return 0;
    const runCut = new AbortController();
    const signal = anySignal([loopSignal, runCut.signal]);
    const ctx: RunContext = {
      shift, assignment: a, staging, dir, signal: signal.signal,
      wantsEnd: () => this.#ending || this.#signal.aborted,
      othersWaiting: () => this.gate.contended,
      learnedBy: this.#draining ? this.#heldAt : Infinity,
      complete: (rels, checksums) => offer(batches, rels, checksums),
      setAside: (owed, rels) => this.#setAside(owed, staging, rels),
      completeInPlace: async (rels) => {
        try {
          placed += await this.#handOver(shift, a, rels.map((rel) => ({ rel, checksum: '', done: () => {} })));
        } catch (e) {
          failure ??= e;
        }
      },
    };
    try {
      if (!this.#dirReady) await this.#prepare(ctx);
    } catch (e) {
      this.#failed(e instanceof StagingError ? e.message : `cannot create ${dir.root}: ${(e as Error).message}`, 'retry', e instanceof StagingError ? staging : dir.root);
      return 0;
    }
    let outcome: RunOutcome;
    let started = 0;
    this.#runCut = runCut;
    if (this.#cutDue) runCut.abort();
    try {
      // Without a license (F8) the one transfer slot is taken only once the detector has answered: one that
      // accepts a connection and then says nothing (a frozen daemon or agent) would hold every other detector up
      // for as long as it does not answer. Its failure comes back as a run's, without the slot.
      // One that stops answering after it answered (while this run waited for the slot, say) holds the slot for
      // the connect timeout at most: the transport ends a run that gets no greeting (rsync.ts) or no ping reply.
      const unanswered = this.gate.limit < Infinity ? await this.transport.answers?.(ctx) : undefined;
      if (unanswered) {
        outcome = unanswered;
      } else {
        const release = await this.gate.acquire();
        // Last run is the run's own duration (README), not the time it waited for the slot.
        started = monotonicMs();
        // A run still going after IDLE_AFTER_MS is moving something (a 2 GB HDF5 data file takes a minute, its
        // checksum seconds): shown as transferring, not as the idle its last run left (Detectors, ppuctl status).
        const busy = setTimeout(() => { if (this.stats.state === 'idle') this.#setState('transferring'); }, IDLE_AFTER_MS);
        try {
          outcome = await this.transport.run(ctx);
          await batches.drained();
        } finally {
          clearTimeout(busy);
          release();
        }
      }
    } finally {
      this.#runCut = undefined;
      signal.dispose();
    }
    if (failure !== undefined) {
      // Their sources stay (on the detector, or staged) and are offered again after the back-off. Thrown, it
      // ended furkad, and systemd's restart met the same full disk: furkad in a loop, no detector served.
      this.#failed(`cannot note files for grimseld in furkad's state_dir: ${(failure as Error).message}; they stay where they are and are tried again`, 'retry', "furkad's state_dir");
      return placed;
    }
    // Bytes as they arrive complete, whether or not this run placed them: with settle_ms a file is copied by one
    // run and placed by a later one, which moves (almost) nothing itself. Never a file a failed run was receiving.
    if (outcome.bytes > 0) {
      this.stats.bytes += outcome.bytes;
      if (placed === 0) this.changed.emit();
    }
    if (placed > 0) {
      this.stats.lastRunUs = Math.round((monotonicMs() - started) * 1000);
      this.stats.runs++;
      this.changed.emit();
    }
    if (outcome.verdict === 'ok') {
      if (this.#backoff > 0) this.log.info({ detector: this.id }, 'detector reachable again, transfers resumed');
      this.#backoff = 0;
      const refused = outcome.refused ?? [];
      // Files left on the detector are the operator's to rename there: said until they are gone (F1, F2).
      const note = refused.length === 0 ? '' : `${refused.length} ${refused.length === 1 ? 'file' : 'files'} left on the detector: ` +
        `furkad cannot hand over their names (not UTF-8, with control characters, or furkad's own ${STAGING_NAME}) or paths ` +
        `(in a directory too deep for PATH_MAX, shown with a trailing '/'), e.g. '${refused[0]}'; rename or move them there`;
      const said = note || outcome.note || this.#leftBehindNote() || this.#stranded;
      if (refused.length !== this.stats.refused || (this.#failing.size === 0 && this.stats.lastError !== said)) {
        this.stats.refused = refused.length;
        if (this.#failing.size === 0) this.stats.lastError = said;
        this.changed.emit();
      }
      // Files in staging that could not be given their final names are retried (the transport offers them again):
      // not idle while any waits, its reason in lastError (#promote).
      this.#setState(this.#failing.size > 0 ? 'retrying' : outcome.transferred > 0 ? 'transferring' : 'idle');
      this.#lastRun = 'ok';
    } else if (runCut.signal.aborted && !loopSignal.aborted) {
      // Ended by a shift change that would not wait longer: not the detector's failure (the drain goes on).
      this.log.info({ detector: this.id, err: outcome.message }, `the run in flight was ended after ${this.#cutAfterMs} ms for a shift change or stop`);
      this.#lastRun = 'ended';
    } else if (outcome.interrupted && this.#held && !loopSignal.aborted) {
      // Ended by a signal furkad did not send while a shift change or stop holds the loop: one that came with
      // the stop (`systemctl kill furkad`, KillMode=control-group signal every process of the unit). Not the
      // detector's failure, so no back-off: the drain runs again and takes what it left, in this shift (A5).
      if (this.#saidSignalled !== this.#holds) {
        this.#saidSignalled = this.#holds;
        this.log.info({ detector: this.id, err: outcome.message }, 'the run in flight was ended by a signal furkad did not send, during a stop or shift change (at a stop: ' +
          'its whole process group signalled, as systemctl kill does): not counted as a detector failure; the drain takes what it left');
      }
      this.#lastRun = 'ended';
    } else if (this.#drainSignal === loopSignal && loopSignal.aborted && (this.#drainAt === 'stop' || !this.#signal.aborted)) {
      // Ended by furkad itself: the drain's bound (DRAIN_MAX_MS) passed with this run in flight (a large file on a
      // slow link), at a stop or a shift change. Not the detector's failure, and neither logged as one (an error
      // saying the detector was unreachable, at every upgrade, reboot or shift change during such a transfer) nor
      // backed off: drain() says, once, what stays on the detector and whose it is, and the next run (of the next
      // shift, or of the next furkad) fetches it at once; a detector that really froze fails that run by its own
      // watch (rsync's --timeout, the agent's pings). It still ends the drain.
      this.#lastRun = 'failed';
    } else {
      this.#failed(outcome.message, outcome.verdict, outcome.ppu, outcome.noRoom);
    }
    return outcome.transferred;
  }

  /**
   * Notes files in the outbox, gives the staged ones their final names (without `staging` the transport
   * already did), queues the ones in place for grimseld, and only then lets the transport release their
   * sources (afterPlaced). Returns how many are in place.
   */
  async #handOver(shift: Shift, a: Assignment, offers: Offer[], staging?: string, dir?: ShiftDir): Promise<number> {
    if (offers.length === 0) return 0;
    const marked = (o: Offer, rel = o.rel): DeliveredFile => [deliveredPath(a.target, shift.usrdir, rel), o.checksum, this.id];
    // Noted before anything gets its final name: a furkad killed after placing re-sends them at its next start.
    let noted: number | undefined;
    try {
      noted = this.handover.intend(shift.usertime, shift.uid, shift.gid, offers.map((o) => marked(o)));
    } catch (e) {
      throw new NotNoted(e);
    }
    const names = new Map<string, string>();
    const outcomes = staging && dir ? await this.#promote(staging, dir, offers, names) : offers.map(() => 'placed' as const);
    const placedOffers = offers.filter((_, i) => outcomes[i] === 'placed');
    const files = placedOffers.map((o) => o.rel);
    this.handover.delivered(shift.usertime, shift.uid, shift.gid, placedOffers.map((o) => marked(o, names.get(o.rel) ?? o.rel)), noted);
    if (files.length > 0) {
      this.stats.files += files.length;
      this.changed.emit();
      this.transport.afterPlaced?.(files);
    }
    offers.forEach((o, i) => o.done(outcomes[i] ?? 'failed'));
    return files.length;
  }

  /** Renames complete files from staging to their final names (F2); one that cannot be placed is the transport's to offer again. */
  async #promote(staging: string, dir: ShiftDir, offers: Offer[], names: Map<string, string>): Promise<Array<keyof Placed>> {
    const outcomes: Array<keyof Placed> = [];
    for (const { rel } of offers) {
      try {
        // The name it got: rel, or rel.~N~ beside a different file of that name (never replaced).
        names.set(rel, await dir.place({ root: staging, rel }, rel));
        outcomes.push('placed');
        this.#failing.delete(rel);
      } catch (e) {
        // Nothing left in staging to place (its source is gone already). An ENOENT can also come from a
        // directory of the shift's that its user removed while the file was being placed: then the staged
        // file is still there and must be offered again, never taken for gone.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !stagedExists({ root: staging, rel })) {
          this.#failing.delete(rel);
          outcomes.push('gone');
          continue;
        }
        outcomes.push('failed');
        if (!this.#failing.has(rel)) this.log.error({ detector: this.id, file: rel, err: (e as Error).message }, 'cannot move a transferred file into place; retrying');
        this.#failing.add(rel);
        this.stats.lastError = `cannot move ${rel} into place: ${(e as Error).message}`;
        this.changed.emit();
      }
    }
    return outcomes;
  }

  /**
   * A connection the transport lost between runs (S7): `retrying` with its reason from now, while this run
   * reconnects, not `idle` with no error until the attempt has failed (its connect timeout later).
   */
  #showUnreachable(): void {
    const why = this.transport.unreachable?.();
    if (why === undefined || (this.stats.state === 'retrying' && this.stats.lastError === why)) return;
    this.stats.lastError = why;
    this.stats.state = 'retrying';
    this.changed.emit();
  }

  /**
   * Logs an outage once when it starts (its recovery is logged in #runOnce), then backs off (F10). `ppu`: it is
   * the PPU's (a full ramdisk, furkad out of descriptors, its state_dir), at that path, and said so: not the detector's.
   */
  #failed(message: string, verdict: Exclude<Verdict, 'ok'>, ppu?: string, noRoom?: true): void {
    // The first failure, and then each new reason of one on the PPU's side (a key fixed halfway: its next
    // problem), not every retry; a detector's reasons may alternate (rsync exit 30, 35) and are said once. No room
    // for a file is one reason whichever file (behind a full ramdisk each run fails on another: room-notice.ts names them).
    const news = message !== this.stats.lastError && !(noRoom === true && this.#noRoom);
    this.#noRoom = noRoom === true;
    if (this.#backoff === 0 || (ppu !== undefined && news)) {
      if (ppu !== undefined) this.log.error({ detector: this.id, verdict, ppu }, `failing on the PPU (${ppu}), not at the detector; retrying with back-off: ${message}`);
      else this.log.error({ detector: this.id, verdict }, `detector unreachable or failing, retrying with back-off: ${message}`);
    }
    this.stats.lastError = message;
    this.#dirReady = false;
    this.#lastRun = 'failed';
    this.#backoff = nextBackoff(this.#backoff, verdict);
    this.#setState(verdict === 'fatal' ? 'down' : 'retrying');
    this.changed.emit();
  }

  /**
   * Empty directories of ended shifts below the target go (shift-sweep.ts): at each shift's first run and then
   * every SWEEP_EVERY_MS, always in the loop's chain, so never beside this detector's own placing.
   */
  #sweep(): void {
    this.#sweptAt = monotonicMs();
    const a = this.#assignment;
    const shift = this.#shift;
    if (!a || !shift) return;
    const target = unmark(a.target);
    try {
      const r = sweepEndedShifts(target, shift.usrdir);
      if (r.removed > 0) this.log.info({ detector: this.id, target, removed: r.removed }, 'empty directories of ended shifts removed');
      if (r.errors.length > 0) this.log.warn({ detector: this.id, target, errors: r.errors.slice(0, 5) }, 'directories of ended shifts that could not be swept');
    } catch (e) {
      this.log.warn({ detector: this.id, target, err: (e as Error).message }, 'cannot sweep empty directories of ended shifts');
    }
  }

  /** The shift's directory, and staging when files are taken off the detector (remove_source); then the transport's leftovers. */
  async #prepare(ctx: RunContext): Promise<void> {
    const a = ctx.assignment;
    // Before anything is kept there: a furkad started with a changed furkad.conf looks here too (config-change.ts).
    this.#places?.note({ id: this.id, transport: a.config.transport, target: a.target, configuredTarget: a.config.target, origin: originOf(a.config) });
    await ctx.dir.prepare();
    await this.#adoptLeftBehind(ctx.assignment.target, ctx.assignment.config.target);
    this.#sweep();
    if (ctx.assignment.config.remove_source) {
      try {
        await this.#prepareStaging(ctx);
      } catch (e) {
        throw new StagingError(`cannot prepare staging ${ctx.staging}: ${(e as Error).message}`);
      }
    }
    this.#dirReady = true;
  }

  /** Staging, and what an earlier run left in it (the transport's). */
  async #prepareStaging(ctx: RunContext): Promise<void> {
    const top = path.dirname(ctx.staging);
    clearStagingRoot(top, this.log);
    await checkStagingRoot(top, 'missing is fine', this.log);
    await mkdir(ctx.staging, { recursive: true, mode: 0o700 });
    await checkStagingRoot(top, 'must exist', this.log);
    if (!(await lstat(ctx.staging)).isDirectory()) throw new Error(`${ctx.staging} is not a directory`);
    for (const { dir, from } of this.#stagedFrom.splice(0)) {
      try {
        const { left } = moveEntries(dir, ctx.staging);
        if (left === 0) await rmdir(dir);
        this.log.warn({ detector: this.id, was: from, staging: dir, left }, `files taken off detector ${from}, no longer in furkad.conf as it was, were left in its ` +
          `staging: detector ${this.id} (${from === this.id ? 'its new target' : 'the same target'}) places them with its next run` +
          (left === 0 ? '' : `; ${left} entries stay there, their names taken in ${ctx.staging}: move them by hand`));
      } catch (e) {
        this.log.error({ detector: this.id, was: from, staging: dir, err: (e as Error).message }, `cannot move the files detector ${from} left in its staging into ` +
          `${ctx.staging}; they stay there: move them into their shift's directory by hand`);
      }
    }
    await this.transport.adoptLeftovers?.(ctx);
  }
}

/**
 * The files kept in the keeping place `root` (leftBehindDir), by their paths below `files/`; none when it has no
 * `files/` yet, unless it `must exist` (an earlier furkad's keeping place whose files/ is gone is said).
 */
async function keptFiles(root: string, files: 'must exist' | 'may be missing' = 'may be missing'): Promise<string[]> {
  return filesBelow(path.join(root, 'files'), { missing: files === 'must exist' ? 'throw' : 'none' });
}

/** The outbox note of files about to be placed could not be written (`cause`): nothing of them was done. */
class NotNoted extends Error {
  constructor(readonly cause: unknown) {
    super((cause as Error).message);
  }
}

/** Staging could not be made ready: said as it is, not as the shift's directory (which was made). */
class StagingError extends Error {}

/**
 * A `.furkad-staging` of a user's (a directory, a link, a file), left from when the target was theirs, is moved
 * aside so that furkad makes its own; refused, it stopped the detector until someone removed it. ShiftDir.prepare
 * moves such entries aside when it gives a target back to root; this finds one in a target an earlier furkad
 * took back. Never used: what is in it is not furkad's to place.
 */
function clearStagingRoot(top: string, log: Logger): void {
  const me = process.getuid?.() ?? 0;
  DirFd.with(DirFd.open(path.dirname(top)), (target) => {
    const st = target.lstat(STAGING_NAME);
    // Its own (root's: a link the administrator made, say) is refused below, as is anything in a target others
    // can write (it cannot be furkad's alone).
    if (!st || st.uid === me || st.uid === 0 || !onlyRootChanges(target)) return;
    const what = st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? `uid ${st.uid}'s directory` : 'not a directory';
    sayMovedAside(log, target.show(), [moveAside(target, Buffer.from(STAGING_NAME), st)], `${top} is ${what}, not furkad's own staging`);
  });
}

/**
 * Staging's paths are used as they are: `<target>/.furkad-staging` is furkad's, 0700, in a target that is root's
 * (ShiftDir.prepare), so no user reaches anything below it (rsync gives a detector's directory there the shift's
 * owner, harmlessly). A user's in its place, left from when the target was theirs, was moved aside just before
 * (clearStagingRoot); one of root's that is not a directory (a link the administrator made) is refused with a
 * message naming it, never written through; group or other access is taken away.
 */
async function checkStagingRoot(top: string, missing: 'missing is fine' | 'must exist', log: Logger): Promise<void> {
  const st = await lstat(top).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' && missing === 'missing is fine') return undefined;
    throw e;
  });
  if (!st) return;
  if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0)) {
    const what = st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? `owned by uid ${st.uid}` : 'not a directory';
    throw new Error(`${top} is ${what}: staging must be furkad's own directory; remove it`);
  }
  if ((st.mode & 0o077) !== 0) {
    log.warn({ dir: top, mode: (st.mode & 0o7777).toString(8) }, `${top} was open to group or others: made 0700`);
    await chmod(top, 0o700);
  }
}

/** Queues `rels` for placing; resolves once each of them has been dealt with. */
function offer(batches: Batches<Offer>, rels: string[], checksums?: ReadonlyMap<string, string>): Promise<Placed> {
  const result: Placed = { placed: [], failed: [], gone: [] };
  if (rels.length === 0) return Promise.resolve(result);
  return new Promise((resolve) => {
    let left = rels.length;
    batches.push(...rels.map((rel): Offer => {
      let dealt = false;
      return {
        rel,
        checksum: checksums?.get(rel) ?? '',
        done: (how) => {
          if (dealt) return;
          dealt = true;
          if (how !== 'unnoted') result[how].push(rel);
          if (--left === 0) resolve(result);
        },
      };
    }));
  });
}

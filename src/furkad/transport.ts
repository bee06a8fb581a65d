// The seam between a detector loop and the wire: what every transport (rsync, agent) must do, and what the loop
// does for all of them, so that pacing, back-off, shifts, the license gate and the hand-over exist once (F1, F5, F10).
import type { Assignment, Shift } from './shift.js';
import type { ShiftDir } from './shift-dir.js';

/**
 * A run's verdict (lsyncd's table, one place per transport): `ok` carry on; `retry` an outage, back off
 * doubling from 100 ms to 10 s; `fatal` a setting the detector will not get over by itself, retried at the
 * longest interval (F10). The transport maps its own errors (rsync exit codes, HTTP statuses) onto these.
 */
export type Verdict = 'ok' | 'retry' | 'fatal';

export interface RunOutcome {
  verdict: Verdict;
  /** Why, for the log and the `Detectors` property ('' when ok). */
  message: string;
  /** The run failed on the PPU's side, not at the detector (its ramdisk full, furkad out of descriptors): where (ppu-side.ts). */
  ppu?: string;
  /** It failed for want of room on the PPU ramdisk for a file: which file changes from run to run, the outage does not. */
  noRoom?: true;
  /** Files and bytes this run moved off the detector. `transferred > 0` earns interrun_pause (F5) and the
   *  `transferring` state. Files placed are counted by the loop itself, as it places them. */
  transferred: number;
  bytes: number;
  /** Files the detector has that are left there because furkad cannot hand over their names (not UTF-8, control
   *  characters), as shown (such bytes as \#ooo): all of them, as of this run; reported, never taken. */
  refused?: string[];
  /** What else lastError says after a run that went well (files the transport leaves on the detector for now,
   *  named); '' or absent = nothing. */
  note?: string;
  /**
   * A run that failed because its process was ended by a signal (rsync exit 20: SIGTERM, SIGINT or SIGHUP, or
   * killed by one): whether furkad sent it is the loop's to tell. One it did not send while a shift change or a
   * stop holds the loop came with the stop (`systemctl kill furkad`, KillMode=control-group): not the detector's
   * failure (A5).
   */
  interrupted?: boolean;
}

/**
 * An ended shift a transport owes files to (owe()): whose they are and where its detector delivered, so that a
 * file fetched later, also by a furkad started since, is set aside for it (RunContext.setAside).
 */
export interface OwedShift {
  usertime: bigint;
  uid: number;
  gid: number;
  usrdir: string;
  /** The marked target its assignment delivered below, and the detector's configured target (confinement). */
  target: string;
  configuredTarget: string;
}

/** What became of the files offered to `complete()`; a file in none of the lists was not noted (the run fails). */
export interface Placed {
  /** Under their final names, noted in the outbox and queued for grimseld. */
  placed: string[];
  /** Still in staging, complete, but could not be given their final names (a link planted in the usrdir, say):
   *  offer them again in a later run. */
  failed: string[];
  /** Nothing was left in staging under that name. */
  gone: string[];
}

/** One run, as the loop gives it to the transport. Paths are relative to the assignment's source. */
export interface RunContext {
  readonly shift: Shift;
  readonly assignment: Assignment;
  /** Root-only directory on the target's file system where incomplete files live (exists when remove_source). */
  readonly staging: string;
  /** The shift's directory below the target, where files get their final names. */
  readonly dir: ShiftDir;
  /**
   * furkad is stopping, or a drain (shift change, stop) has run out of time. A run in flight is waited for; a
   * transport may end it early but must report what it placed.
   */
  readonly signal: AbortSignal;
  /**
   * The loop wants this run to end soon (a shift change waits for it): a transport that works through a list of
   * files takes no new ones, and leaves the rest for the next run.
   */
  wantsEnd(): boolean;
  /**
   * Another detector waits for the licence's single transfer slot (F8): a transport that can go on taking
   * work learned after the run began (the agent's announcements) ends the run instead, so that it gets a turn.
   */
  othersWaiting(): boolean;
  /**
   * A5: only files the transport learned of (were announced, were seen complete) by this time (monotonicMs())
   * belong to this run's shift; Infinity in an ordinary run. A drain run at a shift change gets the moment the
   * change was asked for: what was learned later waits for the next shift.
   */
  readonly learnedBy: number;
  /**
   * These files are complete in `staging`: the loop notes them in the outbox, renames them into `dir` and hands
   * them to grimseld, batched with whatever else arrives meanwhile, while the run goes on (F2, F9). Resolves
   * once each has been dealt with. `checksums`: by rel, the checksum each arrived with (`xxh128:<hex>`, I1),
   * handed to grimseld with it; the transport has written it onto the staged file already (I3).
   */
  complete(rels: string[], checksums?: ReadonlyMap<string, string>): Promise<Placed>;
  /** These files were written under their final names by the transport itself (rsync without remove_source):
   *  they are only noted and handed over. */
  completeInPlace(rels: string[]): Promise<void>;
  /**
   * These files are complete in `staging` but belong to the ended shift `shift` (owed to it: see
   * Transport.owe), given that shift's owner: the loop sets them aside for it, as leaveBehind() does, places them
   * into that shift's directory in the background and hands them over with that shift, never this one (A5); then
   * `afterPlaced(rels, usertime)`. Resolves with the ones set aside (the others are still in staging). With no
   * `rels`, only makes the place where that shift's files are kept ready (its record written there), so that files
   * taken later need no new room on a full PPU ramdisk to be set aside; rejects when it cannot (no room).
   */
  setAside(shift: OwedShift, rels: string[]): Promise<string[]>;
}

/**
 * How one detector's files get to the PPU. The loop owns the policy, the transport owns the wire:
 *
 * | when (the loop)                                      | the transport                                        |
 * | ---------------------------------------------------- | ---------------------------------------------------- |
 * | the loop starts: `prepare(signal)`                   | open what lives as long as the loop (the agent's     |
 * |                                                      | HTTP/2 session). Must not throw for a detector that  |
 * |                                                      | is away: a run reports that as `retry`.              |
 * | shift dir and staging made (first run of a shift,    | `adoptLeftovers(ctx)`: sort out what an interrupted  |
 * | again after every failed run)                        | run left in staging.                                 |
 * | single-thread mode (F8), before the license gate;    | `answers(ctx)`: show within the connect timeout      |
 * | if not, its outcome is the run's (no slot taken)     | that the detector answers (greeting, ping)           |
 * | license gate passed (F8): `run(ctx)`                 | bring files into `ctx.staging`; call `complete()`    |
 * |                                                      | for each the moment it is known complete; resolve    |
 * |                                                      | with counts and a verdict. Never rejects for an      |
 * |                                                      | outage: that is a verdict.                           |
 * | `complete()`: outbox note, rename into place,        | `Placed`: keep its own retry list (failed ones).     |
 * | hand-over to grimseld                                |                                                      |
 * | placed files noted and handed over: `afterPlaced`    | let their sources go (agent: POST /v1/ack, A4).      |
 * | verdict ok: the pause (minpause, plus interrun_pause | `waitForWork(signal)`: resolve when there may be     |
 * | after a run that moved files, F5) and, meanwhile,    | work (agent: a file was announced; rsync: at once,   |
 * | `waitForWork`; the next run when both are over       | starting its next process ahead). Resolve on abort.  |
 * | verdict retry or fatal: back-off (F10); held for a   | `standDown()`: let go of anything started ahead for  |
 * | shift change; no assignment                          | a run that is not coming soon.                       |
 * | a shift change holds the loop (`hold()`)            | `barrier()`: when it had learned of every file       |
 * |                                                      | complete before the call (agent: a barrier through   |
 * |                                                      | the kernel's events); that moment is the cutoff      |
 * | drain at a shift change (F6): one more run, then     | `pendingSince(t, a)`: files it learned of by `t`     |
 * | more while `pendingSince` says so                    | still to be taken (settle_ms: still settling).       |
 * | after the drain: files the old shift could not place | `forget(rels, usertime)`: set aside for that shift;  |
 * | are set aside by the loop, retried for that shift    | never offer them again (they are placed by the loop, |
 * |                                                      | then `afterPlaced(rels, usertime)`).                 |
 * | after the drain: what it learned of before the change| `owe(learnedBy, shift)`: those files are the old     |
 * | and did not take (the drain failed or ran out of     | shift's; fetched later with its owner and given to   |
 * | time) stays the old shift's (A5)                     | `ctx.setAside(shift, rels)`, never `complete()`.     |
 * | released after the change: the next run at once,     | `wake()`: end a waitForWork now (the new             |
 * | without waiting for work announced by the old one    | assignment may need another connection: its source)  |
 * | a set-aside file's kept copy is gone before placing  | `keptCopyLost(rels, usertime)`: its source may be    |
 * |                                                      | taken again (into the shift current then).           |
 * | stop: the run in flight waited for, then `close()`   | close connections, end processes started ahead.      |
 *
 * Every hook but `run` is optional: a transport without one needs nothing at that point.
 */
export interface Transport {
  run(ctx: RunContext): Promise<RunOutcome>;
  /**
   * Single-thread mode only (F8), before the run takes the one transfer slot: resolves undefined once the detector
   * has shown that it answers (the rsync daemon's greeting, the agent's connection up and answering a ping), within
   * the connect timeout, and moves no file. Otherwise with the outcome of a run that failed for it (`retry`, why):
   * the loop then backs off without ever holding the slot, so a detector that does not answer cannot hold the
   * others up. Reasons it can tell no better than the run itself (a refused connection, say) are left to the run.
   */
  answers?(ctx: RunContext): Promise<RunOutcome | undefined>;
  prepare?(signal: AbortSignal): Promise<void>;
  adoptLeftovers?(ctx: RunContext): Promise<void>;
  /** `setAsideOf`: the usertime of the ended shift whose set-aside files (see forget) the loop placed now. */
  afterPlaced?(rels: string[], setAsideOf?: bigint): void;
  waitForWork?(signal: AbortSignal): Promise<void>;
  /**
   * Ends a waitForWork now: the loop was released after a shift change, and the next run may need what the
   * new assignment says (another source, so another events stream) before any work is announced.
   */
  wake?(): void;
  standDown?(): void;
  /**
   * A shift change was asked for (A5): resolves with the moment (monotonicMs()) by which the transport had
   * learned of every file that was complete when this was called, or undefined if it cannot say (then the
   * moment of hold() is the cutoff). Bounded in time by the transport.
   */
  barrier?(): Promise<number | undefined>;
  /** `learnedBy`: the drain runs' RunContext.learnedBy; what was learned of after it is not owed. */
  pendingSince?(since: number, assignment: Assignment, learnedBy: number): boolean;
  forget?(rels: string[], usertime: bigint): void;
  /**
   * A shift change (or stop) is over for the ending shift `shift` (A5): files the transport learned of by
   * `learnedBy` (the drain's cutoff) and has not taken are that shift's, whenever they are fetched; each later run
   * hands them to `ctx.setAside(shift, …)` with that shift's owner, also after a restart of furkad. Returns how
   * many of them wait now.
   */
  owe?(learnedBy: number, shift: OwedShift): number;
  /** Files set aside (forget) whose kept copy is gone before it was placed: their sources may be taken again. */
  keptCopyLost?(rels: string[], usertime: bigint): void;
  /**
   * Files are still owed to the ended shift `usertime` (see owe) and not yet set aside: its keeping place, made
   * ready for them (RunContext.setAside with none), is kept while this says so, and removed once it says not.
   */
  owes?(usertime: bigint): boolean;
  /** The detector is reachable now (the agent's connection is up), whatever the last run's verdict. */
  connected?(): boolean;
  /**
   * Why the detector cannot be reached now, when the transport learned so between runs (the agent's connection
   * was lost): the loop shows it (`retrying`, with this as lastError) from that moment until a run goes well,
   * not only once an attempt to reconnect has failed. undefined: nothing known against it.
   */
  unreachable?(): string | undefined;
  close?(): Promise<void>;
}

// One detector's pull loop: rsync run into staging, complete files into place, hand-over, pause; its own
// back-off, never waiting on another detector (F1, F2, F5, F10).
import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { classifyExit, runRsync, RsyncLauncher, type RsyncRun, type RsyncResult } from './rsync.js';
import { deliveredPath, unmark } from '../common/paths.js';
import { sleep, wakeOrAbort } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Handover } from './handover.js';
import type { Assignment, Shift } from './shift.js';
import type { TransferGate } from './transfer-gate.js';
import { ShiftDir } from './shift-dir.js';
import { Batches } from '../common/batches.js';

/** After each run: transferring = it moved files, idle = nothing new; retrying = backing off after an outage;
 *  down = a configuration error rsync will not get over by itself (retried at the longest interval). */
export type DetectorState = 'idle' | 'transferring' | 'retrying' | 'down';

export interface DetectorStats {
  state: DetectorState;
  /** Files and bytes transferred in this shift. */
  files: number;
  bytes: number;
  lastError: string;
  /** Duration of the last run that moved files, rsync start to files in place (µs), and how many such runs. */
  lastRunUs: number;
  runs: number;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

/** Next back-off after a failure: doubling from 100 ms, bounded at 10 s; a fatal verdict waits the longest (F10). */
export function nextBackoff(current: number, verdict: 'retry' | 'fatal'): number {
  return verdict === 'fatal' ? BACKOFF_MAX_MS : Math.min(Math.max(current * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
}

/** Where rsync writes first: a root-only directory below the target, so nothing incomplete carries a final name (F2). */
/** rsync's temp names: `.<name>.` plus six random characters. */
const RSYNC_TEMP = /^\..+\.[A-Za-z0-9]{6}$/;

/** One rsync run of the current assignment: with or without removal, into `dest`, optionally limited to `only`. */
type RunWith = (removeSource: boolean, dest: string, only?: string[], onRemoved?: (names: string[]) => void) => Promise<RsyncResult>;

export function stagingDir(target: string, id: string): string {
  return path.join(unmark(target), '.furkad-staging', id);
}

export class DetectorLoop {
  readonly stats: DetectorStats = { state: 'idle', files: 0, bytes: 0, lastError: '', lastRunUs: 0, runs: 0 };
  /** Called when `stats` changed (the bus interface coalesces these). */
  onChange: () => void = () => {};
  #shift: Shift | undefined;
  #assignment: Assignment | undefined;
  #dir: ShiftDir | undefined;
  #dirReady = false;
  #held = false;
  #wake: (() => void) | undefined;
  /** The run in flight (or a resolved promise): shift changes wait on it. */
  #current: Promise<number> = Promise.resolve(0);
  #backoff = 0;
  /** Files left in staging because their source was changing; usually none. */
  #heldBack = new Set<string>();
  /** Complete files in staging that could not be renamed into place (a planted link, say): retried every run. */
  #unplaced = new Set<string>();
  /** settle_ms: when furkad last saw each detector file change (performance.now()). */
  #unchangedSince = new Map<string, number>();
  /** settle_ms: files found in staging at start; placed if the detector no longer has them (see #settledRun). */
  #leftovers = new Set<string>();
  #warnedNoReports = false;
  /** The next run's rsync, started during the pause before it (see RsyncLauncher). */
  #launcher = new RsyncLauncher();
  /** The last run that took everything (not settle mode's limited one): the next run is most likely the same. */
  #lastFullRun: RsyncRun | undefined;

  constructor(
    readonly id: string,
    private readonly settings: { rsync: string; timeoutS: number },
    private readonly handover: Handover,
    private readonly gate: TransferGate,
    private readonly log: Logger,
  ) {}

  /** Stops starting new runs and waits for the one in flight; its files are handed over by then. */
  async hold(): Promise<void> {
    this.#held = true;
    await this.#current;
  }

  /** One more run in the current shift, so that files written before a shift change land in it (F6). */
  async drain(): Promise<void> {
    const a = this.#assignment;
    if (!a || this.#backoff > 0) return;
    await this.#exclusive();
    // settle_ms: files that were there before the call are taken only once settled: wait for them, but not
    // for a writer that is still at work (its file is newer than the call) and not beyond settle_ms + 2 s.
    const settle = a.config.settle_ms;
    const seenBy = performance.now();
    while (settle > 0 && this.#backoff === 0 && performance.now() < seenBy + settle + 2000 &&
      [...this.#unchangedSince.values()].some((since) => since <= seenBy)) {
      await sleep(Math.max(a.config.minpause, 10));
      await this.#exclusive();
    }
  }

  /** Serves `assignment` of `shift` from now on (undefined: this detector is idle in that shift). */
  assign(shift: Shift, assignment: Assignment | undefined): void {
    this.#shift = shift;
    this.#assignment = assignment;
    this.#dir = assignment && new ShiftDir(unmark(assignment.target), shift.usrdir, shift.uid, shift.gid, this.log);
    this.#dirReady = false;
    this.stats.files = 0;
    this.stats.bytes = 0;
    this.onChange();
  }

  release(): void {
    this.#held = false;
    this.#wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const a = this.#assignment;
      if (!a || this.#held) {
        this.#launcher.discard();
        await wakeOrAbort((wake) => { this.#wake = wake; }, signal);
        continue;
      }
      const moved = await this.#exclusive();
      // F5: minpause after every run, interrun_pause on top after a run that moved files.
      if (this.#backoff > 0) {
        this.#launcher.discard();
        await sleep(this.#backoff, signal);
      } else {
        // The pause runs from now: the next run's process is started during it, not before it.
        const pause = sleep(a.config.minpause + (moved > 0 ? a.config.interrun_pause : 0), signal);
        if (this.#lastFullRun) this.#launcher.prepare(this.#lastFullRun);
        await pause;
      }
    }
    this.#launcher.discard();
    await this.#current;
  }

  #run(run: RsyncRun, onRemoved?: (names: string[]) => void): Promise<RsyncResult> {
    if (!run.only) this.#lastFullRun = run;
    return runRsync(run, undefined, onRemoved, this.#launcher);
  }

  #exclusive(): Promise<number> {
    this.#current = this.#current.then(() => this.#runOnce());
    return this.#current;
  }

  #setState(state: DetectorState): void {
    if (this.stats.state === state) return;
    this.stats.state = state;
    this.onChange();
  }

  async #runOnce(): Promise<number> {
    const shift = this.#shift;
    const a = this.#assignment;
    const dir = this.#dir;
    if (!shift || !a || !dir) return 0;
    const staging = stagingDir(a.target, this.id);
    try {
      if (!this.#dirReady) await this.#prepare(dir, a.config.remove_source ? staging : undefined, a.config.settle_ms > 0);
    } catch (e) {
      this.#failed(`cannot create ${dir.root}: ${(e as Error).message}`, 'retry');
      return 0;
    }
    const marked = (rels: Iterable<string>): string[] => [...rels].map((f) => deliveredPath(a.target, shift.usrdir, f));
    const started = performance.now();
    const runWith: RunWith = (removeSource, dest, only, onRemoved) => this.#run({
      rsync: this.settings.rsync,
      host: a.config.remoteIP,
      port: a.config.port,
      module: a.config.module,
      source: a.source,
      dest,
      uid: shift.uid,
      gid: shift.gid,
      removeSource,
      ...(only ? { only } : {}),
      exclude: a.config.exclude.split(/\s+/).filter(Boolean),
      timeoutS: this.settings.timeoutS,
    }, onRemoved);

    let result: RsyncResult;
    let placed = 0;
    const release = await this.gate.acquire();
    try {
      if (!a.config.remove_source) {
        // Without remove_source there is no changed-source check to wait for, so no staging either: rsync
        // names each file itself. Every run lists every file still on both sides: only new ones are news.
        result = await runWith(false, dir.root);
        placed = await this.#handOver(shift, marked, result.sent);
      } else {
        // Each file the daemon reports removed is complete in staging: it is placed and handed over while
        // the run goes on (F2, F9). What is left at the end (a daemon that does not report removals, files
        // an earlier run could not place) is placed then, unless its source changed while it was sent.
        const streamed = new Set<string>();
        let failure: unknown;
        // Names reported while a batch is being placed go together as the next one: one outbox line and one
        // hand-over per batch, not per line of rsync output. A failure is raised when the run ends.
        const batches = new Batches<string>(async (batch) => {
          batch.forEach((r) => streamed.add(r));
          try {
            placed += await this.#handOver(shift, marked, batch, (rels) => this.#promote(staging, dir, rels));
          } catch (e) {
            failure ??= e;
          }
        });
        const place = (rels: string[]): void => batches.push(...rels);
        if (a.config.settle_ms > 0) {
          result = await this.#settledRun(staging, a.config.settle_ms, runWith, place);
        } else {
          result = await runWith(true, staging, undefined, place);
        }
        await batches.drained();
        const rest = [...new Set([...this.#unplaced, ...result.files])].filter((r) => !streamed.has(r));
        const complete = rest.filter((r) => !result.changed.has(r));
        result.changed.forEach((r) => this.#heldBack.add(r));
        if (result.removed.size === 0 && result.code === 0 && result.files.some((r) => !result.changed.has(r))) this.#warnNoRemovalReports();
        place(complete);
        await batches.drained();
        if (failure !== undefined) throw failure;
      }
    } finally {
      release();
    }
    if (placed > 0) {
      this.stats.bytes += result.bytes;
      this.stats.lastRunUs = Math.round((performance.now() - started) * 1000);
      this.stats.runs++;
      this.onChange();
    }
    const verdict = classifyExit(result.code, result.stderr);
    if (verdict === 'ok' && a.config.remove_source) await this.#dropAbandoned(staging, result);
    if (verdict === 'ok') {
      if (this.#backoff > 0) this.log.info({ detector: this.id }, 'detector reachable again, transfers resumed');
      this.#backoff = 0;
      if (this.stats.lastError !== '' && this.#unplaced.size === 0) {
        this.stats.lastError = '';
        this.onChange();
      }
      this.#setState(result.transferred > 0 ? 'transferring' : 'idle');
    } else {
      this.#failed(`rsync exit ${result.code}: ${result.stderr.split('\n').filter(Boolean).pop() ?? ''}`, verdict);
    }
    return result.transferred;
  }

  /**
   * settle_ms (F2, for writers that pause in the middle of a file): a first run copies into staging and
   * removes nothing; a file is taken (removed from the detector, placed) only once furkad has seen it
   * unchanged for settle_ms, by a second run over just those files. The time is furkad's own, so the two
   * servers' clocks do not matter.
   */
  async #settledRun(staging: string, settleMs: number, runWith: RunWith, place: (rels: string[]) => void): Promise<RsyncResult> {
    const look = await runWith(false, staging);
    if (classifyExit(look.code, look.stderr) !== 'ok') return look;
    const now = performance.now();
    const listed = new Set(look.files);
    for (const rel of look.sent) this.#unchangedSince.set(rel, now);
    for (const rel of look.files) if (!this.#unchangedSince.has(rel)) this.#unchangedSince.set(rel, now);
    for (const rel of this.#unchangedSince.keys()) {
      if (listed.has(rel)) continue;
      // Gone from the detector without furkad removing it: its writer deleted or renamed it.
      this.#unchangedSince.delete(rel);
      this.#heldBack.add(rel);
    }
    // Left in staging by a furkad killed between removal and placing: complete, their source is gone.
    for (const rel of this.#leftovers) if (!listed.has(rel)) this.#unplaced.add(rel);
    this.#leftovers.clear();
    const settled = [...this.#unchangedSince].filter(([, since]) => now - since >= settleMs).map(([rel]) => rel);
    // Only what the second run took counts as listed: nothing else may be placed at the end of this one.
    if (settled.length === 0) return { ...look, files: [], sent: [], removed: new Set() };
    const take = await runWith(true, staging, settled, place);
    for (const rel of settled) if (!take.changed.has(rel)) this.#unchangedSince.delete(rel);
    for (const rel of take.changed) this.#unchangedSince.set(rel, performance.now());
    return { ...take, transferred: take.transferred + look.transferred, bytes: take.bytes + look.bytes };
  }

  /**
   * Notes files in the outbox, gives them their final names (`promote`; without one rsync already did) and
   * queues the ones in place for grimseld; returns how many.
   */
  async #handOver(shift: Shift, marked: (rels: Iterable<string>) => string[], rels: string[],
    promote?: (rels: string[]) => Promise<string[]>): Promise<number> {
    if (rels.length === 0) return 0;
    // Noted before anything gets its final name: a furkad killed after placing re-sends them at its next start.
    const noted = this.handover.intend(shift.usertime, shift.uid, shift.gid, marked(rels));
    const files = promote ? await promote(rels) : rels;
    this.handover.delivered(shift.usertime, shift.uid, shift.gid, marked(files), noted);
    if (files.length > 0) {
      this.stats.files += files.length;
      this.onChange();
    }
    return files.length;
  }

  /** Renames complete files from staging to their final names (F2); one that cannot be placed is retried every run. */
  async #promote(staging: string, dir: ShiftDir, complete: string[]): Promise<string[]> {
    const placed: string[] = [];
    for (const rel of complete) {
      this.#heldBack.delete(rel);
      try {
        placed.push(await dir.place(path.join(staging, rel), rel)); // the name it got: rel, or rel.~N~ beside another file
        this.#unplaced.delete(rel);
      } catch (e) {
        // Its source is gone already: it stays in staging and every run tries again.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          this.#unplaced.delete(rel); // nothing left in staging to place
          continue;
        }
        if (!this.#unplaced.has(rel)) this.log.error({ detector: this.id, file: rel, err: (e as Error).message }, 'cannot move a transferred file into place; retrying');
        this.#unplaced.add(rel);
        this.stats.lastError = `cannot move ${rel} into place: ${(e as Error).message}`;
        this.onChange();
      }
    }
    return placed;
  }

  /** Once per process: the detector's daemon does not say which sources it removed, so files wait for the run's end. */
  #warnNoRemovalReports(): void {
    if (this.#warnedNoReports) return;
    this.#warnedNoReports = true;
    this.log.warn({ detector: this.id }, "the detector's rsync daemon does not report removed files ('max verbosity = 2' " +
      'missing in its rsyncd.conf): files get their final names only when each run ends, which adds latency');
  }

  /** A held-back file whose source is gone from the detector (its writer deleted it) would stay in staging for ever. */
  async #dropAbandoned(staging: string, result: RsyncResult): Promise<void> {
    if (this.#heldBack.size === 0) return;
    const listed = new Set(result.files);
    for (const rel of this.#heldBack) {
      if (listed.has(rel) || this.#unchangedSince.has(rel)) continue;
      this.#heldBack.delete(rel);
      await unlink(path.join(staging, rel)).catch(() => undefined);
      this.log.warn({ detector: this.id, file: rel }, 'a file that was still changing vanished from the detector; its partial copy is dropped');
    }
  }

  /** Logs an outage once when it starts (its recovery is logged in #runOnce), then backs off (F10). */
  #failed(message: string, verdict: 'retry' | 'fatal'): void {
    if (this.#backoff === 0) this.log.error({ detector: this.id, verdict }, `detector unreachable or failing, retrying with back-off: ${message}`);
    this.stats.lastError = message;
    this.#dirReady = false;
    this.#backoff = nextBackoff(this.#backoff, verdict);
    this.#setState(verdict === 'fatal' ? 'down' : 'retrying');
    this.onChange();
  }

  async #prepare(dir: ShiftDir, staging: string | undefined, settle: boolean): Promise<void> {
    await dir.prepare();
    if (staging) {
      await mkdir(staging, { recursive: true, mode: 0o700 });
      if (!(await lstat(staging)).isDirectory()) throw new Error(`${staging} is not a directory`);
      await this.#adoptLeftovers(staging, settle);
    }
    this.#dirReady = true;
  }

  /**
   * Files found in staging when it is (re)prepared were transferred by a run whose promotion never
   * happened (furkad was killed in between, the source already removed on the detector): they are placed
   * by the next run like any unplaced file, unless that run finds their source still changing (F2).
   * Without this they would sit in a hidden directory for ever, never copied.
   */
  async #adoptLeftovers(staging: string, settle: boolean): Promise<void> {
    const found: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        // rsync's own temp files (.name.XXXXXX) are its business: it removes them when it ends.
        else if (e.isFile() && !RSYNC_TEMP.test(e.name)) found.push(path.relative(staging, full));
      }
    };
    await walk(staging);
    const fresh = found.filter((rel) => !this.#unplaced.has(rel) && !this.#heldBack.has(rel) && !this.#unchangedSince.has(rel));
    if (fresh.length === 0) return;
    // With settle_ms most of staging is files still settling, source present: the next run sorts them out.
    if (settle) {
      fresh.forEach((rel) => this.#leftovers.add(rel));
      return;
    }
    this.log.warn({ detector: this.id, files: fresh.length }, 'complete files from an interrupted run found in staging; they are placed with the next run');
    for (const rel of fresh) this.#unplaced.add(rel);
  }
}

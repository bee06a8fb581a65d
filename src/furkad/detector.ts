// One detector's pull loop: rsync run into staging, complete files into place, hand-over, pause; its own
// back-off, never waiting on another detector (F1, F2, F5, F10).
import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { classifyExit, runRsync, type RsyncResult } from './rsync.js';
import { deliveredPath, unmark } from '../common/paths.js';
import { sleep, wakeOrAbort } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Handover } from './handover.js';
import type { Assignment, Shift } from './shift.js';
import type { TransferGate } from './transfer-gate.js';
import { ShiftDir } from './shift-dir.js';

/** After each run: transferring = it moved files, idle = nothing new; retrying = backing off after an outage;
 *  down = a configuration error rsync will not get over by itself (retried at the longest interval). */
export type DetectorState = 'idle' | 'transferring' | 'retrying' | 'down';

export interface DetectorStats {
  state: DetectorState;
  /** Files and bytes transferred in this shift. */
  files: number;
  bytes: number;
  lastError: string;
  /** Duration of the last run that moved files, rsync start to files in place (µs). */
  lastRunUs: number;
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

export function stagingDir(target: string, id: string): string {
  return path.join(unmark(target), '.furkad-staging', id);
}

export class DetectorLoop {
  readonly stats: DetectorStats = { state: 'idle', files: 0, bytes: 0, lastError: '', lastRunUs: 0 };
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
    if (!this.#assignment || this.#backoff > 0) return;
    await this.#exclusive();
  }

  /** Serves `assignment` of `shift` from now on (undefined: this detector is idle in that shift). */
  assign(shift: Shift, assignment: Assignment | undefined): void {
    this.#shift = shift;
    this.#assignment = assignment;
    this.#dir = assignment && new ShiftDir(unmark(assignment.target), shift.usrdir, shift.uid, shift.gid);
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
        await wakeOrAbort((wake) => { this.#wake = wake; }, signal);
        continue;
      }
      const moved = await this.#exclusive();
      // F5: minpause after every run, interrun_pause on top after a run that moved files.
      if (this.#backoff > 0) await sleep(this.#backoff, signal);
      else await sleep(a.config.minpause + (moved > 0 ? a.config.interrun_pause : 0), signal);
    }
    await this.#current;
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
      if (!this.#dirReady) await this.#prepare(dir, a.config.remove_source ? staging : undefined);
    } catch (e) {
      this.#failed(`cannot create ${dir.root}: ${(e as Error).message}`, 'retry');
      return 0;
    }
    const release = await this.gate.acquire();
    const started = performance.now();
    let result: RsyncResult;
    try {
      result = await runRsync({
        rsync: this.settings.rsync,
        host: a.config.remoteIP,
        port: a.config.port,
        module: a.config.module,
        source: a.source,
        // Without remove_source there is no changed-source check to wait for, so no staging either.
        dest: a.config.remove_source ? staging : dir.root,
        uid: shift.uid,
        gid: shift.gid,
        removeSource: a.config.remove_source,
        exclude: a.config.exclude.split(/\s+/).filter(Boolean),
        timeoutS: this.settings.timeoutS,
      });
    } finally {
      release();
    }
    // Whatever reached the PPU complete is handed over, even from a run that failed half-way.
    // Without remove_source every run lists every file still on both sides: only new ones are news for grimseld.
    const marked = (rels: Iterable<string>): string[] => [...rels].map((f) => deliveredPath(a.target, shift.usrdir, f));
    // Noted before anything gets its final name: a furkad killed after placing re-sends them at its next start.
    const noted = this.handover.intend(shift.usertime, shift.uid, shift.gid,
      marked(a.config.remove_source ? new Set([...this.#unplaced, ...result.files]) : result.sent));
    const files = a.config.remove_source ? await this.#promote(staging, dir, result) : result.sent;
    this.handover.delivered(shift.usertime, shift.uid, shift.gid, marked(files), noted);
    if (files.length > 0) {
      this.stats.files += files.length;
      this.stats.bytes += result.bytes;
      this.stats.lastRunUs = Math.round((performance.now() - started) * 1000);
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
   * Renames the files rsync reported complete from staging to their final names; a file whose source
   * changed while it was sent stays in staging and is taken by a later run, complete (F2).
   */
  async #promote(staging: string, dir: ShiftDir, result: RsyncResult): Promise<string[]> {
    const placed: string[] = [];
    const complete = this.#unplaced.size === 0 ? result.files : [...new Set([...this.#unplaced, ...result.files])];
    for (const rel of complete) {
      if (result.changed.has(rel)) {
        this.#heldBack.add(rel);
        continue;
      }
      this.#heldBack.delete(rel);
      try {
        await dir.place(path.join(staging, rel), rel);
        placed.push(rel);
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

  /** A held-back file whose source is gone from the detector (its writer deleted it) would stay in staging for ever. */
  async #dropAbandoned(staging: string, result: RsyncResult): Promise<void> {
    if (this.#heldBack.size === 0) return;
    const listed = new Set(result.files);
    for (const rel of this.#heldBack) {
      if (listed.has(rel)) continue;
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

  async #prepare(dir: ShiftDir, staging: string | undefined): Promise<void> {
    await dir.prepare();
    if (staging) {
      await mkdir(staging, { recursive: true, mode: 0o700 });
      if (!(await lstat(staging)).isDirectory()) throw new Error(`${staging} is not a directory`);
      await this.#adoptLeftovers(staging);
    }
    this.#dirReady = true;
  }

  /**
   * Files found in staging when it is (re)prepared were transferred by a run whose promotion never
   * happened (furkad was killed in between, the source already removed on the detector): they are placed
   * by the next run like any unplaced file, unless that run finds their source still changing (F2).
   * Without this they would sit in a hidden directory for ever, never copied.
   */
  async #adoptLeftovers(staging: string): Promise<void> {
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
    const fresh = found.filter((rel) => !this.#unplaced.has(rel) && !this.#heldBack.has(rel));
    if (fresh.length === 0) return;
    this.log.warn({ detector: this.id, files: fresh.length }, 'complete files from an interrupted run found in staging; they are placed with the next run');
    for (const rel of fresh) this.#unplaced.add(rel);
  }
}

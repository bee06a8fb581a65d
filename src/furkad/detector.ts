// One detector's pull loop: rsync run, hand-over, pause; its own back-off, never waiting on another detector (F1, F5, F10).
import { mkdir, chown } from 'node:fs/promises';
import * as path from 'node:path';
import { classifyExit, runRsync } from './rsync.js';
import { deliveredPath, unmark } from '../common/paths.js';
import { sleep } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import type { Handover } from './handover.js';
import type { Assignment, Shift } from './shift.js';

export interface DetectorStats {
  state: 'idle' | 'transferring' | 'retrying';
  files: number;
  bytes: number;
  lastError: string;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

export class DetectorLoop {
  readonly stats: DetectorStats = { state: 'idle', files: 0, bytes: 0, lastError: '' };
  #shift: Shift | undefined;
  #assignment: Assignment | undefined;
  #dirReady = false;
  #held = false;
  #wake: (() => void) | undefined;
  /** The run in flight (or a resolved promise): shift changes wait on it. */
  #current: Promise<number> = Promise.resolve(0);
  #backoff = 0;

  constructor(
    readonly id: string,
    private readonly settings: { rsync: string; timeoutS: number },
    private readonly handover: Handover,
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
    this.#dirReady = false;
    this.stats.files = 0;
    this.stats.bytes = 0;
  }

  release(): void {
    this.#held = false;
    this.#wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const a = this.#assignment;
      if (!a || this.#held) {
        await new Promise<void>((r) => {
          this.#wake = r;
          signal.addEventListener('abort', () => r(), { once: true });
        });
        continue;
      }
      const moved = await this.#exclusive();
      if (this.#backoff > 0) await sleep(this.#backoff, signal);
      else await sleep(a.config.minpause + (moved > 0 ? a.config.interrun_pause : 0), signal);
    }
    await this.#current;
  }

  #exclusive(): Promise<number> {
    this.#current = this.#current.then(() => this.#runOnce());
    return this.#current;
  }

  async #runOnce(): Promise<number> {
    const shift = this.#shift;
    const a = this.#assignment;
    if (!shift || !a) return 0;
    const dest = path.join(unmark(a.target), shift.usrdir);
    try {
      if (!this.#dirReady) await this.#prepareDest(unmark(a.target), shift);
    } catch (e) {
      this.#failed(`cannot create ${dest}: ${(e as Error).message}`, 'retry');
      return 0;
    }
    this.stats.state = 'transferring';
    const result = await runRsync({
      rsync: this.settings.rsync,
      host: a.config.remoteIP,
      port: a.config.port,
      module: a.config.module,
      source: a.source,
      dest,
      uid: shift.uid,
      gid: shift.gid,
      removeSource: a.config.remove_source,
      exclude: a.config.exclude.split(/\s+/).filter(Boolean),
      timeoutS: this.settings.timeoutS,
    });
    // Hand over whatever reached the PPU, even from a run that failed half-way.
    if (result.files.length > 0) {
      this.handover.delivered(shift.usertime, shift.uid, shift.gid, result.files.map((f) => deliveredPath(a.target, shift.usrdir, f)));
      this.stats.files += result.transferred;
      this.stats.bytes += result.bytes;
    }
    const verdict = classifyExit(result.code);
    if (verdict === 'ok') {
      if (this.#backoff > 0) this.log.info({ detector: this.id }, 'detector reachable again, transfers resumed');
      this.#backoff = 0;
      this.stats.state = 'idle';
      this.stats.lastError = '';
    } else {
      this.#failed(`rsync exit ${result.code}: ${result.stderr.split('\n').filter(Boolean).pop() ?? ''}`, verdict);
    }
    return result.transferred;
  }

  /** Logs an outage once when it starts, then backs off exponentially (F10). */
  #failed(message: string, verdict: 'retry' | 'fatal'): void {
    if (this.#backoff === 0 || message !== this.stats.lastError) {
      this.log.error({ detector: this.id, verdict }, message);
    }
    this.stats.state = 'retrying';
    this.stats.lastError = message;
    this.#dirReady = false;
    this.#backoff = verdict === 'fatal' ? BACKOFF_MAX_MS : Math.min(Math.max(this.#backoff * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
  }

  /** Creates the target (root's) and the shift's usrdir below it, owned by the shift (F4). */
  async #prepareDest(target: string, shift: Shift): Promise<void> {
    await mkdir(target, { recursive: true });
    let dir = target;
    for (const part of shift.usrdir.split('/').filter(Boolean)) {
      dir = path.join(dir, part);
      await mkdir(dir, { recursive: true });
      await chown(dir, shift.uid, shift.gid);
    }
    this.#dirReady = true;
  }
}

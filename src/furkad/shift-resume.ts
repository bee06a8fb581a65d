// The shift furkad runs, kept in state_dir while it runs (F6, A5). `systemctl restart furkad` stops it cleanly:
// the file goes as the stop begins, and the next furkad starts the configured default shift, as F6 says. A
// furkad that ended any other way (killed, crashed, its watchdog fired, the bus lost) leaves the file behind,
// and the furkad systemd starts next goes on with that shift: the same id, owner and detectors, unless that
// furkad ended long ago, the configured defaults changed, or a scheduled rotation came meanwhile (whyNotResume). Otherwise a crash at night would hand
// the rest of a user's beamtime, and every file the dead furkad had heard of but not placed, to the configured
// default owner until someone noticed.
// A stop asked for forgets the file even when its drain could not take every file completed before it (a
// detector away, the bound passed; said in the log): `systemctl restart` gives the default shift every time (F6),
// not depending on the state of a detector the operator does not see. Those files go to the default shift.
import { readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { writeDurably } from '../common/durable-file.js';
import type { Shift } from './shift.js';

const FILE = 'running-shift.json';
/** A running furkad touches the file this often; one that ended longer ago than RESUME_WITHIN_MS is not resumed. */
export const TOUCH_EVERY_MS = 10_000;
/**
 * systemd starts a crashed furkad again within a second or two (RestartSec=1s). A file older than this was
 * left by a furkad that ended long ago (a unit that failed for good, a power cut): whoever starts furkad then
 * expects the default shift (F6), and the shift kept may be a user's whose beamtime is over.
 */
const RESUME_WITHIN_MS = 60_000;

/** What is kept of a running shift: its id, owner, the StartShift request it came from ([] = the defaults). */
export interface RunningShift {
  usertime: bigint;
  uid: number;
  gid: number;
  requested: Array<[string, string, string]>;
  /** The configured default shift then (uid, gid, usrdir): changed since, the administrator wants the new one. */
  defaults: string;
  /**
   * The PPU's boot it was kept in (the kernel's boot_id); undefined in a file of a furkad before 2026-12-05, whose
   * touches were by the wall clock.
   */
  boot?: string | undefined;
  /**
   * When a furkad running it last touched the file (its mtime): ms since that boot (CLOCK_MONOTONIC, which no step
   * of the wall clock moves), or since the epoch without `boot`.
   */
  touchedMs: number;
}

/** How the resuming furkad reads the time: the wall clock (the schedule), and the boot and time since it (the touch). */
export interface ResumeClock {
  wallMs: number;
  boot: string;
  sinceBootMs: number;
}

/** This boot of the PPU: a shift kept in another one ended with it (a power cut, a reboot). '' if unreadable. */
export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** ms since this boot by CLOCK_MONOTONIC: every process of the boot reads it alike, and ntpdate does not step it. */
export function sinceBootMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** The clock of this moment, for whyNotResume. */
export function resumeClock(): ResumeClock {
  // wall clock: for the schedule's boundaries, which are times of day
  return { wallMs: Date.now(), boot: bootId(), sinceBootMs: sinceBootMs() };
}

/** The configured default shift, as kept with a running one. */
export function defaultsOf(config: { uid: number; gid: number; usrdir: string }): string {
  return `${config.uid}:${config.gid}:${config.usrdir}`;
}

export function keepRunningShift(stateDir: string, shift: Shift, defaults: string): void {
  const file = path.join(stateDir, FILE);
  const text = `${JSON.stringify({
    usertime: String(shift.usertime), uid: shift.uid, gid: shift.gid, requested: shift.requested ?? [], defaults, boot: bootId(),
  })}\n`;
  // Kept already (a furkad going on with the shift the one before it ran): nothing to write, so a full state_dir
  // does not make it forget the shift, which the next start after a crash would then replace by the default.
  let same = false;
  try {
    same = readFileSync(file, 'utf8') === text;
  } catch { /* none kept */ }
  // A new file has the time since the boot as its mtime from the start: a furkad killed right after its rename
  // (before a touch) left a file whose wall-clock mtime read as a furkad that ended decades ago.
  if (!same) writeDurably(file, text, 0o644, new Date(sinceBootMs()));
  else touchRunningShift(stateDir);
}

/**
 * While furkad runs: the kept shift is still running (RESUME_WITHIN_MS). Nothing if there is none. The file's
 * mtime is the time since the boot (a date in January 1970), not the wall clock: a step of that between this touch
 * and the next furkad's start (ntpdate, an RTC behind at boot) made a furkad killed a moment before start the
 * default shift, or one that ended hours ago go on with its shift (found by hostile tester h9).
 */
export function touchRunningShift(stateDir: string): void {
  try {
    // wall clock for the atime only (nothing reads it); the mtime is the time since the boot
    utimesSync(path.join(stateDir, FILE), new Date(), new Date(sinceBootMs()));
  } catch { /* none kept (a write failed, said then) */ }
}

/** A clean stop begins, or the shift could not be kept: the next furkad starts the default shift. */
export function forgetRunningShift(stateDir: string, log: Logger): void {
  try {
    rmSync(path.join(stateDir, FILE), { force: true });
  } catch (e) {
    log.error({ err: (e as Error).message, state_dir: stateDir }, 'cannot remove the kept running shift: a furkad started next may go on with it');
  }
}

/**
 * Why `kept` is not to go on ('' = it is): it ended too long ago, the configured defaults changed since, or a
 * scheduled rotation (`nextBoundary` after its start) has come and gone meanwhile.
 */
export function whyNotResume(kept: RunningShift, defaults: string, now: ResumeClock, nextBoundary?: (after: Date) => Date | undefined): string {
  if (kept.boot !== undefined && kept.boot !== now.boot) return 'the PPU was restarted since the furkad that ran it ended';
  // A file of a furkad before 2026-12-05: touched by the wall clock.
  const age = kept.boot === undefined ? now.wallMs - kept.touchedMs : now.sinceBootMs - kept.touchedMs;
  if (age > RESUME_WITHIN_MS || age < 0) return `the furkad that ran it ended more than ${RESUME_WITHIN_MS / 1000} s ago`;
  if (kept.defaults !== defaults) return 'the configured default shift (uid, gid, usrdir) changed since';
  const boundary = nextBoundary?.(new Date(Number(kept.usertime / 1000n)));
  if (boundary && boundary.getTime() <= now.wallMs) return `a scheduled shift change (shift_schedule) came meanwhile, at ${boundary.toISOString()}`;
  return '';
}

/** The shift a furkad that did not stop cleanly ran, if it left one; a file that says nothing usable is said and ignored. */
export function readRunningShift(stateDir: string, log: Logger): RunningShift | undefined {
  const file = path.join(stateDir, FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ file, err: (e as Error).message }, 'cannot read the shift the last furkad ran; starting the configured default shift');
    return undefined;
  }
  try {
    const j = JSON.parse(text) as { usertime: unknown; uid: unknown; gid: unknown; requested: unknown; defaults: unknown; boot: unknown };
    const triple = (r: unknown): r is [string, string, string] => Array.isArray(r) && r.length === 3 && r.every((x) => typeof x === 'string');
    if (typeof j.usertime !== 'string' || !/^\d{1,19}$/.test(j.usertime) || !Number.isInteger(j.uid) || !Number.isInteger(j.gid)
      || !Array.isArray(j.requested) || !j.requested.every(triple) || typeof j.defaults !== 'string'
      || (j.boot !== undefined && typeof j.boot !== 'string')) throw new Error('unexpected content');
    return { usertime: BigInt(j.usertime), uid: j.uid as number, gid: j.gid as number, requested: j.requested as Array<[string, string, string]>,
      defaults: j.defaults, boot: j.boot as string | undefined, touchedMs: statSync(file).mtimeMs };
  } catch (e) {
    log.error({ file, err: (e as Error).message, content: text.slice(0, 80) }, 'the shift the last furkad ran is not readable; starting the configured default shift');
    return undefined;
  }
}

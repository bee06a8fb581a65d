// The shift furkad runs, kept in state_dir while it runs (F6, A5). `systemctl restart furkad` stops it cleanly:
// the file goes, and the next furkad starts the configured default shift, as F6 says. A furkad that ended any
// other way (killed, crashed, its watchdog fired, the bus lost) leaves the file behind, and the furkad systemd
// starts next goes on with that shift: the same id, owner and detectors. Otherwise a crash at night would hand
// the rest of a user's beamtime, and every file the dead furkad had heard of but not placed, to the configured
// default owner until someone noticed.
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { writeDurably } from '../common/durable-file.js';
import type { Shift } from './shift.js';

const FILE = 'running-shift.json';

/** What is kept of a running shift: its id, owner, and the StartShift request it came from ([] = the defaults). */
export interface RunningShift {
  usertime: bigint;
  uid: number;
  gid: number;
  requested: Array<[string, string, string]>;
}

export function keepRunningShift(stateDir: string, shift: Shift): void {
  writeDurably(path.join(stateDir, FILE), `${JSON.stringify({
    usertime: String(shift.usertime), uid: shift.uid, gid: shift.gid, requested: shift.requested ?? [],
  })}\n`);
}

/** After a clean stop: the next furkad starts the default shift. */
export function forgetRunningShift(stateDir: string): void {
  rmSync(path.join(stateDir, FILE), { force: true });
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
    const j = JSON.parse(text) as { usertime: unknown; uid: unknown; gid: unknown; requested: unknown };
    const triple = (r: unknown): r is [string, string, string] => Array.isArray(r) && r.length === 3 && r.every((x) => typeof x === 'string');
    if (typeof j.usertime !== 'string' || !/^\d{1,19}$/.test(j.usertime) || !Number.isInteger(j.uid) || !Number.isInteger(j.gid)
      || !Array.isArray(j.requested) || !j.requested.every(triple)) throw new Error('unexpected content');
    return { usertime: BigInt(j.usertime), uid: j.uid as number, gid: j.gid as number, requested: j.requested as Array<[string, string, string]> };
  } catch (e) {
    log.error({ file, err: (e as Error).message, content: text.slice(0, 80) }, 'the shift the last furkad ran is not readable; starting the configured default shift');
    return undefined;
  }
}

// The last shift furkad started, kept in state_dir (F6, G5). A shift's id is the µs of its start, and grimseld
// takes the newest id for the current shift and cleans the ramdisk files of every earlier one up as soon as
// their internal copy exists. Were furkad restarted after the clock was set back (an RTC off until NTP stepped
// it, an administrator's `date -s`), its new shift would get an earlier id than the one before: the live
// shift's ramdisk files would go from under the online processing (their copies stay on the storages). With
// the last id kept here, the next one always comes after it (shift.ts, ShiftIds).
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import * as path from 'node:path';

const FILE = 'last-shift';

/** The id of the last shift started with `stateDir`; 0 if none is kept (or the file holds no id). */
export function readLastShift(stateDir: string): bigint {
  try {
    const text = readFileSync(path.join(stateDir, FILE), 'utf8').trim();
    return /^\d{1,20}$/.test(text) ? BigInt(text) : 0n;
  } catch {
    return 0n;
  }
}

/** Keeps `usertime` as the last shift's id: a new file, flushed, renamed over the old one. */
export function writeLastShift(stateDir: string, usertime: bigint): void {
  const file = path.join(stateDir, FILE);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, `${usertime}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

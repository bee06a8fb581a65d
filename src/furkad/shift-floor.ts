// The last shift furkad started, kept in state_dir (F6, G5). A shift's id is the µs of its start, and grimseld
// takes the newest id for the current shift and cleans the ramdisk files of every earlier one up as soon as
// their internal copy exists. Were furkad restarted after the clock was set back (an RTC off until NTP stepped
// it, an administrator's `date -s`), its new shift would get an earlier id than the one before: the live
// shift's ramdisk files would go from under the online processing (their copies stay on the storages). With
// the last id kept here, the next one always comes after it (shift.ts, ShiftIds).
import { readFileSync } from 'node:fs';
import { writeDurably } from '../common/durable-file.js';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';

const FILE = 'last-shift';
/**
 * The largest id taken: a D-Bus `t` holds more, a signed 64-bit integer (grimseld's journal, scripts) no more,
 * and the ids after it must fit too.
 */
const MAX_ID = 2n ** 63n - 1n - 2n ** 32n;
/** A kept id further ahead of the clock than this is said as an error at start. */
const FAR_AHEAD_US = 24n * 3600n * 1_000_000n;

/**
 * The id of the last shift started with `stateDir`; 0 if none is kept. A file that holds no id is said and
 * read as none; an id more than a day ahead of the clock is said and kept (new ids come after it, and their
 * start times read late by as much: the lesser harm, see above).
 */
export function readLastShift(stateDir: string, log: Logger): bigint {
  const file = path.join(stateDir, FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ file, err: (e as Error).message }, 'cannot read the last shift\'s id; new shift ids follow the clock alone');
    return 0n;
  }
  const id = /^\d{1,19}$/.test(text) ? BigInt(text) : undefined;
  if (id === undefined || id > MAX_ID) {
    log.error({ file, content: text.slice(0, 40) }, 'the last shift\'s id file holds no id; new shift ids follow the clock alone');
    return 0n;
  }
  const aheadUs = id - BigInt(Date.now()) * 1000n; // wall clock: the id is a start time kept across restarts
  if (aheadUs > FAR_AHEAD_US) {
    log.error({ file, usertime: String(id), ahead_days: Number(aheadUs / 86_400_000_000n) },
      'the last shift started more than a day after the time the clock says now (the clock was wrong then, or is now): every new shift\'s id ' +
      'comes after it, so that grimseld takes it for the current one, and its start time reads that much late');
  }
  return id;
}

/** Keeps `usertime` as the last shift's id: a new file, flushed, renamed over the old one, the rename flushed. */
export function writeLastShift(stateDir: string, usertime: bigint): void {
  writeDurably(path.join(stateDir, FILE), `${usertime}\n`);
}

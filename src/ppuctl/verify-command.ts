// `ppuctl verify PATH...` (I4): re-reads stored images and compares each with the checksum recorded on it
// (the ppu.checksum extended attribute, docs/integrity.md). A fixity check a facility can run months later.
// Exit 0: every file that has a checksum matches; 1: one does not, could not be read, or its checksum is of no
// kind this tool knows; 2: bad usage.
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { ALGORITHM, checksumOfFd, prepareChecksums, tagged } from '../common/checksum.js';
import { initProvenance, readProvenance } from '../common/provenance.js';
import { monotonicMs } from '../common/monotonic.js';
import { visible } from './terminal-text.js';
import { MARK_FILE } from '../grimseld/storage-marks.js';

export interface VerifyReport {
  checked: number;
  good: number;
  bytes: number;
  mismatched: Array<{ file: string; recorded: string; actual: string }>;
  unrecorded: string[];
  /**
   * A checksum attribute that holds no checksum this tool can compare (not ALGORITHM:HEX, or another algorithm):
   * the file cannot be checked, which is not the same as its bytes having changed.
   */
  unknownChecksum: Array<{ file: string; recorded: string; why: string }>;
  unreadable: Array<{ file: string; error: string }>;
  /** symbolic links (the fill guard's links to copies) and special files: not followed, not checked */
  skipped: number;
  /**
   * Gone between the listing and the read: on a live storage, a copy's temp file renamed, or a copy grimseld
   * deleted or linked away (G5, G7). Neither checked nor a failure.
   */
  vanished: number;
}

/** The error of a file that is no longer there. */
function gone(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Regular files below each of `paths` (a path may be a file), never following a link. */
function* filesBelow(p: string, report: VerifyReport): Generator<string> {
  let st;
  try {
    st = lstatSync(p);
  } catch (e) {
    // A name too long for the kernel (a tree deeper than PATH_MAX), or one that went since it was listed.
    if (gone(e)) report.vanished++;
    else report.unreadable.push({ file: p, error: (e as Error).message });
    return;
  }
  if (st.isFile()) {
    yield p;
  } else if (st.isDirectory()) {
    let names: string[];
    try {
      names = readdirSync(p).sort();
    } catch (e) {
      report.unreadable.push({ file: p, error: (e as Error).message });
      return;
    }
    for (const n of names) yield* filesBelow(path.join(p, n), report);
  } else {
    report.skipped++;
  }
}

/** Why a recorded checksum attribute is none this tool can compare. */
function unknownWhy(recorded: string): string {
  const m = /^([A-Za-z0-9-]+):/.exec(recorded.trim());
  if (m && m[1] !== ALGORITHM) return `unknown algorithm '${m[1]}' (this tool checks ${ALGORITHM})`;
  return `not ${ALGORITHM}:<32 hex digits>`;
}

/** Checks one file: recorded checksum against its bytes now. */
async function verifyFile(file: string, report: VerifyReport, buf: Buffer): Promise<void> {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if (gone(e)) report.vanished++;
    else report.unreadable.push({ file, error: (e as Error).message });
    return;
  }
  try {
    if (!fstatSync(fd).isFile()) { // swapped for something else since the walk
      report.skipped++;
      return;
    }
    const recorded = readProvenance(fd);
    if (!recorded && path.basename(file) === MARK_FILE) { // grimseld's mark of a storage's disk, no image
      report.skipped++;
      return;
    }
    if (!recorded) {
      report.unrecorded.push(file);
      return;
    }
    if (!recorded.checksum) {
      report.unknownChecksum.push({ file, recorded: recorded.recorded, why: unknownWhy(recorded.recorded) });
      return;
    }
    report.checked++;
    const actual = await checksumOfFd(fd, buf);
    report.bytes += fstatSync(fd).size;
    if (actual === recorded.checksum) report.good++;
    else report.mismatched.push({ file, recorded: recorded.recorded, actual: tagged(actual) });
  } catch (e) {
    report.unreadable.push({ file, error: (e as Error).message });
  } finally {
    closeSync(fd);
  }
}

export async function verifyCommand(paths: string[], json: boolean, out = process.stdout, err = process.stderr): Promise<number> {
  const roots = paths.map((p) => {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) throw new VerifyUsage(`verify: ${p}: no such file or directory`);
    // A path named on the command line is followed if it is a link (/data -> /export/data): below it, none is.
    return st.isSymbolicLink() ? realpathSync(p) : p;
  });
  await Promise.all([prepareChecksums(1), initProvenance()]);
  const report: VerifyReport = { checked: 0, good: 0, bytes: 0, mismatched: [], unrecorded: [], unknownChecksum: [], unreadable: [], skipped: 0, vanished: 0 };
  const tty = !json && err.isTTY;
  const buf = Buffer.allocUnsafe(1 << 20);
  const started = monotonicMs();
  let shown = 0;
  let seen = 0;
  for (const p of roots) {
    for (const file of filesBelow(p, report)) {
      const before = report.mismatched.length;
      await verifyFile(file, report, buf);
      seen++;
      const m = report.mismatched[before];
      if (m && !json) out.write(`MISMATCH ${visible(m.file)}\n    recorded ${m.recorded}\n    now      ${m.actual}\n`);
      if (tty && monotonicMs() - shown > 200) {
        shown = monotonicMs();
        err.write(`\r\x1b[K${seen} files, ${(report.bytes / 1e6).toFixed(0)} MB checked, ${report.mismatched.length} mismatched: ${visible(file.slice(-60))}`);
      }
    }
  }
  if (tty) err.write('\r\x1b[K');
  const failed = report.mismatched.length + report.unreadable.length + report.unknownChecksum.length;
  if (json) {
    out.write(`${JSON.stringify({ ...report, seconds: (monotonicMs() - started) / 1000, ok: failed === 0 }, null, 2)}\n`);
  } else {
    for (const u of report.unreadable) out.write(`UNREADABLE ${visible(u.file)}: ${visible(u.error)}\n`);
    // JSON quoting: the attribute may hold anything, a control character included.
    for (const u of report.unknownChecksum) out.write(`UNKNOWN CHECKSUM ${visible(u.file)}: recorded ${JSON.stringify(u.recorded.slice(0, 100))}, ${u.why}\n`);
    for (const u of report.unrecorded) out.write(`NO CHECKSUM ${visible(u)}\n`);
    out.write(`${report.checked} files with a checksum checked (${(report.bytes / 1e6).toFixed(1)} MB): ${report.good} good, `
      + `${report.mismatched.length} mismatched; ${report.unrecorded.length} without a checksum, `
      + `${report.unknownChecksum.length ? `${report.unknownChecksum.length} with an unknown or malformed checksum, ` : ''}${report.unreadable.length} unreadable, `
      + `${report.skipped} links or special files skipped${report.vanished ? `, ${report.vanished} gone while checked (a live storage)` : ''}\n`);
  }
  return failed ? 1 : 0;
}

/** A path that does not exist: bad usage (exit 2), named. */
export class VerifyUsage extends Error {}

// Whether a directory's file system keeps the nanoseconds of an mtime: then furkad's rsync runs compare mtimes to
// the nanosecond (--modify-window=-1). rsync's quick check otherwise compares whole seconds: a file rewritten within
// the second it was copied in, at the same size (a writer that writes its header last, a re-take renamed over the
// same name), looks unchanged, and the stale copy would be placed while the daemon removes the new source (F2).
// Where the file system keeps whole seconds only (ext3, ext4 with 128-byte inodes) every copy's time would differ
// from its source's at that precision, and every file would be sent again at every run: there whole seconds stay.
import { closeSync, mkdtempSync, openSync, rmSync, statSync, utimesSync } from 'node:fs';
import * as path from 'node:path';

/** Answers per file system (st_dev): asked once per file system a furkad writes to. */
const known = new Map<number, boolean>();

/** A time with a fraction no coarser file system keeps (2023-11-14T22:13:20.123457Z). */
const PROBE_S = 1_700_000_000.123457;

/**
 * Whether `dir`'s file system keeps sub-second mtimes; false where it cannot be tried (not writable, gone). `dir`
 * must be furkad's own (staging: root's, 0700, checked), never one a user can write: the probe is made in it.
 */
export function keepsSubsecondTimes(dir: string): boolean {
  let dev: number;
  try {
    dev = statSync(dir).dev;
  } catch {
    return false;
  }
  const said = known.get(dev);
  if (said !== undefined) return said;
  let keeps = false;
  let probe: string | undefined;
  try {
    probe = mkdtempSync(path.join(dir, '.furkad-mtime-'));
    const file = path.join(probe, 'f');
    closeSync(openSync(file, 'w', 0o600));
    utimesSync(file, PROBE_S, PROBE_S);
    const ns = statSync(file, { bigint: true }).mtimeNs % 1_000_000_000n;
    keeps = ns !== 0n;
    known.set(dev, keeps);
  } catch {
    // Not known: whole seconds this time, asked again next time.
  } finally {
    if (probe) rmSync(probe, { recursive: true, force: true });
  }
  return keeps;
}

// Whether furkad's rsync runs into a directory compare mtimes to the nanosecond (--modify-window=-1). rsync's quick
// check otherwise compares whole seconds: a file rewritten within the second it was copied in, at the same size (a
// writer that writes its header last, a re-take renamed over the same name), looks unchanged, and the stale copy
// would be placed while the daemon removes the new source (F2). Two conditions:
// - the file system keeps every nanosecond of an mtime (tmpfs, ext4 of 256-byte inodes, XFS, btrfs). One that keeps
//   whole seconds (ext3, ext4 of 128-byte inodes), or microseconds or 100 ns steps (some NFS, FUSE and CIFS mounts),
//   would give every copy another time than its source's, and every file would be sent again at every run and
//   never settle.
// - rsync is 3.1.3 or later, which reads a negative window as "to the nanosecond". 3.1.1 and 3.1.2 accept -1 too,
//   but their comparison then takes any two times for the same (CentOS 7 ships 3.1.2).
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** Answers per file system (st_dev): asked once per file system a furkad writes to. */
const keeps = new Map<number, boolean>();
/** Answers per rsync command (rsync_path). */
const versions = new Map<string, boolean>();

/** A time with nine digits after the second (2023-11-14T22:13:20.123456789Z), set by touch(1): Node sets microseconds at most. */
const PROBE = '1700000000.123456789';

/**
 * Whether `dir`'s file system keeps every nanosecond of an mtime; false where it cannot be tried (not writable,
 * gone). `dir` must be furkad's own (root's, 0700), never one a user can write: the probe is made in it.
 */
export function keepsNanoseconds(dir: string): boolean {
  let dev: number;
  try {
    dev = statSync(dir).dev;
  } catch {
    return false;
  }
  const said = keeps.get(dev);
  if (said !== undefined) return said;
  let probe: string | undefined;
  try {
    probe = mkdtempSync(path.join(dir, '.furkad-mtime-'));
    const file = path.join(probe, 'f');
    closeSync(openSync(file, 'w', 0o600));
    execFileSync('touch', ['-m', '-d', `@${PROBE}`, file], { stdio: 'ignore', timeout: 5000 });
    const kept = statSync(file, { bigint: true }).mtimeNs === BigInt(PROBE.replace('.', ''));
    keeps.set(dev, kept);
    return kept;
  } catch {
    // Not known: whole seconds this time, asked again next time.
    return false;
  } finally {
    if (probe) rmSync(probe, { recursive: true, force: true });
  }
}

/** Whether `version` (rsync --version's first line) is 3.1.3 or later. */
export function comparesNanoseconds(version: string): boolean {
  const m = /\bversion\s+v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return major > 3 || (major === 3 && (minor > 1 || (minor === 1 && patch >= 3)));
}

/** Whether the rsync furkad runs (`rsync`, its rsync_path) is 3.1.3 or later; asked once, false if it cannot say. */
export function rsyncComparesNanoseconds(rsync: string): boolean {
  let said = versions.get(rsync);
  if (said === undefined) {
    try {
      said = comparesNanoseconds(execFileSync(rsync, ['--version'], { encoding: 'latin1', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }));
    } catch {
      said = false;
    }
    versions.set(rsync, said);
  }
  return said;
}

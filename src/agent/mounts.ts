// The mount table as /proc/self/mountinfo lists it: where each file system is mounted, its device and its type.
import { readFileSync } from 'node:fs';
import { makedev } from './open-writers.js';

export interface Mount {
  /** The mount point. */
  at: string;
  /** The file system's device (st_dev as Node gives it: the superblock's, not a btrfs subvolume's). */
  dev: number;
  type: string;
}

export const readMountinfo = (): string => readFileSync('/proc/self/mountinfo', 'utf8');

/** The mounts /proc/self/mountinfo lists, in its order (a later mount on the same point is on top). */
export function mountsOf(mountinfo: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS"
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    const mm = /^(\d+):(\d+)$/.exec(f[2] ?? '');
    if (f.length < 5 || dash < 0 || !mm) continue;
    const at = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    mounts.push({ at, dev: makedev(Number(mm[1]), Number(mm[2])), type: f[dash + 1] ?? '' });
  }
  return mounts;
}

/** The mount holding real path `dir`: the longest mount point above it, the last of equals (the one on top). */
export function mountOf(dir: string, mounts: Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    const covers = m.at === '/' || dir === m.at || dir.startsWith(`${m.at}/`);
    if (covers && (!best || m.at.length >= best.at.length)) best = m;
  }
  return best;
}

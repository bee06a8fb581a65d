// The mount table as /proc/self/mountinfo lists it: where each file system is mounted, its device and its type
// (the agent's watch and lease checks, grimseld's mount points).
import { readFileSync } from 'node:fs';

/**
 * A device number as Node reports st_dev: glibc's makedev of `major`:`minor` (as /proc lists them), in
 * arithmetic rather than 32-bit bit operations, which turn a minor of 2^20 or more negative.
 */
export function makedev(major: number, minor: number): number {
  return (minor & 0xff) + (major % 0x1000) * 0x100 + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 0x100000000000;
}

export interface Mount {
  /** Mount ids: its own, and that of the mount it sits on. */
  id: number;
  parent: number;
  /** The mount point. */
  at: string;
  /** The directory of its file system it shows (`/` but for a bind mount or a btrfs subvolume). */
  root: string;
  /** The file system's device (st_dev as Node gives it: the superblock's, not a btrfs subvolume's). */
  dev: number;
  type: string;
  /** Read-only as this mount shows it (its own `ro`), and as its file system is (the superblock's `ro`). */
  readOnly: boolean;
  fsReadOnly: boolean;
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
    const ro = (options: string | undefined): boolean => (options ?? '').split(',').includes('ro');
    mounts.push({ id: Number(f[0]), parent: Number(f[1]), at: unescape(f[4]!), root: unescape(f[3]!), dev: makedev(Number(mm[1]), Number(mm[2])), type: f[dash + 1] ?? '',
      readOnly: ro(f[5]), fsReadOnly: ro(f[dash + 3]) });
  }
  return mounts;
}

/** A path as mountinfo writes it: space, tab, newline and backslash as octal escapes. */
const unescape = (p: string): string => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mount holding real path `dir`: the longest mount point above it, the last of equals (the one on top). */
export function mountOf(dir: string, mounts: Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    const covers = m.at === '/' || dir === m.at || dir.startsWith(`${m.at}/`);
    if (covers && (!best || m.at.length >= best.at.length)) best = m;
  }
  return best;
}

// Which directories inotifywait really watches, from the kernel's own list (A2). inotifywait's recursive walk
// skips a subdirectory without a word when an entry in it vanished between its readdir and its lstat (a writer's
// temp name, renamed meanwhile), and gives up a new directory for the same reason: nothing in such a directory
// would ever be reported. /proc/PID/fdinfo of its inotify descriptor lists one line per watch with the watched
// inode and its device ("inotify wd:3 ino:224de4 sdev:fe00000 mask:..."; Linux 3.8 and later, CentOS 7's 3.10
// too), so the agent compares the directories its scans walked with what is watched. The device counts: a
// file system mounted below the root numbers its inodes from 1 again, as the root's tmpfs does. But the list
// names the file system's own device, which is not always the one stat(2) gives: a btrfs subvolume's files
// (its top level's too) have a device of their own. Where stat's device is not a mounted file system's, as
// /proc/self/mountinfo lists them, the inode alone decides (isWatched).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A directory as stat(2) gives it: "major:minor:inode" of its device and inode. */
export type DirId = string;

/** What the kernel's list of watches holds: each watched directory by device and inode, and by inode alone. */
export interface Watches {
  ids: Set<DirId>;
  inodes: Set<string>;
}

/**
 * The DirId of a bigint stat. Node gives glibc's dev_t: minor in bits 0-7 and 20-43, major in bits 8-19 and
 * 44-63.
 */
export function dirId(st: { dev: bigint; ino: bigint }): DirId {
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${st.ino}`;
}

/**
 * The directories the inotify instance(s) of process `pid` watch. Throws (saying why) when that cannot be read.
 * Costs ~4 µs per watch (the kernel writes each line with its file handle): ~6 ms for 1600 directories.
 */
export function watchedDirs(pid: number): Watches {
  const fds = readdirSync(`/proc/${pid}/fd`);
  let watched: Watches | undefined;
  for (const fd of fds) {
    let info: string;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
    } catch {
      continue; // closed meanwhile (inotifywait opens each directory it walks)
    }
    watched ??= { ids: new Set(), inodes: new Set() };
    // "inotify wd:3 ino:224de4 sdev:fe00000 ..." per watch (sdev is the kernel's own dev_t: major << 20 | minor);
    // the descriptor's own "ino:\t26" starts its line, no space before.
    for (const [, ino, sdev] of info.matchAll(/ ino:([0-9a-f]+) sdev:([0-9a-f]+) /g)) {
      const dev = Number.parseInt(sdev!, 16);
      const inode = String(BigInt(`0x${ino!}`));
      watched.ids.add(`${Math.floor(dev / 0x100000)}:${dev % 0x100000}:${inode}`);
      watched.inodes.add(inode);
    }
  }
  if (!watched) throw new Error(`no inotify descriptor in /proc/${pid}/fd`);
  return watched;
}

/**
 * Whether directory `id` is among `watches`: by device and inode where its device is a mounted file system's
 * (`mounted`, mountedDevices()), as the list names it; by inode alone where it is not (a btrfs subvolume's).
 */
export function isWatched(watches: Watches, id: DirId, mounted: Set<string>): boolean {
  const at = id.lastIndexOf(':');
  return mounted.has(id.slice(0, at)) ? watches.ids.has(id) : watches.inodes.has(id.slice(at + 1));
}

/** The devices ("major:minor") of the file systems mounted where this process sees them (/proc/self/mountinfo). */
export function mountedDevices(mountinfo = readFileSync('/proc/self/mountinfo', 'latin1')): Set<string> {
  // "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." per mount.
  return new Set(mountinfo.split('\n').map((line) => line.split(' ')[2] ?? '').filter((d) => /^\d+:\d+$/.test(d)));
}

/** fs.inotify.max_user_watches, or undefined if it cannot be read. */
export function maxUserWatches(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/fs/inotify/max_user_watches', 'latin1').trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

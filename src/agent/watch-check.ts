// Which directories inotifywait really watches, from the kernel's own list (A2). inotifywait's recursive walk
// skips a subdirectory without a word when an entry in it vanished between its readdir and its lstat (a writer's
// temp name, renamed meanwhile), and gives up a new directory for the same reason: nothing in such a directory
// would ever be reported. /proc/PID/fdinfo of its inotify descriptor lists one line per watch with the watched
// inode and its device ("inotify wd:3 ino:224de4 sdev:fe00000 mask:..."; Linux 3.8 and later, CentOS 7's 3.10
// too), so the agent compares the directories its scans walked with what is watched. The device counts: a
// file system mounted below the root numbers its inodes from 1 again, as the root's tmpfs does. But the list
// names the file system's own device, which is not always the one stat(2) gives: a btrfs subvolume's files
// (its top level's too) have a device of their own. Such a device is translated to that of the mount holding
// the directory, as /proc/self/mountinfo lists it (WatchList.has). Left ambiguous: two subvolumes of one btrfs
// number their inodes alike, and the list cannot tell them apart.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileKey } from './open-writers.js';
import { makedev, mountOf, mountsOf, readMountinfo, type Mount } from '../common/mounts.js';

/** A directory as stat(2) gives it: "dev:ino" (fileKey), its device as Node gives st_dev. */
export type DirId = string;

/** The DirId of a stat. */
export const dirId: (st: { dev: number | bigint; ino: number | bigint }) => DirId = fileKey;

/** A watch as /proc/PID/fdinfo lists it (hex inode; sdev the kernel's own dev_t, major << 20 | minor) as a DirId. */
export function watchId(inoHex: string, sdevHex: string): DirId {
  const sdev = Number.parseInt(sdevHex, 16);
  return dirId({ dev: makedev(Math.floor(sdev / 0x100000), sdev % 0x100000), ino: BigInt(`0x${inoHex}`) });
}

/** What the kernel's list of watches holds: each watched directory by its file system's device and its inode. */
export class WatchList {
  readonly #ids: Set<DirId>;
  readonly #devices: Set<string>;
  #mounts: Mount[] | undefined;

  constructor(ids: Set<DirId>) {
    this.#ids = ids;
    this.#devices = new Set([...ids].map((id) => id.slice(0, id.indexOf(':'))));
  }

  get size(): number {
    return this.#ids.size;
  }

  /**
   * Whether the directory at absolute `path` (the agent's root is a real path), whose stat gave `id`, is watched.
   * A device the list names is the file system's own: device and inode decide. Any other (a btrfs subvolume's,
   * or that of a file system nothing is watched on) stands for the device of the mount holding `path`
   * (mountinfo, read only then).
   */
  has(id: DirId, path: Buffer): boolean {
    const at = id.indexOf(':');
    if (this.#devices.has(id.slice(0, at))) return this.#ids.has(id);
    const dev = mountOf(path.toString('utf8'), (this.#mounts ??= mountsOf(readMountinfo())))?.dev;
    return dev !== undefined && this.#ids.has(`${dev}${id.slice(at)}`);
  }
}

/**
 * The directories the inotify instance(s) of process `pid` watch. Throws (saying why) when that cannot be read.
 * Costs ~4 µs per watch (the kernel writes each line with its file handle): ~6 ms for 1600 directories.
 */
export function watchedDirs(pid: number): WatchList {
  const fds = readdirSync(`/proc/${pid}/fd`);
  let watched: Set<DirId> | undefined;
  for (const fd of fds) {
    let info: string;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
    } catch {
      continue; // closed meanwhile (inotifywait opens each directory it walks)
    }
    watched ??= new Set();
    // "inotify wd:3 ino:224de4 sdev:fe00000 ..." per watch; the descriptor's own "ino:\t26" starts its line, no
    // space before.
    for (const [, ino, sdev] of info.matchAll(/ ino:([0-9a-f]+) sdev:([0-9a-f]+) /g)) watched.add(watchId(ino!, sdev!));
  }
  if (!watched) throw new Error(`no inotify descriptor in /proc/${pid}/fd`);
  return new WatchList(watched);
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

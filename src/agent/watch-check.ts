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

/** A directory as stat(2) gives it: "major:minor:inode" of its device and inode. */
export type DirId = string;

/** One mount of /proc/self/mountinfo: its mount point (bytes) and its file system's device ("major:minor"). */
interface Mount {
  at: Buffer;
  dev: string;
}

/** What the kernel's list of watches holds: each watched directory by its file system's device and its inode. */
export class WatchList {
  readonly #ids: Set<DirId>;
  readonly #devices: Set<string>;
  #mounts: Mount[] | undefined;

  /** `mountinfo`: read only if a device needs translating. */
  constructor(ids: Set<DirId>, private readonly mountinfo: () => Buffer = () => readFileSync('/proc/self/mountinfo')) {
    this.#ids = ids;
    this.#devices = new Set([...ids].map((id) => id.slice(0, id.lastIndexOf(':'))));
  }

  get size(): number {
    return this.#ids.size;
  }

  /**
   * Whether the directory at absolute `path` (the agent's root is a real path), whose stat gave `id`, is watched.
   * A device the list names is the file system's own: device and inode decide. Any other (a btrfs subvolume's,
   * or that of a file system nothing is watched on) stands for the device of the mount holding `path`.
   */
  has(id: DirId, path: Buffer): boolean {
    const at = id.lastIndexOf(':');
    if (this.#devices.has(id.slice(0, at))) return this.#ids.has(id);
    const dev = mountOf(path, (this.#mounts ??= mountsOf(this.mountinfo())))?.dev;
    return dev !== undefined && this.#ids.has(`${dev}:${id.slice(at + 1)}`);
  }
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
export function watchedDirs(pid: number, mountinfo?: () => Buffer): WatchList {
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
    // "inotify wd:3 ino:224de4 sdev:fe00000 ..." per watch (sdev is the kernel's own dev_t: major << 20 | minor);
    // the descriptor's own "ino:\t26" starts its line, no space before.
    for (const [, ino, sdev] of info.matchAll(/ ino:([0-9a-f]+) sdev:([0-9a-f]+) /g)) {
      const dev = Number.parseInt(sdev!, 16);
      watched.add(`${Math.floor(dev / 0x100000)}:${dev % 0x100000}:${BigInt(`0x${ino!}`)}`);
    }
  }
  if (!watched) throw new Error(`no inotify descriptor in /proc/${pid}/fd`);
  return new WatchList(watched, mountinfo);
}

/** The mounts /proc/self/mountinfo lists, in its order (a later mount on the same point is on top). */
function mountsOf(mountinfo: Buffer): Mount[] {
  const mounts: Mount[] = [];
  // "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." per mount; a mount point's space, tab, newline, backslash as \ooo.
  for (const line of mountinfo.toString('latin1').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5 || !/^\d+:\d+$/.test(f[2]!)) continue;
    const at = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    mounts.push({ at: Buffer.from(at, 'latin1'), dev: f[2]! });
  }
  return mounts;
}

/** The mount holding absolute `path`: the longest mount point above it, the last of equals (the one on top). */
function mountOf(path: Buffer, mounts: Mount[]): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    const covers = (m.at.length === 1 && m.at[0] === 0x2f) ||
      (path.subarray(0, m.at.length).equals(m.at) && (path.length === m.at.length || path[m.at.length] === 0x2f));
    if (covers && (!best || m.at.length >= best.at.length)) best = m;
  }
  return best;
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

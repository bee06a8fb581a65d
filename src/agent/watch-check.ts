// Which directories inotifywait really watches, from the kernel's own list (A2). inotifywait's recursive walk
// skips a subdirectory without a word when an entry in it vanished between its readdir and its lstat (a writer's
// temp name, renamed meanwhile), and gives up a new directory for the same reason: nothing in such a directory
// would ever be reported. /proc/PID/fdinfo of its inotify descriptor lists one line per watch with the watched
// inode ("inotify wd:3 ino:224de4 sdev:fe00000 mask:..."; Linux 3.8 and later, CentOS 7's 3.10 too), so the
// agent compares the directories its scans walked with what is watched.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * The inodes the inotify instance(s) of process `pid` watch. Throws (saying why) when that cannot be read. Costs
 * ~4 µs per watch (the kernel writes each line with its file handle): ~6 ms for 1600 directories.
 */
export function watchedInodes(pid: number): Set<bigint> {
  const fds = readdirSync(`/proc/${pid}/fd`);
  let watched: Set<bigint> | undefined;
  for (const fd of fds) {
    let info: string;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
    } catch {
      continue; // closed meanwhile (inotifywait opens each directory it walks)
    }
    watched ??= new Set();
    // "inotify wd:3 ino:224de4 sdev:..." per watch; the descriptor's own "ino:\t26" starts its line, no space before.
    for (let at = info.indexOf(' ino:'); at >= 0; at = info.indexOf(' ino:', at + 5)) {
      const hex = info.slice(at + 5, info.indexOf(' ', at + 5));
      if (/^[0-9a-f]+$/.test(hex)) watched.add(BigInt(`0x${hex}`));
    }
  }
  if (!watched) throw new Error(`no inotify descriptor in /proc/${pid}/fd`);
  return watched;
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

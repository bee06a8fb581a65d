// Where the fill guards make a link before it takes an original's name (G6, G7; reclaimer.ts): a directory of
// grimseld's own, `.grimsel-links` in the ramdisk's root or the internal storage's target, 0700 and owned by
// grimseld's user, on the same file system as the originals below it.
//
// The link is given its owner (the original's) and its mtime (its shift's, link-dirs.ts) there, where no one
// else can reach it, and only then renamed over the original. Made under a temp name in the user's own directory
// instead, as before 2026-12-06, the user could rename a hard link of any file they may read and write over that
// name between the symlink and the lchown: root then gave that file to them (a colleague's 0666 file on the
// ramdisk; with fs.protected_hardlinks off, any root file there). lchown does not follow a final symbolic link,
// but a hard link is the file itself (found by reviewer r4, in 1867 of 2000 tries).
import { randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { DirFd } from '../common/dir-fd.js';

export const LINK_ROOM = '.grimsel-links';

/** The roots whose room was emptied of what a grimseld killed mid-link left, in this process. */
const emptied = new Set<string>();

/**
 * The link room below `root` (a configured, trusted directory), made if missing and held (close it). Throws when
 * it cannot be made or is not grimseld's alone (another owner, group or others may enter): the caller then makes
 * the link where the original is, without giving it an owner or time.
 */
export function openLinkRoom(root: string): DirFd {
  const top = DirFd.open(root);
  let room: DirFd;
  try {
    try {
      top.mkdir(LINK_ROOM, 0o700);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    room = top.walk(LINK_ROOM); // never through a link
  } finally {
    top.close();
  }
  const st = fstatSync(room.fd);
  if (st.uid !== process.getuid!() || (st.mode & 0o077) !== 0) {
    room.close();
    throw new Error(`${root}/${LINK_ROOM} is not grimseld's alone (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`);
  }
  if (!emptied.has(root)) {
    // Left by a grimseld killed between the symlink and the rename: links only grimseld could have made.
    for (const name of room.names()) {
      try {
        room.unlink(name);
      } catch { /* a directory someone made there as root: not ours to remove */ }
    }
    emptied.add(root);
  }
  return room;
}

/** A name for one link in the room: unique to this attempt. */
export function roomName(id: number): string {
  return `${id}.${randomBytes(6).toString('hex')}`;
}

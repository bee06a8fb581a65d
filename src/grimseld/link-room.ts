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
import { DirFd, UnsafePath } from '../common/dir-fd.js';

export const LINK_ROOM = '.grimsel-links';

/** The roots whose room was emptied of what a grimseld killed mid-link left, in this process. */
const emptied = new Set<string>();

/**
 * The link room below `root` (a configured, trusted directory), made if missing and held (close it). Something else
 * under its name (a user's directory, file or link, made first on a `1777` ramdisk root) is renamed aside, said in
 * `aside`, and the room made anew: left, it would turn the room off for good (reviewer r5). Throws when the room
 * cannot be had all the same: the caller then makes the link where the original is, without giving it an owner or
 * time.
 */
export function openLinkRoom(root: string, aside: (was: string, now: string) => void = () => undefined): DirFd {
  const top = DirFd.open(root);
  let room: DirFd | undefined;
  try {
    for (let attempt = 0; room === undefined; attempt++) {
      try {
        top.mkdir(LINK_ROOM, 0o700);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let held: DirFd | undefined;
      try {
        held = top.walk(LINK_ROOM); // never through a link
        const st = fstatSync(held.fd);
        if (st.uid === process.getuid!() && (st.mode & 0o077) === 0) {
          room = held;
          break;
        }
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (!(e instanceof UnsafePath) && code !== 'ENOTDIR' && code !== 'ELOOP') throw e;
      }
      held?.close();
      if (attempt > 0) throw new Error(`${root}/${LINK_ROOM} is not grimseld's alone, and could not be made so`);
      const now = `${LINK_ROOM}.not-grimseld.${randomBytes(4).toString('hex')}`;
      top.rename(top.at(LINK_ROOM), now);
      aside(`${root}/${LINK_ROOM}`, `${root}/${now}`);
    }
  } finally {
    top.close();
  }
  if (!emptied.has(root)) {
    // Left by a grimseld killed between the symlink and the rename: links only grimseld could have made. Nothing
    // else is removed (a file copied there by a replicated path named so, say).
    for (const name of room.names()) {
      try {
        if (room.lstat(name)?.isSymbolicLink()) room.unlink(name);
      } catch { /* gone meanwhile */ }
    }
    emptied.add(root);
  }
  return room;
}

/** A name for one link in the room: unique to this attempt. */
export function roomName(id: number): string {
  return `${id}.${randomBytes(6).toString('hex')}`;
}

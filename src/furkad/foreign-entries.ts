// Entries someone else left where furkad keeps directories of its own (a target a user made first on a 1777
// ramdisk, a link at a name furkad needs): moved aside under a name that says whose they were, never used as
// furkad's, never deleted (F4, docs/threat-model.md "Directories, and whose they are").
import { createHash } from 'node:crypto';
import { fstatSync, type Stats } from 'node:fs';
import type { DirFd } from '../common/dir-fd.js';
import type { Logger } from '../common/logger.js';
import { NAME_MAX } from '../common/name-max.js';
import { MAX_NUMBERED, NO_HARD_LINKS } from '../common/numbered-name.js';

/** One entry moved aside: what it was, whose, and where it is now. */
export interface MovedAside {
  name: string;
  uid: number;
  type: string;
  to: string;
}

/**
 * `NAME.moved-aside-uidU` (then `NAME.moved-aside-uidU.~N~`): it says whose the entry was, and ends in no image
 * extension, so no processing tool's template or glob takes what is below it for the shift's. A name too long
 * for NAME_MAX is cut and followed by `~` and a hash of the whole, as numbered names are (name-max.ts).
 */
export function asideName(name: Buffer, uid: number, n: number): Buffer {
  const tag = Buffer.from(`.moved-aside-uid${uid}${n === 0 ? '' : `.~${n}~`}`);
  if (name.length + tag.length <= NAME_MAX) return Buffer.concat([name, tag]);
  const hash = `~${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
  return Buffer.concat([name.subarray(0, NAME_MAX - tag.length - hash.length), Buffer.from(hash), tag]);
}

/**
 * Moves entry `name` of `dir` (`st`, its lstat) aside, beside it under asideName(); returns what was done. Never
 * over another entry: a directory only in a directory only root can change (nothing takes the name between
 * the look and the rename), anything else with link(2), which never replaces, and the old name unlinked only
 * while it is still that entry (in a sticky ramdisk its owner may swap it meanwhile: then theirs stays).
 */
export function moveAside(dir: DirFd, name: Buffer, st: Stats): MovedAside {
  if (st.isDirectory() && !onlyRootChanges(dir)) throw new Error(`${dir.show(name)}: not moved aside in a directory others can write`);
  for (let n = 0; n <= MAX_NUMBERED; n++) {
    const to = asideName(name, st.uid, n);
    if (!take(dir, name, st, to)) continue;
    return { name: name.toString(), uid: st.uid, type: typeOf(st), to: dir.show(to.toString()) };
  }
  throw new Error(`${dir.show(name)}: every name to move it aside to is taken`);
}

/** Gives `st` (entry `name`) the name `to` if free (true). */
function take(dir: DirFd, name: Buffer, st: Stats, to: Buffer): boolean {
  if (st.isDirectory()) {
    if (dir.lstat(to)) return false;
    dir.rename(dir.at(name), to);
    return true;
  }
  try {
    dir.link(dir.at(name), to); // link(2) does not follow a final link: the link itself gets the name
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_HARD_LINKS.has(code)) throw e;
    if (dir.lstat(to)) return false;
    dir.rename(dir.at(name), to);
    return true;
  }
  const now = dir.lstat(name);
  if (now && now.ino === st.ino && now.dev === st.dev) dir.unlink(name);
  return true;
}

/** Whether only root can add, remove or rename entries of `dir` (root's, no group or other write). */
export function onlyRootChanges(dir: DirFd): boolean {
  const st = fstatSync(dir.fd);
  return st.uid === 0 && (st.mode & 0o022) === 0;
}

function typeOf(st: Stats): string {
  return st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symbolic link' : st.isFile() ? 'file' : 'special file';
}

/** Says what was moved aside, once, in one line: each entry's name, owner and new name (the first 20). */
export function sayMovedAside(log: Logger | undefined, where: string, moved: MovedAside[], why: string): void {
  if (moved.length === 0) return;
  const shown = moved.slice(0, 20).map((m) => `${m.name} (${m.type} of uid ${m.uid}) -> ${m.to}`).join(', ');
  const more = moved.length > 20 ? ` and ${moved.length - 20} more` : '';
  log?.warn({ dir: where, moved: moved.slice(0, 20), count: moved.length },
    `${why}: ${moved.length === 1 ? '' : `${moved.length} entries `}moved aside (kept, never used by furkad): ${shown}${more}`);
}

// A shift's directory below one target (F3, F4): created owned by the shift, never through a planted symlink, and
// every directory in it reached one component at a time and acted on through its open handle (docs/threat-model.md).
import { sameSizeAndMtime } from '../common/file-times.js';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, readSync, unlinkSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { DirFd, splitRel, type DirVisit, type TrustLink } from '../common/dir-fd.js';
import { moveAside, sayMovedAside, type MovedAside } from './foreign-entries.js';
import { claimProblem } from './shift-dir-claim.js';
import { candidateNames, NO_HARD_LINKS } from '../common/numbered-name.js';
import { takenDirOf, walkNumbered } from '../common/numbered-dirs.js';
import type { Logger } from '../common/logger.js';
import { readProvenance } from '../common/provenance.js';

/**
 * Why nothing here is done by path name below the target: the shift's user owns the usrdir and everything
 * below it, and can swap any directory there for a symbolic link at any moment (renameat2 RENAME_EXCHANGE in
 * a loop wins a check-then-rename window of microseconds within seconds: docs/threat-model.md). So every directory
 * is opened with O_NOFOLLOW from one already open (common/dir-fd.ts), and link/rename/lstat/fchown act on
 * one entry of an open directory: a swap after the open changes nothing about where a file lands, and a link
 * met on the way is refused.
 *
 * All file system calls here are synchronous on purpose: `/proc/self/fd/N/...` names whatever descriptor N is
 * at the moment of the call, so no call may be in flight when a handle is closed (close() may come from a
 * shift change). On the ramdisk each call takes microseconds, and a placing is a handful of them.
 */
export class ShiftDir {
  readonly root: string;
  /**
   * The shift's directory (the usrdir's last component, or the target without one), kept open from prepare() on.
   * Safe to keep for the shift's lifetime: prepare() leaves every directory above it up to the target root's
   * and writable by root alone, so its user cannot rename it away or put anything in its place. Directories
   * below it are the user's and are opened again for every file, never kept.
   */
  #dir: DirFd | undefined;
  /** No usrdir: the shift's files go straight into the target. */
  readonly #usrdirEmpty: boolean;

  /**
   * `target` is the real (unmarked) directory, `usrdir` the expanded one ('' = none); `replicatedFrom` the part of
   * the target before its './' (what grimseld does not replicate): the directories between it and the target
   * are shared by every shift too. `confinedTo` is where the detector's targets are confined (shift.ts
   * confinement()): the configuration's, the only path opened as it is; a target an operator asked for below
   * it is reached from there one component at a time.
   */
  constructor(readonly target: string, usrdir: string, readonly uid: number, readonly gid: number, private readonly log?: Logger,
    private readonly replicatedFrom?: string, private readonly confinedTo?: string) {
    this.root = path.join(target, usrdir);
    this.#usrdirEmpty = names(usrdir).length === 0;
  }

  /**
   * Creates the target (the administrator's) and the usrdir below it (F4), and keeps the shift's directory open.
   * Only the usrdir's last component is the shift's: the target and the usrdir's parents are shared by every
   * shift and stay root's, without group or other write, or the user of the first shift could make and delete
   * the directories of later ones (and grimseld mirrors these owners on the storages). One found owned by a
   * user, or writable by others, is given back to root, and what anyone put in it meanwhile is moved aside
   * (#rootOwned); a user's link or file at a name furkad needs there is moved aside too (#clearWay).
   */
  async prepare(): Promise<void> {
    this.close();
    this.#dir = this.#open();
  }

  /** Closes the shift's directory; a later place() opens it again (prepares) by itself. */
  close(): void {
    this.#dir?.close();
    this.#dir = undefined;
  }

  /**
   * The target, reached from the directory it is replicated from one component at a time, each shared directory
   * given back to root while open; then the usrdir's parents (root's) and the usrdir itself (the shift's).
   * Returns the shift's directory, open.
   */
  #open(): DirFd {
    const r = this.replicatedFrom;
    const from = r !== undefined && (isBelow(this.target, r) || path.relative(r, this.target) === '') ? r : this.target;
    const between = names(path.relative(from, this.target));
    const parents = names(path.relative(this.target, this.root));
    const last = parents.pop();
    // Which shared directory holds the shift's directory (-1: `from`, the target; with usrdir empty the target,
    // where the shift's own files are).
    const holder = between.length + parents.length - 1;
    const shared = (at: number) => (i: number): DirVisit => (d, st, made) => this.#rootOwned(d, st, made, at + i === holder);
    let target = this.#openTrusted(from);
    try {
      if (between.length === 0) this.#rootOwned(target, fstatSync(target.fd), false, holder === -1);
    } catch (e) {
      target.close();
      throw e;
    }
    target = this.#walk(target, between, shared(0), rootsLink);
    const parent = this.#walk(target, parents, shared(between.length));
    if (last === undefined) return parent;
    return this.#walk(parent, [last], () => (d, st, made) => {
      // Given to the shift only if everything in it is already the shift's (shift-dir-claim.ts): a directory named
      // like a shift's that was another shift's target (`.../1mf/960_960`, now the default target's shift 960:960)
      // holds root's staging and other shifts' files, which would be the user's to rename once it is theirs.
      const why = made ? undefined : claimProblem(st, this.uid, d.names(), (n) => d.lstat(n));
      if (why !== undefined) throw new Error(`${d.show()} ${why}, not given to a shift; choose another target or usrdir`);
      this.#shiftOwned(d, st, made);
    });
  }

  /**
   * Directory `parts` below `top` (closed on the way), made where missing, one component at a time: before each
   * is entered, a link or file of a user's in its place is moved aside (#clearWay); `visit(i)` is then called
   * for the i-th directory, open. `top` itself when `parts` is empty.
   */
  #walk(top: DirFd, parts: string[], visit: (i: number) => DirVisit | undefined, trust?: TrustLink): DirFd {
    let cur = top;
    parts.forEach((name, i) => {
      cur = DirFd.with(cur, (d) => {
        this.#clearWay(d, name);
        return d.walk(name, true, visit(i), trust);
      });
    });
    return cur;
  }

  /**
   * `dir` (the target's replicated-from part), made if missing. Opened by its path, links and all, when it is the
   * configured one; one an operator asked for below that (StartShift checked it as a real path, but a user who
   * owns a directory on the way could have swapped it for a link since) is walked to from the configured one,
   * following only root's links in directories only root can change, and owners left as they are.
   */
  #openTrusted(dir: string): DirFd {
    const base = this.confinedTo;
    if (base !== undefined && isBelow(dir, base)) {
      mkdirSync(base, { recursive: true });
      return this.#walk(DirFd.open(base), names(path.relative(base, dir)), () => undefined, rootsLink);
    }
    mkdirSync(dir, { recursive: true });
    return DirFd.open(dir);
  }

  /**
   * A name furkad needs as a directory in `dir` holds something of a user's that is not a directory (a link, a
   * file): moved aside, so that furkad makes its own there, when `dir` is one only root can change (or a sticky
   * one of root's, such as a 1777 ramdisk, where the name is furkad's configured target). Anywhere else (a
   * user's own directory) it stays and is refused, as a link always is.
   */
  #clearWay(dir: DirFd, name: string): void {
    const st = dir.lstat(name);
    if (!st || st.isDirectory() || st.uid === 0) return;
    const d = fstatSync(dir.fd);
    if (d.uid !== 0 || ((d.mode & 0o022) !== 0 && (d.mode & 0o1000) === 0)) return;
    sayMovedAside(this.log, dir.show(), [moveAside(dir, Buffer.from(name), st)],
      `${dir.show(name)}, where furkad needs a directory of its own, is a user's ${st.isSymbolicLink() ? 'symbolic link' : 'file'}`);
  }

  /**
   * Makes sure a directory all shifts share is root's and writable by root only, on the open handle: the user
   * who owned it can neither swap it meanwhile nor, once it is root's, rename anything in it any more. Anything
   * may have been put into it while it was not (a user who made the target first on a 1777 ramdisk, with the
   * shift directories, staging, links named like later shifts' directories in it): every entry not root's is
   * moved aside, except the shift's own directory when it is the shift's (`holdsShift`: `dir` holds it).
   */
  #rootOwned(d: DirFd, st: Stats, made: boolean, holdsShift = false): void {
    if (made || (st.uid === 0 && st.gid === 0 && (st.mode & 0o022) === 0)) return;
    this.log?.warn({ dir: d.show(), uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8) },
      `${d.show()} is shared by every shift but was not root's alone: given back to root, without group and other write`);
    fchownSync(d.fd, 0, 0);
    // Looked at again once root's: its owner could have changed the mode until the chown.
    const now = fstatSync(d.fd);
    if ((now.mode & 0o022) !== 0) fchmodSync(d.fd, now.mode & 0o7755);
    const last = path.basename(this.root);
    const moved: MovedAside[] = [];
    for (const name of d.list()) {
      const e = d.lstat(name);
      if (!e || e.uid === 0) continue;
      // The shift's own: its directory, or with usrdir empty what it has in the target (no other user can make
      // an entry theirs).
      const shifts = holdsShift && e.uid === this.uid && e.gid === this.gid && (this.#usrdirEmpty || (e.isDirectory() && name.toString() === last));
      if (!shifts) moved.push(moveAside(d, name, e));
    }
    sayMovedAside(this.log, d.show(), moved, `${d.show()} was open to others until furkad gave it back to root: what is in it that is ` +
      "neither root's nor the shift's own directory");
  }

  /**
   * A directory this shift made, or one of an earlier shift of the same name, belongs to the shift. One another
   * user had (left from when the directory above it was open, or an earlier shift's of another user with the
   * same usrdir) is given the shift's owner and then no group or other write, so that it never stays a
   * directory its former owner, or anyone, can change the shift's files in; its mode is the shift user's
   * business only once it is theirs.
   */
  #shiftOwned(d: DirFd, st: Stats, made: boolean): void {
    if (!made && st.uid === this.uid && st.gid === this.gid) return;
    fchownSync(d.fd, this.uid, this.gid);
    if (made || st.uid === this.uid) return;
    const now = fstatSync(d.fd);
    if ((now.mode & 0o022) === 0) return;
    fchmodSync(d.fd, now.mode & 0o7755);
    this.log?.warn({ dir: d.show(), uid: st.uid, gid: st.gid, mode: (now.mode & 0o7777).toString(8) },
      `${d.show()} was uid ${st.uid}'s and writable by ${(now.mode & 0o002) !== 0 ? 'everyone' : 'its group'}: given to the shift (${this.uid}:${this.gid}) without group and other write`);
  }

  /**
   * Moves a complete file from staging to `rel` below the shift's directory, creating its parents (F2, F3),
   * and returns the name it has there. A different file already under `rel` (an earlier shift's of the same
   * usrdir, a detector that restarted its numbering) is never replaced: the new one goes beside it as
   * `rel.~1~` (or the next free number, numbered-name.ts), with a warning naming both. Nor is a file holding
   * the name of a directory on the way: the directory gets the numbered name (`Y.~1~/g.img`, numbered-dirs.ts).
   * A file there with the staged one's size and mtime is the same file placed again (furkad was killed after placing it): the
   * staged copy is dropped and that name returned. link() takes a name only when it is free, atomically, and
   * never writes through a link planted under it, as rename() would. `staged` is in root-only staging: a path
   * used as it is, or a file below a root (`{ root, rel }`), reached through its open directory, so that one whose
   * full path is longer than PATH_MAX is placed all the same (left in staging by an earlier furkad).
   */
  async place(staged: string | StagedFile, rel: string): Promise<string> {
    const [dirRel, base] = splitRel(rel);
    if (typeof staged === 'string') return this.#placeFrom(staged, rel, dirRel, base);
    // Held until placed: what fails names the staged file's directory as it is (DirFd.with).
    const held = openStaged(staged);
    return DirFd.with(held.dir, (d) => this.#placeFrom(d.at(held.name), rel, dirRel, base));
  }

  #placeFrom(staged: string, rel: string, dirRel: string, base: string): string {
    const u = this.#dir ??= this.#open();
    try {
      return this.#placeIn(u, staged, rel, dirRel, base);
    } catch (e) {
      // The shift's directory itself was deleted (by root: its user cannot): made again, and tried once more.
      if (fstatSync(u.fd).nlink !== 0) throw e;
      this.close();
      return this.#placeIn(this.#dir = this.#open(), staged, rel, dirRel, base);
    }
  }

  #placeIn(u: DirFd, staged: string, rel: string, dirRel: string, base: string): string {
    // Opened again for every file, each component without following links: the user may have swapped any of them.
    // A name on the way that a file holds (the detector wrote a file Y, then a directory Y/) is numbered like a
    // file's (`Y.~1~/`, common/numbered-dirs.ts): the file Y stays, and this one is placed at once, not retried.
    const into = dirRel === '' ? { dir: u, rel: '' } : walkNumbered(u, dirRel, true, (d, st, made) => this.#shiftOwned(d, st, made));
    const { dir } = into;
    try {
      let st: Stats | undefined; // read only when a name is taken: the usual placing is link + unlink (F9)
      for (const name of candidateNames(base)) {
        const placed = path.join(into.rel, name);
        if (this.#take(staged, dir, name)) return this.#placed(rel, placed);
        const there = dir.lstat(name);
        // Gone between the two calls (grimseld cleaned up an earlier shift's file): the name is free again.
        if (!there && this.#take(staged, dir, name)) return this.#placed(rel, placed);
        if (!there) continue;
        st ??= lstatSync(staged);
        if (!sameFile(there, st) || !sameContent(staged, st, dir, name, there)) continue;
        try {
          unlinkSync(staged);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
        return placed;
      }
      throw new Error(`cannot place ${rel}: it and all its numbered names are taken`);
    } finally {
      if (dir !== u) dir.close();
    }
  }

  /**
   * Whether a regular file of `size` bytes and mtime `mtimeMs` (±1 ms: times pass through a double) sits at `rel`
   * or one of its numbered names below the shift directory `root`: one furkad placed before it was killed,
   * found again after a restart. With `checksum`, only one whose provenance (I3) has it: another version of the
   * same size and mtime (rewritten within a tick of the detector's clock) is not it. Read only, through open
   * directory handles (the user owns them); false on any doubt.
   */
  static holds(root: string, rel: string, size: number, mtimeMs: number, checksum?: string): boolean {
    let held: { dir: DirFd; name: string };
    try {
      // Where placing puts it: a directory on the way numbered where a file holds its name (numbered-dirs.ts).
      const [dirRel, name] = splitRel(rel);
      held = { dir: DirFd.with(DirFd.open(root), (top) => walkNumbered(top, dirRel, false).dir), name };
    } catch {
      return false;
    }
    try {
      for (const name of candidateNames(held.name)) {
        const st = held.dir.lstat(name);
        if (!st) return false;
        if (!st.isFile() || st.size !== size || Math.abs(st.mtimeMs - mtimeMs) > 1) continue;
        if (checksum === undefined || checksumOf(held.dir, name, st) === checksum) return true;
      }
      return false;
    } catch {
      return false;
    } finally {
      held.dir.close();
    }
  }

  /** Says so when a file got a numbered name; returns the name. */
  #placed(rel: string, name: string): string {
    if (name === rel) return name;
    const [want, got, dir] = [path.join(this.root, rel), path.join(this.root, name), takenDirOf(rel, name)];
    if (dir === undefined) {
      this.log?.warn({ file: want, placedAs: got }, `${want} holds another file: the new one is placed beside it as ${got}, both kept`);
    } else {
      const taken = path.join(this.root, dir);
      this.log?.warn({ file: want, placedAs: got, taken },
        `${taken} is a file, not a directory: it is kept, and ${want} is placed as ${got}`);
    }
    return name;
  }

  /** Gives `staged` the name `name` in `dir` if it is free (true); false when something is there. */
  #take(staged: string, dir: DirFd, name: string): boolean {
    try {
      dir.link(staged, name);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST') return false;
      if (!NO_HARD_LINKS.has(code)) throw e;
      // No hard links here: check, then rename (a window of microseconds, see NO_HARD_LINKS). Still in the
      // open directory: a link planted in the window is replaced, never followed.
      if (dir.lstat(name)) return false;
      dir.rename(staged, name);
      return true;
    }
    unlinkSync(staged);
    return true;
  }
}

/** A staged file: `rel` below `root` (staging, or where a shift's files are kept), both root's alone. */
export interface StagedFile {
  root: string;
  rel: string;
}

/** The open directory of a staged file and its name there; ENOENT when that directory is gone. */
function openStaged(f: StagedFile): { dir: DirFd; name: string } {
  const held = DirFd.openParent(f.root, f.rel);
  if (held) return held;
  throw Object.assign(new Error(`${path.join(f.root, f.rel)}: its directory is gone`), { code: 'ENOENT' });
}

/** Whether staged file `f` is still there (false also when its directory is gone). Any depth. */
export function stagedExists(f: StagedFile): boolean {
  let held: { dir: DirFd; name: string } | undefined;
  try {
    held = DirFd.openParent(f.root, f.rel);
    return held?.dir.lstat(held.name) !== undefined;
  } catch {
    return false;
  } finally {
    held?.dir.close();
  }
}

/**
 * A link on the way to the target may be followed only when it is root's own in a directory that only root
 * can change (root's, and writable by no one else or sticky): the administrator's, not a user's. A user who
 * owned a shared directory before it was given back to root cannot have changed the link since: the
 * directory is given back while open, before its entries are looked at.
 */
function rootsLink(dir: DirFd, link: Stats): boolean {
  const st = fstatSync(dir.fd);
  return link.uid === 0 && st.uid === 0 && ((st.mode & 0o022) === 0 || (st.mode & 0o1000) !== 0);
}

/**
 * Whether the file at `name` (`there`, of the staged file's size and mtime) has the staged file's content. The
 * same size and mtime may still be another version: a file rewritten in place within one tick of the detector's
 * coarse clock (furka-agent gives it a new id), which must go beside the first, not be dropped as that one
 * placed again. The same inode is the same file; otherwise the provenance checksums (I3) decide where both have
 * one, else the bytes. One that cannot be read (gone, swapped, leased by its user) is not taken as the same:
 * a second copy beside it is better than a version lost.
 */
function sameContent(staged: string, st: Stats, dir: DirFd, name: string, there: Stats): boolean {
  if (there.ino === st.ino && there.dev === st.dev) return true;
  const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  const open = (how: () => number, expected: Stats): number | undefined => {
    let fd: number | undefined;
    try {
      fd = how();
      // The file looked at, not one swapped in since (the directory is the user's).
      const now = fstatSync(fd);
      if (now.isFile() && now.ino === expected.ino && now.dev === expected.dev && now.size === expected.size) return fd;
    } catch { /* not readable: not the same */ }
    if (fd !== undefined) closeSync(fd);
    return undefined;
  };
  const mine = open(() => openSync(staged, flags), st);
  const theirs = mine === undefined ? undefined : open(() => dir.openFile(name, flags), there);
  try {
    if (mine === undefined || theirs === undefined) return false;
    const sum = (fd: number): string | undefined => {
      try {
        return readProvenance(fd)?.checksum || undefined;
      } catch {
        return undefined;
      }
    };
    const [a, b] = [sum(mine), sum(theirs)];
    if (a !== undefined && b !== undefined) return a === b;
    return sameBytes(mine, theirs, st.size);
  } finally {
    if (mine !== undefined) closeSync(mine);
    if (theirs !== undefined) closeSync(theirs);
  }
}

/** The provenance checksum (I3) of regular file `name` in `dir` (as `st` says it is), undefined on any doubt. */
function checksumOf(dir: DirFd, name: string, st: Stats): string | undefined {
  let fd: number | undefined;
  try {
    fd = dir.openFile(name, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const now = fstatSync(fd);
    if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) return undefined;
    return readProvenance(fd)?.checksum || undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Whether two open files hold the same `size` bytes (rare: a name taken by a file of the same size and mtime). */
function sameBytes(a: number, b: number, size: number): boolean {
  const chunk = Math.min(size, 1 << 20);
  if (chunk === 0) return true;
  const [x, y] = [Buffer.allocUnsafe(chunk), Buffer.allocUnsafe(chunk)];
  for (let at = 0; at < size; at += chunk) {
    const n = Math.min(chunk, size - at);
    if (readSync(a, x, 0, n, at) !== n || readSync(b, y, 0, n, at) !== n) return false;
    if (!x.subarray(0, n).equals(y.subarray(0, n))) return false;
  }
  return true;
}

/** The components of relative path `rel` ('' and '.' left out). */
function names(rel: string): string[] {
  return rel.split('/').filter((p) => p !== '' && p !== '.');
}

/** `p` is below `base` (not `base` itself). */
function isBelow(p: string, base: string): boolean {
  const rel = path.relative(base, p);
  return rel !== '' && rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel);
}

/** The same file: the same inode, or a regular file of the same size and mtime by G3's measure (common/file-times.ts). */
function sameFile(a: Stats, b: Stats): boolean {
  return a.isFile() && (a.ino === b.ino && a.dev === b.dev || sameSizeAndMtime(a, b));
}

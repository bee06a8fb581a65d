// The directories a batch of copies reads from and writes into (G3, G4; docs/threat-model.md): each reached
// from a trusted directory one component at a time without following links (common/dir-fd.ts), held open
// for the batch, and every file of the batch read or written relative to the handle. A user who swaps a
// directory of theirs for a link after it was opened changes nothing about where the copies go: the handle
// is the directory, wherever it is now. The storage directories get their owners through the handle too.
import { fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, statSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { components, DirFd, type DirVisit } from '../common/dir-fd.js';
import { walkNumbered, type NumberedDir } from '../common/numbered-dirs.js';

/**
 * Who owns the directory at `index` below the storage target on the way to a copy's directory: [uid, gid]
 * (-1 keeps that one); `{ uid }`, another user's, as its counterpart on the source side is (a usrdir holding
 * a file of someone else's: the copy changes nothing about whose directory it is); or undefined for root (a
 * directory several shifts share, G3, F4).
 */
export type DirOwnerOf = (index: number) => [number, number] | { uid: number } | undefined;

/**
 * A walk's visit that gives each directory on the way the owner `ownerOf` gives it, but never hands a
 * directory it found to a user: one made now gets its owner (one found owned by that user gets the group
 * back, if someone changed it); one found that is another's is root's from then on (unless it is the user's
 * whose its source counterpart is, `{ uid }`: it stays theirs), as is one that must be root's and is not (made
 * by the user of an earlier shift, before shared directories were root's): it loses its group and other write
 * bits too. Otherwise a user's tree added
 * by an operator (`AddFile a/./1mf/500_501/x`, all of it the user's) would give that user the shared
 * per-detector directory and other users' directories on the storage, to empty or rename; and a directory a
 * user made first would hold the copies of the shift it is named after. fchown and fchmod act on the
 * directory held, so nothing swapped in meanwhile can receive them.
 *
 * `byOperator`: the copy of a file an operator added (AddFile by a uid other than 0). Its tree is theirs to
 * shape, so a directory found there that is a user's is never changed (RefusedDir instead of taking it for
 * root): an operator's `AddFile /tmp/op/./1mf/1001_1001/run1/img_00001.cbf` made user 1001's storage directories
 * root's `0755`, locking 1001 out of them, and put the operator's file where 1001's image was to go (hostile
 * tester h6). One found of the file's owner is left as it is, its group too.
 */
export function ownerVisit(ownerOf: DirOwnerOf, byOperator = false): DirVisit {
  return (dir, st, made, i) => {
    const owner = ownerOf(i);
    // Found the user's whose the source side's is: theirs it stays (taking it would lock them out of their data).
    if (owner && !Array.isArray(owner)) {
      if (!made && st.uid === owner.uid) return;
    } else if (owner) {
      const [uid, gid] = owner;
      if ((uid === -1 || st.uid === uid) && (gid === -1 || st.gid === gid)) return;
      // Made now, or found already the file owner's (its group aside: the shift's group is given back): no
      // directory of someone else's changes hands.
      if (made || (uid !== -1 && st.uid === uid)) {
        if (!made && byOperator) return;
        fchownSync(dir.fd, uid, gid);
        return;
      }
    }
    if (st.uid === 0 && st.gid === 0 && (st.mode & 0o022) === 0) return;
    if (byOperator && st.uid !== 0) {
      throw new RefusedDir(`${dir.show()} is uid ${st.uid}'s, not the owner's of the directory it stands for in the added path: ` +
        "an operator's AddFile neither takes a user's directory on a storage nor writes into it");
    }
    fchownSync(dir.fd, 0, 0);
    if ((st.mode & 0o022) !== 0) fchmodSync(dir.fd, st.mode & 0o7755);
  };
}

/** A source directory held for a batch, with the stats of the directories from the trusted root to it. */
export interface SourceDir {
  dir: DirFd;
  /** The directory `j` levels below the root (-1: the root, -2: its parent, …); undefined above '/' (or without stats). */
  statAt(j: number): Stats | undefined;
  /** How many directories below the root it is. */
  depth: number;
}

/**
 * Owners of the directories a copy goes into, with preserve_uid/gid (G3, G4): each mirrors its counterpart on
 * the source side. A directory whose source counterpart belongs to the file's owner (the shift's usrdir and
 * what is below it, which furkad gives the shift) is the owner's; any other (the per-detector directory, a
 * usrdir's parents, which furkad keeps root's; an operator's directory owned by someone else) is root's, so
 * a user never owns a directory that another shift's copies go into. grimseld needs no knowledge of usrdir
 * for this; an `AddFile` path is treated alike. The counterpart of the storage directory `index` levels
 * below the target is found by going up from the source's directory as far as the copy's directory is
 * below the target; the source side's stats are those of the directories held (fstat), not paths looked up again.
 */
export function ownersAsSource(src: SourceDir, destDepth: number, file: Stats, owner: [number, number]): DirOwnerOf {
  return (index) => {
    const st = src.statAt(src.depth - destDepth + index);
    if (!st?.isDirectory() || st.uid === 0) return undefined;
    return st.uid === file.uid && st.gid === file.gid ? owner : { uid: st.uid };
  };
}

/**
 * A directory on a storage that an operator's copy may not go into (ownerVisit, `byOperator`; copier.ts): another
 * user's, or a shared one of root's for a user's file. The copy fails for good and nothing there is changed.
 */
export class RefusedDir extends Error {}

/**
 * The storage's mount point no longer has the device the check before the batch found mounted there (G13):
 * unmounted (or mounted over) since. Nothing is written; the copy waits for the next check.
 */
export class NotMounted extends Error {}

/**
 * What is at a storage's mount point: the device and the inode of the directory seen there. The inode tells a bind
 * mount of a directory from the bare mount point beneath it on the same file system (the same device), which the
 * device alone did not: after a `umount -l` of such a bind, copies went on into the bare directory (G13).
 */
export type MountId = string;

/** The MountId of a stat of a mount point. */
export function mountIdOf(st: Pick<Stats, 'dev' | 'ino'>): MountId {
  return `${st.dev}:${st.ino}`;
}

/** A storage's mount point and what was found mounted there (CopyJob.mount). */
export interface MountedAt {
  point: string;
  device: MountId;
}

/** Throws NotMounted unless `mount` (when given) still has its device: stat'ed now, by name. */
function stillMounted(mount: MountedAt | undefined, what: string): void {
  if (!mount) return;
  const st = statSync(mount.point, { throwIfNoEntry: false });
  const now = st && mountIdOf(st);
  if (now !== mount.device) {
    throw new NotMounted(`${mount.point} is no longer the file system found mounted there (device:inode ${mount.device}, now ${now ?? 'gone'}): ` +
      `unmounted since? nothing written to ${what}`);
  }
}

/** Handles held for one batch, by what they were opened for; closed together at its end. */
export class HeldDirs {
  #held = new Map<string, DirFd>();
  #sources = new Map<string, SourceDir>();
  #storages = new Map<string, NumberedDir>();

  /** `stats`: source directories are walked keeping their stats, for ownersAsSource (preserve_uid/gid). */
  constructor(private readonly stats: boolean) {}

  /**
   * The trusted directory `root` (a configured ramdisk or storage target, or the directory before an
   * operator's `./`), opened as named: links in it are the administrator's. With `make`, created if missing.
   * With `mount` (a storage with a mount point, G13), opened or made only while the mount point still has the
   * device the batch was handed out for: never on the bare mount point of a storage unmounted since. The mount
   * point is compared, not the target: a target may lie on a file system of its own below it.
   */
  root(root: string, make = false, mount?: MountedAt): DirFd {
    const key = `r\0${root}`;
    let d = this.#held.get(key);
    if (!d) {
      try {
        d = DirFd.open(root);
      } catch (e) {
        if (!make || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        // Not made on the bare mount point of a storage unmounted since (but in the microseconds between this
        // look and the mkdir, when an empty directory could still be made there; nothing is written into it).
        stillMounted(mount, root);
        mkdirSync(root, { recursive: true, mode: 0o755 });
        d = DirFd.open(root);
      }
      this.#held.set(key, d);
      // Still mounted once the target is open: the directory held for the batch is the mounted one's (an
      // unmount and a new mount of the same device between the open and this look aside), and holding it
      // makes a plain umount fail as busy until the batch is done.
      try {
        stillMounted(mount, root);
      } catch (e) {
        this.#held.delete(key);
        d.close();
        throw e;
      }
    }
    return d;
  }

  /** Directory `rel` below the trusted `root`, reached without following links. */
  source(root: string, rel: string): SourceDir {
    const key = `${root}\0${rel}`;
    const had = this.#sources.get(key);
    if (had) return had;
    const top = this.root(root);
    const chain: Stats[] = [];
    const dir = top.walk(rel, false, this.stats ? (_d, st) => { chain.push(st); } : undefined);
    this.#held.set(`s\0${key}`, dir);
    let rootStat: Stats | undefined;
    const held: SourceDir = {
      dir,
      depth: depthOf(rel),
      statAt: (j) => {
        if (j >= 0) return chain[j];
        if (j === -1) return (rootStat ??= fstatSync(top.fd));
        // Above the trusted root: the administrator's directories, looked up by name.
        let p = root;
        for (let up = j; up < -1; up++) {
          const parent = path.dirname(p);
          if (parent === p) return undefined;
          p = parent;
        }
        return lstatSync(p, { throwIfNoEntry: false });
      },
    };
    this.#sources.set(key, held);
    return held;
  }

  /**
   * Directory `rel` below the storage target `base` (created if missing), made where missing, each directory
   * on the way passed to `visit` (ownerVisit) when given; `key` tells visits for different owners apart.
   * A name on the way that a file holds is numbered (`Y.~1~`, common/numbered-dirs.ts): the path returned with
   * the directory is the one it has. `mount`: the storage's mount point must still be mounted (G13; see
   * root()), checked when the target is opened.
   */
  storage(base: string, rel: string, visit?: DirVisit, key = '', mount?: MountedAt): NumberedDir {
    const k = `d\0${base}\0${rel}\0${key}`;
    let d = this.#storages.get(k);
    if (!d) {
      d = walkNumbered(this.root(base, true, mount), rel, true, visit);
      this.#held.set(k, d.dir);
      this.#storages.set(k, d);
    }
    return d;
  }

  close(): void {
    for (const d of this.#held.values()) d.close();
    this.#held.clear();
    this.#sources.clear();
    this.#storages.clear();
  }
}

/** How many directories `rel` has below its base. */
export function depthOf(rel: string): number {
  return components(rel).length;
}

// Where files enter grimseld: furkad's deliveries and operators' additions (G2, G8). Checks first,
// then journals, then queues: when a caller is answered, the files are grimseld's responsibility (G12).
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { DirFd, UnsafePath } from '../common/dir-fd.js';
import { hasControl, isSafeRelative, splitMarked, unmark } from '../common/paths.js';
import type { Logger } from '../common/logger.js';
import type { Catalog, NewFile } from './catalog.js';
import type { Dispatcher } from './dispatcher.js';
import type { MessageHub } from './messages.js';
import type { DeliveredFile } from '../dbus/intake-interface.js';
import { untagged } from '../common/checksum.js';
import { NotReadable, statAsCaller, type Caller } from './caller-access.js';
import type { StateDirRoom } from './state-room.js';
import { answers } from './mount-watch.js';
import { probedAt, type StorageInfo } from './storage-info.js';
import { LINK_ROOM } from './link-room.js';
import { MARK_FILE } from './storage-marks.js';

/** How many added paths are checked at once. */
const INSPECT_AT_ONCE = 64;

/** A path refused at the door: the message names the path and the reason. */
export class RejectedPath extends Error {}
/** A file that could not be looked at for a reason of grimseld's own (out of descriptors): not refused, asked again. */
class NotNow extends Error {}

/** Half a UTF-16 surrogate pair on its own: no file name, and not storable as UTF-8 (path-table.ts). */
const LONE_SURROGATE = /\p{Cs}/u;

/** Checks a marked path and returns its real path and the part to replicate. Throws RejectedPath. */
export function checkMarkedPath(p: string): { src: string; rel: string } {
  if (typeof p !== 'string' || p === '') throw new RejectedPath('empty path');
  if (hasControl(p)) throw new RejectedPath(`path ${JSON.stringify(p)} contains control characters`);
  if (LONE_SURROGATE.test(p)) throw new RejectedPath(`path ${JSON.stringify(p)} is not valid Unicode`);
  if (!p.startsWith('/')) throw new RejectedPath(`path '${p}' is not absolute`);
  // The path must end with the file's name: '/d/f1/.' would be file f1 with nothing to replicate ('.'), whose
  // copy would be the storage target itself, retried for ever.
  if (/\/\.\/*$/.test(p)) {
    throw new RejectedPath(`path '${p}': its './' marker is at its end, after the file's name, so nothing after it names the file; ` +
      `put the marker before the part to replicate, e.g. '/some_dir/./path/to/file'`);
  }
  if (p.endsWith('/')) throw new RejectedPath(`path '${p}' ends in '/': it names a directory, not a file`);
  if (p.endsWith('/..')) throw new RejectedPath(`path '${p}' ends in '..': it names a directory, not a file`);
  const { rel } = splitMarked(p);
  if (!isSafeRelative(rel)) throw new RejectedPath(`path '${p}': the part after './' must stay below it ('${rel}')`);
  // Each storage's target holds grimseld's own link room and disk mark under these names: a copy replicated under
  // one would go into the room (or make it, where it is missing, the file owner's: grimseld then renames it aside,
  // copies and all) or over the mark.
  const first = rel.split('/')[0]!;
  if (first === LINK_ROOM || first === MARK_FILE) {
    throw new RejectedPath(`path '${p}': '${first}' right after './' is a name grimseld keeps for itself in each storage's target ` +
      `(${first === LINK_ROOM ? 'its link room' : "its mark of the storage's disk"}); rename it, or put the './' before a directory above it`);
  }
  return { src: unmark(p), rel };
}

/** Where a file not taken yet is reached from without following links (Catalog.sourceRootOf). */
type RootOf = (src: string, rel: string) => string;

/**
 * A checked path plus what the file is now: found as the copier will open it (copier.ts), from the trusted
 * directory `rootOf` gives (the ramdisk `target` for a file on the ramdisk) one directory at a time without
 * following a link, and looked at (lstat) in the directory held, so a symbolic link there is not a file to copy.
 * A link or a file anywhere on the way is refused without a look behind it: its root-only directory would
 * otherwise tell the shift's user, through the answer (a message anyone can read), which names it holds, and
 * the journal would record another file than theirs (docs/threat-model.md). A first filter only: a user who owns
 * a directory on the way can change it right after; the copy, link or deletion checks again on the handle it
 * uses that the file is this one (its inode: copier.ts, reclaimer.ts). For a `caller` who is not root, the
 * file is what that caller could read (caller-access.ts), and its inode the one checked: the copier copies
 * that inode or nothing.
 */
async function inspect(p: string, rootOf: RootOf, caller?: Caller, needsOwnDir: NeedsOwnDir = async () => false): Promise<NewFile> {
  const { src, rel } = checkMarkedPath(p);
  if (caller) {
    const seen = statAsCaller(src, caller);
    // A user's file with nothing of its path replicated would be copied straight into each storage's target, which
    // every shift shares: with owners kept, each copy would fail for good (copier.ts), said only as COPY_ERRORs.
    if (seen.uid !== 0 && !rel.includes('/') && await needsOwnDir(seen.uid)) {
      throw new RejectedPath(`'${src}' is uid ${seen.uid}'s, and nothing of its path is replicated (no directory after its './', or no './'): ` +
        "its copy would go straight into each storage's target, which every shift shares, and an operator's AddFile puts a user's file " +
        "only into a directory of that user's. Put the './' before a directory of theirs (/home/u/./run1/f.img)");
    }
    // And reached as the copier reaches it, from the part before './' without following a link: one on the way (the
    // caller's own `link -> real`) was taken, then refused by every copy, counted failed for good (found by a hostile
    // tester). Looked at only once the caller is known to reach the file: nothing it could not see is told.
    const st = lookAt(rootOf(src, rel), src);
    if (!st || st.ino !== seen.ino || st.dev !== seen.dev) throw new RejectedPath(`'${src}' changed while it was looked at; add it again`);
    // Copied only: the caller may read it, which says nothing of whether they may delete it (G5, G6).
    return { src, rel, size: seen.size, mtimeMs: seen.mtimeMs, ino: seen.ino, dev: seen.dev, copyOnly: true };
  }
  const st = lookAt(rootOf(src, rel), src);
  if (!st) throw new RejectedPath(`file '${src}' does not exist`);
  if (st.isSymbolicLink()) throw new RejectedPath(`'${src}' is a symbolic link, not a regular file`);
  if (!st.isFile()) throw new RejectedPath(`'${src}' is not a regular file`);
  return { src, rel, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev };
}

/** See Intake's `needsOwnDir`. */
export type NeedsOwnDir = (uid: number) => Promise<boolean>;

/**
 * Whether every storage would refuse an operator's copy of user `uid`'s file straight into its target (the copier's
 * rule: owners kept, and the target not that user's; copy-dirs.ts), so that the AddFile is refused at once. A target
 * missing, or on a storage whose mount point does not answer (the probe the fill guards share, so that a hung NFS
 * server holds one of libuv's threads, not one per AddFile), counts as not refusing: the file is taken, and its
 * copies decide.
 */
export async function everyTargetRefuses(storages: ReadonlyArray<Pick<StorageInfo, 'id' | 'target' | 'mountpoint'>>, keepsUid: (id: string) => boolean,
  uid: number): Promise<boolean> {
  const refuses = await Promise.all(storages.map(async (s) => {
    if (!keepsUid(s.id) || !(await answers(probedAt(s)))) return false;
    const st = await stat(s.target).catch(() => undefined);
    return st !== undefined && st.uid !== uid;
  }));
  return refuses.every(Boolean);
}

/** Errors of looking at a file that say nothing of the file: the look is tried again, not the file refused. */
const TRANSIENT = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN', 'EINTR', 'EIO']);

/** lstat of `src` reached from `root` without following links (see inspect); undefined when it or a directory on the way is missing. */
function lookAt(root: string, src: string): Stats | undefined {
  let held: { dir: DirFd; name: string } | undefined;
  try {
    held = DirFd.openParent(root, path.relative(root, src));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // the root itself: nothing below it either
    if (e instanceof UnsafePath) {
      throw new RejectedPath(`'${src}': its path holds a symbolic link or a file where a directory should be, never followed (${e.message})`);
    }
    // grimseld out of descriptors or memory, an I/O error: nothing is known of the file yet, and it is not refused
    // for that (counted failed, never copied); the delivery fails and furkad hands it over again (G12).
    if (TRANSIENT.has((e as NodeJS.ErrnoException).code ?? '')) throw new NotNow(`cannot look at '${src}' now: ${(e as Error).message}`);
    throw new RejectedPath(`'${src}' cannot be looked at: ${(e as Error).message}`);
  }
  if (!held) return undefined;
  const { name } = held;
  return DirFd.with(held.dir, (d) => d.lstat(name));
}

/** A path addMany() did not take, and why; `notReadable` when the caller may not read it (caller-access.ts). */
export interface Refusal {
  path: string;
  reason: string;
  notReadable?: true;
}

export class Intake {
  /** Directories outside the ramdisk directory that deliveries came from, reported once per shift each. */
  #reportedOutside = new Set<string>();
  /** Where a file is looked at from (inspect): as the copier reads it. */
  readonly #rootOf: RootOf = (src, rel) => this.catalog.sourceRootOf(src, rel);

  constructor(
    private readonly catalog: Catalog,
    private readonly dispatcher: Dispatcher,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly onShift: (usertime: bigint) => void,
    /** Files were delivered for a shift that is not the newest one (G5). */
    private readonly onEarlierShift: () => void = () => undefined,
    /** Says a full state_dir (state-room.ts); without it, the journal's error goes to the caller as it is. */
    private readonly room?: StateDirRoom,
    /**
     * Whether every storage would refuse an operator's file of user `uid` straight in its target (it keeps owners,
     * and its target is not that user's; copier.ts): such an AddFile is refused at once.
     */
    private readonly needsOwnDir?: NeedsOwnDir,
  ) {}

  /** A journal write (state-room.ts): a full state_dir said once, and named to the caller; `wrote`: see writing(). */
  #journaled<T>(write: () => Promise<T>, wrote = true): Promise<T> {
    return this.room ? this.room.writing(write, wrote) : write();
  }

  async shiftStarted(usertime: bigint, uid: number, gid: number): Promise<void> {
    if (await this.#journaled(() => this.catalog.shift(usertime, uid, gid), false)) {
      this.log.info({ usertime: String(usertime), uid, gid }, 'shift started');
      this.#reportedOutside.clear();
      this.onShift(usertime);
    }
  }

  /**
   * Files furkad has put on the ramdisk; they are queued for every storage (G2), each with the checksum it
   * arrived with and its detector, kept in its record (I1).
   */
  async delivered(usertime: bigint, uid: number, gid: number, delivered: DeliveredFile[]): Promise<void> {
    const files: NewFile[] = [];
    const refused: Refusal[] = [];
    for (const [p, checksum, detector] of delivered) {
      try {
        files.push({ ...await inspect(p, this.#rootOf), ...this.#provenance(p, checksum, detector) });
      } catch (e) {
        // Not a verdict on the file (lookAt: out of descriptors): the whole delivery fails, furkad hands it over again.
        if (e instanceof NotNow) throw e;
        refused.push({ path: p, reason: (e as Error).message });
      }
    }
    // The shift right before its files are counted: an earlier shift the status had let go is begun again here,
    // and the status could let it go again while the files were looked at.
    await this.shiftStarted(usertime, uid, gid);
    await this.#refuse(usertime, refused);
    this.#reportOutside(files);
    this.dispatcher.submit(await this.#journaled(() => this.catalog.accept(usertime, files), files.length > 0));
    if (files.length > 0 && usertime !== this.catalog.currentShift?.usertime) this.onEarlierShift();
  }

  /**
   * Delivered files refused at the door: their sources are already gone from the detector, so each is counted
   * failed on every storage of its shift (G9; journaled, once per path however often furkad hands it over) and
   * said to subscribers (G10) as a failed copy is, once per storage, short message `src:dest`.
   */
  async #refuse(usertime: bigint, refused: Refusal[]): Promise<void> {
    if (!refused.length) return;
    for (const { path: p, reason } of refused) this.log.error({ path: p }, `delivered file refused, it will not be copied: ${reason}`);
    const counted = new Set(await this.#journaled(() => this.catalog.refuse(usertime, refused.map((r) => r.path))));
    for (const { path: p, reason } of refused) {
      if (!counted.has(p)) continue;
      // A path refused before it was split (no './' part to replicate known) is named as it came, without a destination.
      let named: { src: string; rel?: string } = { src: p };
      try {
        named = checkMarkedPath(p);
      } catch { /* named as it came */ }
      for (const [storage, dest] of named.rel === undefined ? [['', '']] : this.dispatcher.destinations(named.rel)) {
        this.messages.publish('COPY_ERROR', `${named.src}:${dest}`, `copy of ${named.src}${storage ? ` to storage ${storage} (${dest})` : ''} ` +
          `will not be made: the delivered file was refused (${reason}); counted failed, not retried`);
      }
    }
  }

  /**
   * What a delivery says of a file's origin, as the record keeps it. A checksum grimseld cannot read (another
   * algorithm, damaged) is not kept, and said: the file is copied all the same, as one without (G12).
   */
  #provenance(p: string, checksum: string, detector: string): Pick<NewFile, 'checksum' | 'detector'> {
    const out: Pick<NewFile, 'checksum' | 'detector'> = {};
    if (checksum !== '' && untagged(checksum) === undefined) {
      this.log.warn({ path: p, checksum: checksum.slice(0, 100) }, 'delivered with a checksum grimseld cannot read; taken without one');
    } else if (checksum !== '') {
      out.checksum = checksum;
    }
    if (detector !== '' && detector.length <= 255 && !hasControl(detector)) out.detector = detector;
    return out;
  }

  /**
   * A delivered file outside the ramdisk directory is copied like any other, but the fill guard and the
   * shift clean-up never touch it (G5, G6): furkad's target and grimseld's `target` disagree, and the ramdisk
   * can fill up unguarded. Said once per directory and shift, in the log and to subscribers.
   */
  #reportOutside(files: NewFile[]): void {
    for (const f of files) {
      if (this.catalog.isOnRamdisk(f.src)) continue;
      const dir = f.src.slice(0, f.src.length - f.rel.length).replace(/\/+$/, '') || '/';
      if (this.#reportedOutside.has(dir)) continue;
      this.#reportedOutside.add(dir);
      this.messages.publish('DEL_ERROR', f.src, `furkad delivered '${f.src}' outside grimseld's ramdisk directory (key 'target' ` +
        `in grimseld.conf): it is copied, but never linked or deleted, neither when the ramdisk fills nor after a shift ` +
        `change. Make furkad's detector targets lie below grimseld's 'target'. Said once per shift for files below '${dir}'.`);
    }
  }

  /**
   * An operator's file (G8): must exist and be a regular file; it joins the current shift. A `caller` who is
   * not root must be able to read it themselves (caller-access.ts), or it is refused with NotReadable; their
   * file is copied only, never linked or deleted, also on the ramdisk (G5, G6: NewFile.copyOnly). Root's (and
   * the FIFO's) on the ramdisk are cleaned up like delivered ones.
   */
  async add(p: string, caller?: Caller): Promise<void> {
    const refused = await this.addMany([p], caller);
    if (refused[0]) throw refused[0].notReadable ? new NotReadable(refused[0].reason) : new RejectedPath(refused[0].reason);
  }

  /**
   * Operators' files (G8) in one batch, as add() takes one: one journal write for all of them. Returns
   * the paths refused, with the reason. Without `caller`, root's (the FIFO, root's AddFile).
   */
  async addMany(paths: string[], caller?: Caller): Promise<Refusal[]> {
    const refused: Refusal[] = [];
    if (!this.catalog.currentShift) return paths.map((path) => ({ path, reason: 'no shift has started yet (start one with furkad first)' }));
    const files: NewFile[] = [];
    const added: string[] = [];
    // lstat a few at a time: a long list need not wait for each one in turn.
    for (let i = 0; i < paths.length; i += INSPECT_AT_ONCE) {
      const part = paths.slice(i, i + INSPECT_AT_ONCE);
      const seen = await Promise.allSettled(part.map((p) => inspect(p, this.#rootOf, caller, this.needsOwnDir)));
      seen.forEach((r, j) => {
        if (r.status === 'fulfilled') {
          files.push(r.value);
          added.push(part[j]!);
        } else if (r.reason instanceof NotReadable) {
          refused.push({ path: part[j]!, reason: r.reason.message, notReadable: true });
        } else {
          if (!(r.reason instanceof RejectedPath)) throw r.reason;
          refused.push({ path: part[j]!, reason: r.reason.message });
        }
      });
    }
    // The shift current once they are checked: a shift started meanwhile gets them, not the one it ended.
    // A file already taken under another './' (not yet copied everywhere, or its original not yet cleaned up) is
    // refused, not taken twice: two records of one ramdisk original would have the fill guard and the shift
    // clean-up (G5, G6) link or delete it once the first is copied, and the second copy would then fail.
    const renamed = new Map<NewFile, string>();
    if (files.length) {
      this.dispatcher.submit(await this.#journaled(() => this.catalog.accept(this.catalog.currentShift!.usertime, files, (f, takenAs) => renamed.set(f, takenAs))));
    }
    files.forEach((f, i) => {
      const takenAs = renamed.get(f);
      if (takenAs === undefined) return;
      refused.push({ path: added[i]!, reason: `'${f.src}' is already taken to be copied as '${takenAs}' (an earlier AddFile, FIFO line or ` +
        `delivery grimseld is not done with), and a file is copied under one name at a time: add it as '${f.rel}' again once ` +
        `its copies are made (for a file on the ramdisk: once its original is cleaned up after its shift), or copy it by hand` });
      added[i] = '';
    });
    const taken = added.filter((p) => p !== '');
    if (taken.length === 1) this.log.info({ path: taken[0] }, 'file added');
    else if (taken.length > 1) this.log.info({ files: taken.length, first: taken[0] }, 'files added');
    return refused;
  }
}

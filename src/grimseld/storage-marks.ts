// Which disk each storage's copies are on (G5, G9, G12, G13): a storage with a mount point carries a mark, a small
// file in its target naming the disk, and the journal keeps the mark of the disk grimseld copied to. A disk found at
// the mount point without that mark (a fresh disk mounted in its place, the user's disk swapped for another, the
// same device made anew with mkfs) is not the one the copies were made on: every copy grimseld still holds the
// originals of is looked for there, those not found are pending again and copied to it again, and it is said once.
// So no ramdisk original or internal copy is deleted (G5), nor replaced by a link (G6, G7), on the strength of a
// copy that went with its disk, and the counts say what the disk there holds.
//
// A mark and not the disk's device or file system id: the device of a loop image or a USB disk is another at each
// mount, and a disk made anew on the same device keeps it; a file system UUID needs blkid and is not on tmpfs.
// A disk the mark cannot be written to (read-only) is looked at again only when its target changes (device, inode).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { sleep } from '../common/abort.js';
import { writeDurablyAsync } from '../common/durable-file.js';
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';
import { SaidOnce } from '../common/said-once.js';
import type { Catalog, FileRecord } from './catalog.js';
import type { Dispatcher } from './dispatcher.js';
import { copyIsAt } from './copy-source.js';
import type { MessageHub } from './messages.js';
import { isMountPoint } from './mounts.js';
import { MOUNT_RECHECK_MS } from './mount-watch.js';
import { destOf, type StorageInfo } from './storage-info.js';

/** The mark's name in a storage's target. */
export const MARK_FILE = '.grimsel-storage';
const MARK_HEAD = 'grimsel-storage-mark 1';
/** Copies looked for at once while a disk is checked (lstat each, in libuv's pool). */
const LOOK_BATCH = 64;
/** While a disk cannot be marked (read-only), writing its mark is tried again this often. */
const MARK_RETRY_MS = 60_000;
/** How long a stop waits for a look under way. */
const STOP_WAIT_MS = 5000;

/** The mark of the disk holding `target`; 'none' without one (or without the target). Throws when it cannot tell. */
export async function readMark(target: string): Promise<string | 'none'> {
  let fh;
  try {
    // Not through a link, not a fifo: a mark is a small regular file grimseld wrote.
    fh = await open(path.join(target, MARK_FILE), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return 'none';
    throw e;
  }
  try {
    const st = await fh.stat();
    // Root's only: grimseld writes it as root, and a user's file there (copied by an operator's AddFile of a
    // file named so, or made in a target someone may write) says nothing of the disk. It counts as no mark, so
    // the disk is looked at as an unmarked one and grimseld's own mark replaces it.
    if (!st.isFile() || st.size > 4096 || st.uid !== 0) return 'none';
    const [head, mark] = (await fh.readFile('utf8')).split('\n');
    return head === MARK_HEAD && mark !== undefined && /^[0-9a-f]{32}$/.test(mark) ? mark : 'none';
  } finally {
    await fh.close();
  }
}

/**
 * Writes mark `mark` into `target` (made if missing, as a copy would make it), whole or not at all: a temp file,
 * flushed, renamed over the name, the directory flushed. `stillThere` is asked before the rename: false (the
 * storage unmounted meanwhile) leaves nothing behind.
 */
export async function writeMark(target: string, mark: string, storage: string, stillThere: () => Promise<boolean>): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o755 });
  const text = `${MARK_HEAD}\n${mark}\n` +
    `grimseld marks the disk its copies of storage ${storage} are on with this file. Without it (or with another mark),\n` +
    'grimseld takes the disk for another one: it looks for every copy it still needs here and copies again those\n' +
    'that are not (README, "A storage whose disk is swapped").\n';
  await writeDurablyAsync(path.join(target, MARK_FILE), text, {
    suffix: '.new',
    beforeRename: async () => {
      if (!(await stillThere())) throw new Error(`${target} is not on the disk found mounted any more`);
    },
  });
}

/** The device and inode of `dir` ('none' when it is not there): what tells an unmarked target from another. */
async function identityOf(dir: string): Promise<string> {
  const st = await stat(dir).catch(() => undefined);
  return st ? `${st.dev}:${st.ino}` : 'none';
}

/** What the watch asks of the dispatcher: a disk swapped, a copy made again. */
export type CopyPlanner = Pick<Dispatcher, 'diskSwapped' | 'canCopyAgain' | 'copyAgain'>;

export class StorageMarks {
  /** The look under way at each storage (by id): the periodic one and the reclaimer's share it. */
  readonly #looks = new Map<string, Promise<boolean>>();
  /** Storages looked at whose mark could not be written: the identity of the target then, and when to try again. */
  readonly #unmarked = new Map<string, { target: string; retryAt: number }>();
  readonly #cannotMarkSaid = new SaidOnce();
  /** The last distinct failure of a look, per storage (logged once). */
  readonly #lastError = new Map<string, string>();

  constructor(
    private readonly catalog: Catalog,
    private readonly planner: CopyPlanner,
    private readonly storages: StorageInfo[],
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = monotonicMs,
  ) {}

  /** Looks at every marked storage (those with a mount point) about once a second until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      // Not waited for together: a storage that does not answer holds up only its own look.
      for (const st of this.storages) if (st.mountpoint && !this.#looks.has(st.id)) void this.check(st);
      await sleep(MOUNT_RECHECK_MS, signal);
    }
    // A look under way ends first, unless its storage does not answer (a hung NFS mount): then the stop goes on.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.#looks.values()), new Promise((r) => { timer = setTimeout(r, STOP_WAIT_MS); })]);
    clearTimeout(timer);
  }

  /**
   * Looks whether `storage`'s disk is still the one its copies were made on, and acts if it is not (see above);
   * true when it found copies gone (the catalog has them pending again). Never rejects.
   */
  check(storage: StorageInfo): Promise<boolean> {
    if (!storage.mountpoint) return Promise.resolve(false);
    let look = this.#looks.get(storage.id);
    if (!look) {
      look = this.#look(storage, storage.mountpoint).then((found) => {
        this.#lastError.delete(storage.id);
        return found;
      }, (e: unknown) => {
        const msg = (e as Error).message;
        if (this.#lastError.get(storage.id) !== msg) this.log.warn({ err: e, storage: storage.id }, `storage ${storage.id}: cannot tell whether its disk is the one its copies were made on; looked at again in a second`);
        this.#lastError.set(storage.id, msg);
        return false;
      }).finally(() => this.#looks.delete(storage.id));
      this.#looks.set(storage.id, look);
    }
    return look;
  }

  async #look(st: StorageInfo, mountpoint: string): Promise<boolean> {
    const expected = this.catalog.markOf(st.id);
    const found = await readMark(st.target);
    if (found !== 'none' && found === expected) {
      this.#unmarked.delete(st.id);
      // A journal from before targets were kept learns this one (a target change is then told from another disk).
      if (this.catalog.markTargetOf(st.id) !== st.target) await this.catalog.setMark(st.id, found, st.target);
      return false;
    }
    // Only a disk found mounted is looked at: the bare mount point has neither mark nor copies (G13), and nothing
    // is written there. Its device must stay the same through the look.
    const device = (await stat(mountpoint).catch(() => undefined))?.dev;
    const mounted = async (): Promise<boolean> => device !== undefined && (await stat(mountpoint).catch(() => undefined))?.dev === device &&
      (await this.isMounted(mountpoint).catch(() => false));
    if (!(await mounted())) return false;
    const target = await identityOf(st.target);
    const unmarked = this.#unmarked.get(st.id);
    if (found === 'none' && unmarked?.target === target) {
      // Looked at before and not markable (read-only): the same target, so the same disk; its mark is tried now and then.
      if (this.now() >= unmarked.retryAt) await this.#mark(st, expected, found, target, mounted);
      return false;
    }
    const seen = new Set<number>();
    const gone = await this.#goneCopies(st, seen);
    if (!(await mounted())) return false; // unmounted while looking: the copies' absence says nothing
    // From here a copy handed out before is made again, not counted (it may be on the disk taken away: the
    // dispatcher's disk count); those counted while the disk was looked at are looked for now.
    this.planner.diskSwapped(st.id);
    gone.push(...(await this.#goneCopies(st, seen)));
    const looked = seen.size;
    const again = gone.filter((rec) => this.catalog.isLive(rec) && this.planner.canCopyAgain(rec, st.id));
    await this.catalog.setLost(again, st.id);
    for (const rec of again) if (this.catalog.isLive(rec) && !this.catalog.copiedOn(rec, st.id)) this.planner.copyAgain(rec, st.id);
    const movedFrom = expected === undefined ? undefined : await this.#markedBefore(st, mountpoint, expected);
    this.#say(st, mountpoint, expected, found, looked, gone.length, again.length, movedFrom);
    await this.#mark(st, expected, found, target, mounted);
    return gone.length > 0;
  }

  /**
   * The live records copied to `st` whose copy is not there (not a regular file of the original's size and mtime),
   * of those not in `seen`, which gets those looked for. An internal copy a fill guard replaced by a link (G7), or
   * that is deleted, is not looked for: it is not expected there. Looked up by path: this only decides what is
   * copied again; a deletion or link still checks its copy reached without following links (reclaimer.ts).
   */
  async #goneCopies(st: StorageInfo, seen: Set<number>): Promise<FileRecord[]> {
    const wanted: Array<{ rec: FileRecord; at: string; size: number; mtimeMs: number }> = [];
    for (const rec of this.catalog.copiesOn(st.id)) {
      if (seen.has(rec.id) || (st.type === 'INTERNAL' && rec.internal !== 'present')) continue;
      seen.add(rec.id);
      wanted.push({ rec, at: destOf(st, this.catalog.relOn(rec, st.id)), size: rec.size, mtimeMs: rec.mtimeMs });
    }
    const gone: FileRecord[] = [];
    for (let i = 0; i < wanted.length; i += LOOK_BATCH) {
      await Promise.all(wanted.slice(i, i + LOOK_BATCH).map(async (w) => {
        if (!(await copyIsAt(w.at, w))) gone.push(w.rec);
      }));
    }
    return gone;
  }

  /**
   * The target `st`'s copies were made in when it is not its target now but holds the disk's mark there (its target
   * changed in grimseld.conf, the disk the same), else undefined. That target as journaled with the mark; for a
   * journal without it, the directories above the target up to the mount point, where a target made deeper was.
   */
  async #markedBefore(st: StorageInfo, mountpoint: string, expected: string): Promise<string | undefined> {
    const journaled = this.catalog.markTargetOf(st.id);
    const candidates = journaled !== undefined ? [journaled] : [];
    for (let d = st.target; journaled === undefined && d !== mountpoint && d !== path.dirname(d);) {
      d = path.dirname(d);
      candidates.push(d);
    }
    for (const dir of candidates) {
      const onDisk = !path.relative(mountpoint, dir).startsWith('..');
      if (dir !== st.target && onDisk && (await readMark(dir).catch(() => 'none')) === expected) return dir;
    }
    return undefined;
  }

  /** Marks the disk at `st` (a new mark where it has none, else the one it has) and journals it; says once if it cannot. */
  async #mark(st: StorageInfo, expected: string | undefined, found: string | 'none', target: string, mounted: () => Promise<boolean>): Promise<void> {
    let mark = found;
    if (mark === 'none') {
      mark = randomBytes(16).toString('hex');
      try {
        await writeMark(st.target, mark, st.id, mounted);
      } catch (e) {
        this.#unmarked.set(st.id, { target: await identityOf(st.target).catch(() => target), retryAt: this.now() + MARK_RETRY_MS });
        if (this.#cannotMarkSaid.due(st.id)) {
          this.log.warn({ err: e, storage: st.id, target: st.target }, `storage ${st.id}: cannot write its mark ${path.join(st.target, MARK_FILE)} ` +
            `(${(e as Error).message}); the copies grimseld needs are on it, and it is looked at again when its target changes`);
        }
        return;
      }
    }
    this.#unmarked.delete(st.id);
    this.#cannotMarkSaid.forget(st.id);
    await this.catalog.setMark(st.id, mark, st.target);
    if (expected === undefined) this.log.info({ storage: st.id, mark }, `storage ${st.id}: the disk at ${st.mountpoint} is marked (${path.join(st.target, MARK_FILE)}); another disk mounted there is noticed`);
  }

  /**
   * Says what was found: copies gone, once, as a COPY_ERROR for the storage (its short message as for an unmounted
   * one: mount point and target), with what grimseld does about them; another disk that holds every copy needed, in the log.
   */
  #say(st: StorageInfo, mountpoint: string, expected: string | undefined, found: string | 'none', looked: number, gone: number, again: number,
    movedFrom: string | undefined): void {
    const why = found === 'none' ? `it has no mark ${MARK_FILE} in ${st.target}` : `its mark ${found} is another disk's`;
    const swapped = expected !== undefined && movedFrom === undefined;
    // The same disk, its mark in the target the copies were made in: the target changed in grimseld.conf.
    const moved = movedFrom === undefined ? '' : `its target changed in grimseld.conf: the disk at ${mountpoint} is the one grimseld copied to ` +
      `(its mark is in ${movedFrom}, the target its copies were made in), and ${st.target} is new to it`;
    if (gone === 0) {
      if (swapped || moved) {
        this.log.warn({ storage: st.id }, `storage ${st.id}: ${moved || `the disk at ${mountpoint} is not marked as the one grimseld copied to (${why})`}; ` +
          `all ${looked} copies grimseld still needs are on it, and it is marked as that one now`);
      }
      return;
    }
    const stranded = gone - again;
    this.messages.publish('COPY_ERROR', `${mountpoint}:${st.target}`,
      `storage ${st.id}: ${moved ? `${moved}: ` : swapped ? `the disk at ${mountpoint} is not the one grimseld copied to (${why}): ` : ''}` +
      (moved
        ? `${gone} of the ${looked} copies grimseld made in ${movedFrom!} and still holds the originals of are not in ${st.target}; `
        : `${gone} of the ${looked} copies grimseld made in ${st.target} and still holds the originals of are not there; `) +
      `${again === gone ? 'all' : again} are copied to it again, and no original is deleted or linked on the strength of a copy that is gone (G5)` +
      (stranded > 0 ? `; ${stranded} cannot be, no other copy of them being left on the PPU: they stay counted as copied` : ''));
  }
}

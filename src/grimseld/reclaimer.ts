// Frees space without losing a byte (G5, G6, G7, G12): originals are replaced by links to their copy, or
// deleted, only once that copy is complete and flushed; oldest first; never through a planted link.
//
// The originals lie in directories their shift's user owns and can swap for a link at any moment (docs/threat-model.md
// row 3). So each one's directory is reached from the ramdisk (or internal storage) target one component at
// a time without following links and held (common/dir-fd.ts); the entry is checked to be the delivered
// file, and the link or the deletion then acts on that entry of that same directory. A user who changes
// the entry itself between the check and the act can only have grimseld replace or remove a name in a
// directory of their own, which they could do themselves.
import { randomBytes } from 'node:crypto';
import { linkTempName, type TempKey } from './temp-names.js';
import { fstatSync, fsync } from 'node:fs';
import { lstat, lutimes, readlink, rename, symlink, unlink, lchown } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { DirFd } from '../common/dir-fd.js';
import { LinkSweeper, shiftSeconds } from './link-dirs.js';
import { openLinkRoom, roomName } from './link-room.js';
import { EmptiedDirs } from './emptied-dirs.js';
import { dirsOf } from '../common/paths.js';
import { sameFile } from './copier.js';
import { fillState, isMountPoint } from './mounts.js';
import { answers, DOES_NOT_ANSWER, MOUNT_RECHECK_MS, READ_ONLY, readOnly } from './mount-watch.js';
import { sleep } from '../common/abort.js';
import type { Catalog, FileRecord } from './catalog.js';
import type { MessageHub, MessageCode } from './messages.js';
import { destOf, probedAt, type StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';
import { SaidOnce } from '../common/said-once.js';

/** fsyncs a directory held open, without holding up the event loop (a journaling disk may take milliseconds). */
const fsyncFd = promisify(fsync);

export interface ReclaimSettings {
  ramdiskRoot: string;
  ramdiskMountpoint: string;
  createLinks: boolean;
  fillLimitPercent: number;
  intervalMs: number;
  /**
   * An original the shift-change clean-up could not delete (a DEL_ERROR: a directory a user swapped for a link, a
   * file made immutable) is tried again after this pause (ms), doubling up to DELETE_RETRY_MAX_MS while it keeps
   * failing, not only at the next shift change (G5). Default 30 s. A fill guard's link or deletion that failed (a
   * LINK_ERROR or DEL_ERROR for that file) waits the same pause, the file's own, kept by both (G6, G7).
   */
  deleteRetryMs?: number;
  /** The key of grimseld's temp names (temp-names.ts), also of the link temp names; a key of its own if unset. */
  tempKey?: TempKey;
  /**
   * How long one tick's share of a shift-change clean-up, or of a fill guard's round, may take (ms) before the next
   * of them runs; CLEAN_SLICE_MS if unset.
   */
  cleanSliceMs?: number;
  /** How many originals a shift-change clean-up deletes at once; CLEAN_IN_FLIGHT if unset (bench/clean-up.ts compares). */
  cleanInFlight?: number;
  /**
   * Looks whether a storage's disk is still the one its copies were made on (storage-marks.ts), asked when a copy an
   * original is checked against is missing: with its disk swapped, the copy is pending again and the original waits for
   * it, said once for the storage instead of a DEL_ERROR or LINK_ERROR for each file. Unset: not looked at.
   */
  diskCheck?: (storage: StorageInfo) => Promise<unknown>;
  /**
   * Whether the copy of a record on a storage is gone from it (its disk the same one: moved or deleted there) and is
   * to be made again (lost-copies.ts), asked after diskCheck; true: it is pending again. Unset: not asked.
   */
  copyGone?: (rec: FileRecord, storage: StorageInfo) => Promise<boolean>;
}

/**
 * A shift-change clean-up of many files (one directory fsync each: a few to some dozen a second while copies run)
 * goes on over several ticks, this long each, with the fill guards between them: run to its end first, it left the
 * ramdisk full for over a minute after a shift of 14 000 files (no links, no alarm, the detector blocked), and held
 * up a stop past TimeoutStopSec (G5–G7, S1). The fill guards' rounds are cut the same way (a link is a journal entry
 * and a directory fsync): the ramdisk guard's round of 7 000 links, run to its end first, left the internal disk over its
 * limit with nothing linked until it was full (ENOSPC), and the ramdisk's own alarms unsaid meanwhile (G6, G7, G10).
 */
const CLEAN_SLICE_MS = 200;
/** How many originals a shift-change clean-up deletes at once (see #cleanEarlierShifts). */
const CLEAN_IN_FLIGHT = 16;

const DELETE_RETRY_MS = 30_000;
/** The longest pause between two tries of a clean-up that keeps failing (see deleteRetryMs). */
const DELETE_RETRY_MAX_MS = 600_000;
/**
 * While a storage the reclaimer needs is not mounted (G13), its one message about it is repeated this often: the
 * originals that wait for it are not tried one by one (each would fail, four times a second).
 */
const UNMOUNTED_REPEAT_MS = 60_000;

type Where = 'ramdisk' | 'internal';

/**
 * Fill-state alarms, each sent once per episode: re-armed only once the fill state has dropped REARM_MARGIN_PERCENT
 * below the limit. The guard frees space only to just below the limit, so a ramdisk that keeps filling crosses it
 * again and again within seconds; re-armed at the limit, each crossing would be an alarm, a steady stream of them
 * in the normal state of a busy beamline (G10). An episode ends when space is freed by other means: a shift change (G5), an operator.
 */
const REARM_MARGIN_PERCENT = 5;
const ALARMS: Array<{ code: MessageCode; atPercent: (limit: number) => number }> = [
  { code: 'FILLSTATE_LIMIT', atPercent: (limit) => limit },
  { code: 'ALMOST_OVERFLOW', atPercent: (limit) => Math.max(limit, 95) },
  { code: 'DISK_OVERFLOW', atPercent: () => 99.5 },
];

/**
 * Runs `open` (a walk from `storage`'s target) and says a target that is not there as what it is, not as the bare
 * ENOENT of its open: the storage is not mounted, or its target is gone.
 */
function targetMissing<T>(storage: StorageInfo, open: () => T): T {
  try {
    return open();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw new Error(`the target ${storage.target} of storage ${storage.id} is missing` +
      `${storage.mountpoint ? ` (is ${storage.mountpoint} mounted?)` : ''}`);
  }
}

/** A fill guard's mount point that does not exist (a ramdisk not made yet): said as that, in one line. */
class NoMountPoint extends Error {}

/** The fill of `mountpoint`, or NoMountPoint naming the key that gives it when there is no such directory. */
async function fillOf(mountpoint: string, key: string): Promise<Awaited<ReturnType<typeof fillState>>> {
  try {
    return await fillState(mountpoint);
  } catch (e) {
    // Told by the directory itself, not by the error's words: Node 16's statfs helper that died says "No such file or
    // directory" of its python3 too. A stat that hung said so already; nothing more is asked of it.
    const gone = (e as NodeJS.ErrnoException).code === 'ENOENT' ||
      (!/no answer/.test((e as Error).message) && (await lstat(mountpoint).then(() => false, (l: NodeJS.ErrnoException) => l.code === 'ENOENT')));
    if (!gone) throw e;
    throw new NoMountPoint(`${key} '${mountpoint}' does not exist: its fill guard watches nothing there, and links or deletes ` +
      'no file there to make room, until it does (make the directory and mount the file system on it)');
  }
}

export class Reclaimer {
  #raised = new Map<string, Set<MessageCode>>();
  /** Earlier shifts may have originals to clean (set at a shift start and while some wait for copies). */
  #shiftChanged = true;
  /** Shift starts so far: a clean-up that a shift start overtook does not clear the mark that start set. */
  #shiftStarts = 0;
  /** When the clean-up of earlier shifts runs again for a deletion whose pause is over (0: none waits for one). */
  #retryAt = 0;
  /** The fill guards' links of ended shifts, removed in the background (link-dirs.ts). */
  readonly #links: LinkSweeper;
  /** Roots without a usable link room, and directories on another file system than theirs, as logged (link-room.ts). */
  readonly #roomless = new SaidOnce();
  /** The link room's name taken by someone else: said at most once a minute per root, with the count since. */
  readonly #asideSaid = new SaidOnce(60_000);
  readonly #asideCount = new Map<string, number>();
  readonly #tempKey: TempKey;
  /**
   * Records whose link or deletion failed (by a fill guard or the clean-up): each skipped by both until `at`, its pause
   * doubling while it keeps failing (G5, G6, G7). Kept per file, so a clean-up cut into slices tries each once per pause.
   */
  #pauses = new Map<number, { at: number; ms: number }>();
  /**
   * The clean-up's deletions that wait for a storage (unmounted or read-only), per storage, over a whole pass however
   * many slices it takes: said once the pass is through, with all of them counted, each once.
   */
  readonly #blockedInPass = new Map<StorageInfo, Set<number>>();
  /** The same for each fill guard's round (G6, G7), over the ticks it takes. */
  readonly #blockedInRound = new Map<Where, Map<StorageInfo, Set<number>>>();
  /** Mount points as last read (at most once a second): each guard tick and clean-up asks. */
  #mountChecks = new Map<string, { ok: boolean; at: number; why: string }>();
  /** Each storage's 'not mounted', per code: one message per storage, not one per file, again every UNMOUNTED_REPEAT_MS. */
  readonly #unmountedSaid = new SaidOnce(UNMOUNTED_REPEAT_MS);
  /**
   * The internal storage found read-only (a deletion or link there met EROFS), and when that was last looked at:
   * its originals wait, said once like an unmounted storage, and it is asked again at most once a second (G5, G7).
   */
  readonly #readOnly = new Map<StorageInfo, number>();
  /** With EXTERNAL: the internal directories whose ended shift's copies G5 deleted, removed once empty. */
  readonly #emptied = new EmptiedDirs();

  constructor(
    private readonly catalog: Catalog,
    private readonly internal: StorageInfo,
    private readonly external: StorageInfo | undefined,
    private readonly settings: ReclaimSettings,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
  ) {
    this.#tempKey = settings.tempKey ?? randomBytes(32);
    this.#links = new LinkSweeper(catalog, { ramdisk: settings.ramdiskRoot, internal: internal.target }, messages, log,
      { firstMs: settings.deleteRetryMs ?? DELETE_RETRY_MS, maxMs: DELETE_RETRY_MAX_MS }, internal.mountpoint,
      [internal.target, ...(external ? [external.target] : [])]);
  }

  /** A new shift started: earlier shifts' originals go as soon as they may (G5). */
  shiftStarted(): void {
    this.#shiftStarts++;
    this.#shiftChanged = true;
    // A shift change is a try for every deletion that failed: each is tried at once, its pause doubling after that.
    this.#retryAt = 0;
    for (const pause of this.#pauses.values()) pause.at = 0;
  }

  /**
   * Files of a shift that has ended were delivered (furkad places files it held back for their own shift late):
   * their originals go once copied, as an earlier shift's do (G5), not only at the next shift start.
   */
  earlierShiftDelivered(): void {
    this.#shiftChanged = true;
  }

  async run(signal: AbortSignal): Promise<void> {
    let lastError = '';
    while (!signal.aborted) {
      try {
        await this.#tick();
        if (lastError !== '') this.log.info({ failed: lastError }, 'reclaiming space works again');
        lastError = '';
      } catch (e) {
        // Logged once per distinct problem (a ramdisk not mounted yet would otherwise log 4 times a second).
        const msg = (e as Error).message;
        if (msg !== lastError) {
          if (e instanceof NoMountPoint) this.log.error(`reclaiming space failed: ${msg}`);
          else this.log.error({ err: e }, 'reclaiming space failed');
        }
        lastError = msg;
      }
      await sleep(this.settings.intervalMs, signal);
    }
    await this.#links.stop();
  }

  async #tick(): Promise<void> {
    if (this.#shiftChanged || (this.#retryAt > 0 && monotonicMs() >= this.#retryAt)) await this.#cleanEarlierShifts();
    // A ramdisk mount point not there yet stops its own guard, not the internal disk's: said after that one ran.
    const ramdisk = await this.#guard('ramdisk', this.settings.ramdiskMountpoint).then(() => undefined, (e: unknown) => {
      if (e instanceof NoMountPoint) return e;
      throw e;
    });
    if (this.external && this.internal.mountpoint) await this.#guard('internal', this.internal.mountpoint);
    // The pauses of deletions that failed, for records settled meanwhile (by either guard or the clean-up), go.
    for (const id of this.#pauses.keys()) if (!this.catalog.record(id)) this.#pauses.delete(id);
    if (ramdisk) throw ramdisk;
  }

  /**
   * G5: ramdisk originals (and their links) of earlier shifts, and with EXTERNAL their internal copies once the
   * external copy exists and no other storage still needs them to read (README, "Choices where the spec is silent").
   */
  async #cleanEarlierShifts(): Promise<void> {
    const current = this.catalog.currentShift?.usertime;
    if (current === undefined) return;
    const starts = this.#shiftStarts;
    let waiting = false;
    /** The end of the earliest pause of a deletion left for it (0: none). */
    let nextTry = 0;
    const waitFor = (at: number): void => { nextTry = nextTry === 0 ? at : Math.min(nextTry, at); };
    // A deletion that needs a storage that is not mounted (G13) waits for it, looked at on every tick, and is said
    // once for the storage: tried, each would fail on the bare mount point with a DEL_ERROR of its own.
    await this.#readMounts();
    const blocked = this.#blockedInPass;
    const blockedBy = (rec: FileRecord, where: Where): boolean => {
      const down = this.#downFor(rec, where);
      if (down) {
        const ids = blocked.get(down) ?? new Set<number>();
        blocked.set(down, ids.add(rec.id));
        waiting = true;
      }
      return down !== undefined;
    };
    // A deletion that failed is tried again only when its own pause is over, also while this runs on every tick
    // for files that wait for their copies, and while it goes on over several slices.
    const remove = async (rec: FileRecord, where: Where): Promise<void> => {
      const pause = this.#pauses.get(rec.id);
      if (pause && monotonicMs() < pause.at) {
        waitFor(pause.at);
        return;
      }
      tried++;
      if (await this.#remove(rec, where)) {
        this.#pauses.delete(rec.id);
        return;
      }
      if (blockedBy(rec, where)) return; // unmounted or read-only meanwhile: waits for it
      if (this.#copyPending(rec, where)) { // its copy went with its disk: waits for the new copy
        waiting = true;
        return;
      }
      if (this.catalog.isLive(rec)) waitFor(this.#pause(rec.id, pause?.ms));
    };
    /** The clean-up of one record: its original on the ramdisk, then its internal copy where EXTERNAL has one. */
    const clean = async (rec: FileRecord): Promise<void> => {
      if (this.#onRamdisk(rec)) {
        if (!this.catalog.copiedOn(rec, this.internal.id) || this.#copyPending(rec, 'ramdisk')) waiting = true;
        else if (!blockedBy(rec, 'ramdisk')) await remove(rec, 'ramdisk');
      }
      if (!this.catalog.isLive(rec)) return; // settled by the removal: nothing left to clean
      if (this.external && rec.internal === 'present' && !this.#onRamdisk(rec)) {
        // Once its original went, the internal copy is what an OPTIONAL storage still to be copied reads: it stays until
        // every storage has its copy (or gave up for good), else that copy would read the EXTERNAL disk, and wait
        // while it is away (taken home, say) however long it is.
        if (!this.catalog.copiedOn(rec, this.external.id) || !this.catalog.copiedOn(rec, this.internal.id) || !this.catalog.doneEverywhere(rec)) waiting = true;
        else if (!blockedBy(rec, 'internal')) await remove(rec, 'internal');
      }
    };
    const slice = this.settings.cleanSliceMs ?? CLEAN_SLICE_MS;
    const sliceEnds = monotonicMs() + slice;
    /** Deletions tried in this tick: at least one; the rest at the next tick, after the fill guards. */
    let tried = 0;
    let cut = false;
    // Several records at once (CLEAN_IN_FLIGHT): each deletion waits for its copy's directory fsync and its journal
    // line's fdatasync, and one after the other that was a few dozen deletions a second while copies ran, fewer than
    // a busy detector delivers (tens of thousands of an ended shift's originals stayed on the ramdisk). At once, the
    // journal writes their lines in one batch (group commit) and the disk shares its commits among the fsyncs.
    const inFlight = new Set<Promise<void>>();
    for (const rec of this.catalog.ofShiftsBefore(current)) {
      if (tried > 0 && (slice === 0 || monotonicMs() >= sliceEnds)) {
        cut = true;
        break;
      }
      const one: Promise<void> = clean(rec).finally(() => inFlight.delete(one));
      inFlight.add(one);
      if (inFlight.size >= (this.settings.cleanInFlight ?? CLEAN_IN_FLIGHT)) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (cut) {
      // Not through: the next tick goes on (from the start: what was done here is skipped quickly, a deletion that
      // failed too, until its pause is over).
      if (starts === this.#shiftStarts) this.#shiftChanged = true;
      return;
    }
    for (const [st, ids] of blocked) {
      const ro = this.#readOnly.has(st);
      this.#sayUnmounted('DEL_ERROR', st, () => `storage ${st.id}: ${probedAt(st)} ${this.#downWhy(st)}; ${ids.size} originals of ended shifts ` +
        `${ro ? 'which lie on it' : 'whose copies are checked on it, or which lie on it,'} are not deleted until it is ${this.#backWhen(st)} (G5)`);
    }
    blocked.clear();
    this.#links.sweep(current); // in the background: the fill guards go on meanwhile
    this.#removeEmptiedDirs();
    // A shift that started meanwhile made the shift before it an earlier one too: its start set the mark and reset
    // the retry state; deletions that failed after it keep their pause.
    if (starts !== this.#shiftStarts) return;
    // Files still waiting for copies are looked at again on every tick; a deletion that failed is tried again
    // after a pause that grows while it keeps failing (one DEL_ERROR per try, not four a second).
    this.#shiftChanged = waiting;
    this.#retryAt = nextTry;
  }

  /**
   * The internal directories the deletions of ended shifts' copies emptied go, the shift's own (its user's) ones, up to
   * the shift's directory (G5; emptied-dirs.ts). Not while the internal disk is unmounted or read-only; never one a
   * copy still to be made there goes into.
   */
  #removeEmptiedDirs(): void {
    if (!this.#emptied.due(this.#shiftStarts) || this.#cannotWrite(this.internal)) return;
    const busy = dirsOf([...this.catalog.pendingOn(this.internal.id)].map((rec) => this.catalog.relOn(rec, this.internal.id)));
    try {
      const { removed, errors } = this.#emptied.remove(this.internal.target, busy, this.#shiftStarts);
      if (removed > 0) this.log.info({ storage: this.internal.id, removed }, 'removed the directories of ended shifts emptied on the internal storage');
      if (errors.length > 0) this.log.warn({ storage: this.internal.id, errors: errors.slice(0, 10) }, 'cannot look at some emptied directories of ended shifts; they stay');
    } catch (e) {
      this.log.warn({ err: e, storage: this.internal.id }, 'cannot remove the emptied directories of ended shifts; tried again at the next clean-up');
    }
  }

  /** Whether `st` was not mounted (or did not answer) at the last reading of its mount point, or is read-only. */
  #cannotWrite(st: StorageInfo): boolean {
    const ok = this.#mountChecks.get(probedAt(st))?.ok;
    // One with a mount point counts as down until a reading found it mounted; one without, once a stat hung.
    return (st.mountpoint !== undefined ? ok !== true : ok === false) || this.#readOnly.has(st);
  }

  /** G6 / G7: above the fill limit, oldest first, originals whose copy exists are linked to it (or deleted). */
  async #guard(where: Where, mountpoint: string): Promise<void> {
    let fill = await fillOf(mountpoint, where === 'ramdisk' ? 'ramdisk_mountpoint' : `storage.${this.internal.id}'s mountpoint`);
    // Over the limit, the mount points are read before an alarm is said, afresh when one is about to be: its text
    // tells what can be freed, and nothing can while the storage the copies are checked on is away (#freeing).
    const down = fill.percent >= this.settings.fillLimitPercent ? await this.#readMounts(undefined, this.#alarmDue(mountpoint, fill.percent)) : undefined;
    // The internal guard's bare mount point: the fill is the root file system's, and no original is there (G13).
    if (where === 'internal' && down?.has(this.internal)) return;
    this.#alarm(where, mountpoint, fill.percent);
    const blocked = this.#blockedInRound.get(where) ?? new Map<StorageInfo, Set<number>>();
    this.#blockedInRound.set(where, blocked);
    if (fill.percent < this.settings.fillLimitPercent) {
      blocked.clear();
      return;
    }
    const copyHolder = where === 'ramdisk' ? this.internal : this.external!;
    const links = where === 'internal' || this.settings.createLinks;
    // An original whose copy is on a storage that is not mounted is not tried (each would fail on the bare mount
    // point, four times a second, G13): said once for the storage instead (the mount points were read above).
    const now = monotonicMs();
    const current = this.catalog.currentShift?.usertime;
    let freed = 0;
    const slice = this.settings.cleanSliceMs ?? CLEAN_SLICE_MS;
    const sliceEnds = monotonicMs() + slice;
    let tried = 0;
    let cut = false;
    for (const rec of this.catalog.originalsOn(where, this.internal.id)) {
      // The rest at the next tick, after the other guard (and the clean-up): it goes on from the oldest left.
      if (tried > 0 && (slice === 0 || monotonicMs() >= sliceEnds)) {
        cut = true;
        break;
      }
      if (!this.catalog.copiedOn(rec, copyHolder.id)) continue;
      let down = this.#downFor(rec, where);
      const pause = this.#pauses.get(rec.id);
      if (!down && pause && now < pause.at) continue; // failed at its last try: one LINK_ERROR or DEL_ERROR per try, not per tick
      // G7 always links (the internal disk is the user's data); G6 as configured. Read before: the record
      // may be settled by it.
      const size = rec.size;
      // An ended shift's original, which its clean-up (G5) deletes anyway, is deleted here too, not linked: while a
      // long clean-up goes on over several ticks, a link made now would outlive it (the sweep keeps links made since
      // the shift change) in a directory of a shift that has ended.
      const ended = current !== undefined && rec.usertime < current;
      // Its internal copy is what its original on the ramdisk (or the link that replaced it) is checked against, or
      // points to, until the clean-up has deleted that: removed first, the original would stay for good (G5).
      if (ended && where === 'internal' && this.#onRamdisk(rec)) continue;
      if (!down) tried++;
      const linked = !down && (links && !ended ? await this.#link(rec, where, copyHolder) : await this.#remove(rec, where));
      if (!linked) {
        // A failure re-reads the mount table: a storage unmounted since the last reading holds up the rest of this round too.
        down ??= this.#downFor(rec, where);
        if (down) blocked.set(down, (blocked.get(down) ?? new Set<number>()).add(rec.id));
        // Left alone without an error: settled, or its copy went with its disk (pending again, not tried till copied).
        else if (this.catalog.isLive(rec) && !this.#copyPending(rec, where)) this.#pause(rec.id, pause?.ms);
        continue;
      }
      this.#pauses.delete(rec.id);
      freed += size;
      // Re-read the fill state every few MB freed rather than after every file.
      if (freed >= fill.totalBytes / 200) {
        freed = 0;
        fill = await fillState(mountpoint);
        // Filling faster than it is freed: said while the round goes on, with the mount points read afresh (#freeing).
        if (this.#alarmDue(mountpoint, fill.percent)) await this.#readMounts(undefined, true);
        this.#alarm(where, mountpoint, fill.percent);
        if (fill.percent < this.settings.fillLimitPercent) break;
      }
    }
    // Said once the round is through, with what waits in all its slices (each original once).
    for (const [st, ids] of cut ? [] : blocked) {
      const n = ids.size;
      this.#sayUnmounted(links ? 'LINK_ERROR' : 'DEL_ERROR', st, () => `storage ${st.id}: ${probedAt(st)} ${this.#downWhy(st)}; ` +
        `${mountpoint} is ${fill.percent.toFixed(1)}% full (limit ${this.settings.fillLimitPercent}%), and ${n} originals there whose ` +
        `copies are checked on it are not ${links ? 'replaced by links to their copies' : 'deleted'} until it is ${this.#backWhen(st)}`);
    }
    if (!cut) blocked.clear();
    fill = await fillState(mountpoint);
    this.#alarm(where, mountpoint, fill.percent);
  }

  /** Whether the original of `rec` (or the link that replaced it) is still on the ramdisk: its internal copy is needed. */
  #onRamdisk(rec: FileRecord): boolean {
    return rec.onRamdisk && rec.ramdisk !== 'deleted' && rec.ramdisk !== 'gone';
  }

  /**
   * Record `id`'s original is tried again (by a fill guard or the clean-up) after a pause, the longer the more often
   * it failed; returns when.
   */
  #pause(id: number, lastMs: number | undefined): number {
    const ms = lastMs === undefined ? (this.settings.deleteRetryMs ?? DELETE_RETRY_MS) : Math.min(lastMs * 2, DELETE_RETRY_MAX_MS);
    const at = monotonicMs() + ms;
    this.#pauses.set(id, { at, ms });
    return at;
  }

  /**
   * The storages holding what removing or linking the original of `rec` at `where` works on: the original itself
   * (on the internal storage), and the copy it is checked against (the internal one; its external copy where the
   * internal guard linked it, G7; the external one for an internal original). A link on the ramdisk needs none.
   */
  #needs(rec: FileRecord, where: Where): StorageInfo[] {
    if (!this.catalog.isLive(rec)) return []; // settled by the try (its original gone): nothing left to do
    if (where === 'ramdisk') {
      if (rec.ramdisk === 'linked') return [];
      return rec.internal === 'linked' && this.external ? [this.external] : [this.internal];
    }
    return rec.internal === 'linked' ? [this.internal] : [this.internal, ...(this.external ? [this.external] : [])];
  }

  /** What `st` must be again for the originals that wait for it (the end of its message). */
  #backWhen(st: StorageInfo): string {
    if (this.#readOnly.has(st)) return 'writable again';
    if (this.#downWhy(st) !== DOES_NOT_ANSWER) return 'mounted again';
    return st.mountpoint !== undefined ? 'mounted again and answers' : 'answering again';
  }

  /** Why `st` counts as down at the last reading of its mount point: not mounted, the table could not be read, read-only. */
  #downWhy(st: StorageInfo): string {
    const check = this.#mountChecks.get(probedAt(st));
    if (check?.ok !== false && this.#readOnly.has(st)) return READ_ONLY;
    return check?.why || 'is not mounted';
  }

  /**
   * The first storage that the work on the original of `rec` at `where` needs and that was not mounted at the last
   * reading; or, for an original on the internal storage (deleted there, or replaced by a link), that storage while
   * it is read-only. An original on the ramdisk only reads its internal copy: a read-only internal disk holds it up not.
   */
  #downFor(rec: FileRecord, where: Where): StorageInfo | undefined {
    return this.#needs(rec, where).find((st) => this.#mountChecks.get(probedAt(st))?.ok === false ||
      (where === 'internal' && st === this.internal && this.#readOnly.has(st)));
  }

  /** The storage whose copy the deletion or linking of the original of `rec` at `where` is checked against (#copyComplete). */
  #holderOf(rec: FileRecord, where: Where): StorageInfo | undefined {
    if (where === 'internal') return this.external;
    return rec.internal === 'linked' && this.external ? this.external : this.internal;
  }

  /**
   * Whether the copy the original of `rec` at `where` is checked against is no longer recorded as made: it went
   * with its disk (storage-marks.ts) and is pending again, so the original waits for the new one, without an error.
   */
  #copyPending(rec: FileRecord, where: Where): boolean {
    if (!this.catalog.isLive(rec) || rec[where] === 'linked') return false;
    const holder = this.#holderOf(rec, where);
    return holder !== undefined && !this.catalog.copiedOn(rec, holder.id);
  }

  /**
   * The storages (of `storages`, by default all the reclaimer works on) whose mount point is configured and not
   * mounted now: read at most once a second, or at once when `fresh` (G13).
   */
  async #readMounts(storages = [this.internal, ...(this.external ? [this.external] : [])], fresh = false): Promise<Set<StorageInfo>> {
    const down = new Set<StorageInfo>();
    for (const st of storages) {
      const at = probedAt(st);
      const now = monotonicMs();
      let checked = this.#mountChecks.get(at);
      if (fresh || !checked || now - checked.at > MOUNT_RECHECK_MS) {
        // A mount table that cannot be read (no descriptor left: EMFILE) cannot tell: as not mounted, nothing is
        // linked or deleted there for this look, and it is read again at the next.
        // Its bounded stat first (G13): a storage that does not answer (a hard NFS mount whose server hangs) counts as not
        // mounted. The copies on it are checked with synchronous opens (DirFd), on the event loop: reached while it hung,
        // they held up all of grimseld (no status, no copies to the other storages, the ramdisk guard stopped while it filled).
        // One without a mount point is only asked whether it answers (its target's stat, bounded the same way).
        checked = !(await answers(at)) ? { ok: false, at: now, why: DOES_NOT_ANSWER }
          : !st.mountpoint ? { ok: true, at: now, why: '' }
            : await this.isMounted(st.mountpoint).then((ok) => ({ ok, at: now, why: 'is not mounted' }),
              (e: unknown) => ({ ok: false, at: now, why: `cannot be checked (${(e as Error).message})` }));
        this.#mountChecks.set(at, checked);
        if (checked.ok) this.#mountedAgain(st, st.mountpoint !== undefined ? 'mounted' : 'answering');
      }
      if (!checked.ok) down.add(st);
    }
    // A storage found read-only is asked again at most once a second (access W_OK writes nothing).
    for (const [st, at] of this.#readOnly) {
      const now = monotonicMs();
      if (now - at <= MOUNT_RECHECK_MS) continue;
      if (await readOnly([st.target, ...(st.mountpoint ? [st.mountpoint] : [])])) {
        this.#readOnly.set(st, now);
      } else {
        this.#readOnly.delete(st);
        this.#mountedAgain(st, 'writable');
      }
    }
    return down;
  }

  /**
   * Says once that `storage` is not mounted and what waits for it, as a `code` message whose short text is the mount
   * point (G10, G13), repeated every UNMOUNTED_REPEAT_MS while it stays so; `long` is built only when it is said.
   */
  #sayUnmounted(code: 'LINK_ERROR' | 'DEL_ERROR', storage: StorageInfo, long: () => string): void {
    // Once per storage and cause: read-only, then unmounted (or the other way round) is said at once.
    if (!this.#unmountedSaid.due(`${code}\0${storage.id}\0${this.#readOnly.has(storage) ? 'ro' : ''}`)) return;
    this.messages.publish(code, probedAt(storage), long());
  }

  /**
   * Whether a storage that the failed work on `rec` at `where` needs is not mounted now (unmounted since the last
   * reading of the mount table): then the failure is not said for the file, but once for the storage by the caller.
   */
  async #unmountedMeanwhile(rec: FileRecord, where: Where): Promise<boolean> {
    return (await this.#readMounts(this.#needs(rec, where), true)).size > 0;
  }

  /** `storage` is found mounted (or writable): a later unmount (or read-only) is said at once again. */
  #mountedAgain(storage: StorageInfo, what: 'mounted' | 'answering' | 'writable'): void {
    for (const code of ['LINK_ERROR', 'DEL_ERROR'] as const) {
      if (this.#unmountedSaid.forget(`${code}\0${storage.id}\0${what === 'writable' ? 'ro' : ''}`)) {
        this.log.info({ storage: storage.id, mountpoint: storage.mountpoint }, `storage ${what} again; the reclaimer goes on with it`);
      }
    }
  }

  /**
   * Whether a failure of the work on the original of `rec` at `where` is the internal storage being read-only (EROFS
   * there, confirmed): then it waits, said once for the storage by the caller, not for each file (G5, G7).
   */
  async #readOnlyMeanwhile(e: unknown, where: Where): Promise<boolean> {
    if (where !== 'internal' || (e as NodeJS.ErrnoException).code !== 'EROFS') return false;
    const st = this.internal;
    if (!(await readOnly([st.target, ...(st.mountpoint ? [st.mountpoint] : [])]))) return false;
    this.#readOnly.set(st, monotonicMs());
    return true;
  }

  /**
   * Whether the copy the work on the original of `rec` at `where` was checked against is gone and to be made again:
   * with its disk (its storage's disk is looked at, settings.diskCheck), or alone from the same disk (moved or
   * deleted there, settings.copyGone); it is pending again then, and the original waits for it without an error.
   */
  async #copyToBeMadeAgain(rec: FileRecord, where: Where): Promise<boolean> {
    const holder = this.catalog.isLive(rec) && rec[where] !== 'linked' ? this.#holderOf(rec, where) : undefined;
    if (!holder) return false;
    if (this.settings.diskCheck) await this.settings.diskCheck(holder);
    if (this.#copyPending(rec, where)) return true;
    return (await this.settings.copyGone?.(rec, holder)) === true && this.#copyPending(rec, where);
  }

  /**
   * FILLSTATE_LIMIT, ALMOST_OVERFLOW, DISK_OVERFLOW for `mountpoint` (G6, G7, G10), each once until the fill has
   * gone back below the limit less a margin. The long message says what is freed and how many files can be
   * now: none while their copies wait (a full or unmounted storage), which it names.
   */
  /** Whether #alarm would say something for `mountpoint` at `percent` now. */
  #alarmDue(mountpoint: string, percent: number): boolean {
    const raised = this.#raised.get(mountpoint);
    return ALARMS.some((a) => percent >= a.atPercent(this.settings.fillLimitPercent) && !raised?.has(a.code));
  }

  #alarm(where: Where, mountpoint: string, percent: number): void {
    let raised = this.#raised.get(mountpoint);
    if (!raised) this.#raised.set(mountpoint, (raised = new Set()));
    const limit = this.settings.fillLimitPercent;
    const rearm = limit - Math.min(REARM_MARGIN_PERCENT, limit / 2);
    if (percent < rearm) {
      raised.clear();
      return;
    }
    for (const a of ALARMS) {
      if (percent >= a.atPercent(limit) && !raised.has(a.code)) {
        raised.add(a.code);
        this.messages.publish(a.code, mountpoint, `${mountpoint} is ${percent.toFixed(1)}% full (limit ${limit}%); ${this.#freeing(where)}; ` +
          `files not yet copied are never touched; said again once it has been below ${rearm}%`);
      }
    }
  }

  /**
   * What the guard of `where` frees, and how many files it can free now (for the alarm's long message): the copied
   * originals it can link or delete now, and those it cannot while the storage their copy is checked on is not
   * mounted (G13), which it names, with what happens to them then.
   */
  #freeing(where: Where): string {
    const holder = where === 'ramdisk' ? this.internal : this.external!;
    const links = where === 'internal' || this.settings.createLinks;
    let n = 0;
    const waiting = new Map<StorageInfo, number>();
    const current = this.catalog.currentShift?.usertime;
    for (const rec of this.catalog.originalsOn(where, this.internal.id)) {
      if (!this.catalog.copiedOn(rec, holder.id)) continue;
      if (where === 'internal' && current !== undefined && rec.usertime < current && this.#onRamdisk(rec)) continue; // left for the clean-up (#guard)
      const down = this.#downFor(rec, where);
      if (down) waiting.set(down, (waiting.get(down) ?? 0) + 1);
      else n++;
    }
    const how = links ? `replaced by links to their copies there` : 'deleted';
    const parts: string[] = [];
    if (n > 0) parts.push(`files already copied to storage ${holder.id} are being ${how} (${n} now)`);
    for (const [st, m] of waiting) {
      parts.push(`storage ${st.id}: ${probedAt(st)} ${this.#downWhy(st)}, so none of the ${m} files here copied to it can be ` +
        `${links ? 'replaced by a link' : 'deleted'} now (each copy is checked there first, and a link to it would dangle): ` +
        `they stay here as they are, nothing is freed for them, and the guard goes on by itself once ${probedAt(st)} is ` +
        `${this.#backWhen(st)} (a ${links ? 'LINK_ERROR' : 'DEL_ERROR'} naming it says so every minute meanwhile)`);
    }
    if (parts.length > 0) return parts.join('; ');
    return `no file here is copied to storage ${holder.id} yet, so nothing can be ${links ? 'replaced by a link' : 'deleted'} ` +
      `until copies are made there (is storage ${holder.id} full, failing or not mounted?)`;
  }

  /** Where the original of `rec` on `where` is: the trusted directory it is walked from, the path below it, and for messages. */
  #place(rec: FileRecord, where: Where): { root: string; rel: string; file: string } {
    if (where === 'ramdisk') {
      const root = this.settings.ramdiskRoot;
      return { root, rel: path.relative(root, rec.src), file: rec.src };
    }
    const rel = this.catalog.relOn(rec, this.internal.id);
    return { root: this.internal.target, rel, file: destOf(this.internal, rel) };
  }

  /**
   * Checks that entry `name` of the held `dir` is still the original we recorded, and that its copy on
   * `holder` is complete and flushed. Returns the original's owner, or undefined when it must not be touched.
   */
  async #verify(rec: FileRecord, where: Where, holder: StorageInfo | undefined, dir: DirFd, name: string): Promise<{ uid: number; gid: number } | undefined> {
    const st = await lstat(dir.at(name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!st) {
      await this.#gone(rec, where);
      return undefined;
    }
    const original = where === 'ramdisk' ? st.isFile() && st.ino === rec.ino && st.dev === rec.dev && sameFile(st, rec) : st.isFile() && sameFile(st, rec);
    if (!original) {
      this.log.warn({ file: dir.show(name) }, 'not touching a file that is no longer the delivered one');
      await this.catalog.setOrigin(rec, where, 'gone');
      return undefined;
    }
    if (holder) await this.#copyComplete(rec, holder);
    return { uid: st.uid, gid: st.gid };
  }

  /**
   * Throws unless the copy of `rec` on `holder` is a complete regular file, reached from the storage's target
   * without following links (the directory may be the user's too); fsyncs its directory, so that the rename
   * that gave it its name survives a crash of the machine before the original goes. An internal copy the
   * internal guard replaced by a link to its external copy (G7) counts by that external copy.
   */
  async #copyComplete(rec: FileRecord, holder: StorageInfo): Promise<void> {
    const on = holder === this.internal && rec.internal === 'linked' && this.external ? this.external : holder;
    const rel = this.catalog.relOn(rec, on.id);
    const copy = destOf(on, rel);
    const held = targetMissing(on, () => DirFd.openParent(on.target, rel));
    if (!held) throw new Error(`its copy ${copy} is missing (its directory is gone)`);
    try {
      const cst = await lstat(held.dir.at(held.name)).catch(() => undefined);
      if (!cst) throw new Error(`its copy ${copy} is missing (removed from the storage?); the original stays`);
      if (!cst.isFile()) throw new Error(`its copy ${copy} is not a regular file any more; the original stays`);
      if (!sameFile(cst, rec)) throw new Error(`its copy ${copy} is not complete (its size or mtime is not the original's); the original stays`);
      await fsyncFd(held.dir.fd);
    } finally {
      held.dir.close();
    }
  }

  async #link(rec: FileRecord, where: Where, holder: StorageInfo): Promise<boolean> {
    const place = this.#place(rec, where);
    const { file } = place;
    const copy = destOf(holder, this.catalog.relOn(rec, holder.id));
    try {
      // Journaled before the link is made (once per directory and shift): a link is then the shift's to sweep at
      // its end (G5), also one a grimseld killed before its record said 'linked' left, which nothing else removes.
      await this.catalog.noteLinkDir(rec.usertime, { where, dir: path.dirname(place.rel), to: path.dirname(copy) });
      const done = await this.#inOriginalsDir(rec, where, place, async (dir, name) => {
        const owner = await this.#verify(rec, where, holder, dir, name);
        if (!owner) return false;
        const tmp = linkTempName(this.#tempKey, name, rec.id);
        // A link of this name left by a grimseld of a release before the link room (link-room.ts), killed before
        // its rename, goes first (else it would stay, and dangle once the copy it names is gone).
        await unlink(dir.at(tmp)).catch(() => {});
        await this.#makeLink(copy, place.root, rec, owner, dir, name, tmp);
        return true;
      });
      if (done) await this.catalog.setOrigin(rec, where, 'linked');
      return done;
    } catch (e) {
      if (await this.#unmountedMeanwhile(rec, where)) return false;
      if (await this.#readOnlyMeanwhile(e, where)) return false;
      if (await this.#copyToBeMadeAgain(rec, where)) return false;
      this.messages.publish('LINK_ERROR', file, `cannot replace ${file} by a link to ${copy}: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * Replaces entry `name` of the held `dir` by a link reading `copy`, owned as `owner` and with its shift's start as
   * its mtime (link-dirs.ts), made and given both in the link room below `root` (link-room.ts) and renamed into
   * place: atomic, readers see the file or the link, never nothing. Only where the room cannot be had or is on
   * another file system than `dir` (a mount below the root) is the link made in `dir` under `tmp`, and then
   * neither owned nor timed: either, asked for a name in a directory the user may write in, could be turned on a
   * hard link to another file of theirs put in its place.
   */
  async #makeLink(copy: string, root: string, rec: FileRecord, owner: { uid: number; gid: number }, dir: DirFd, name: string, tmp: string): Promise<void> {
    let room: DirFd | undefined;
    try {
      room = openLinkRoom(root, (was, now) => {
        // A user who keeps making the name again (on a 1777 root) gets a line a minute, with how many, not one each time.
        const times = (this.#asideCount.get(root) ?? 0) + 1;
        this.#asideCount.set(root, times);
        if (!this.#asideSaid.due(root)) return;
        this.#asideCount.delete(root);
        this.log.warn({ was, now, times }, `${was} was not grimseld's (made by someone else first): renamed to ${now}, and grimseld's own link room made` +
          (times > 1 ? ` (${times} times since this was last said)` : ''));
      });
    } catch (e) {
      if (this.#roomless.due(root)) this.log.warn({ root, err: (e as Error).message }, 'fill guard links are made where the originals are, owned by root, with the time they are made');
    }
    if (room) {
      const made = room.at(roomName(rec.id));
      try {
        await symlink(copy, made);
        // A file system that cannot set a link's times keeps the time it was made, which serves but for a step.
        await lutimes(made, shiftSeconds(rec.usertime), shiftSeconds(rec.usertime)).catch(() => undefined);
        await lchown(made, owner.uid, owner.gid);
        await rename(made, dir.at(name));
        return;
      } catch (e) {
        await unlink(made).catch(() => {});
        if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
        // Once per file system (not per directory: run directories may each be a mount of their own).
        if (this.#roomless.due(`dev ${fstatSync(dir.fd).dev}`)) this.log.warn({ dir: dir.show(), room: room.show() }, 'fill guard links in directories on this file system, another than their link room\'s, are made beside their originals, owned by root, with the time they are made');
      } finally {
        room.close();
      }
    }
    await symlink(copy, dir.at(tmp));
    try {
      await rename(dir.at(tmp), dir.at(name));
    } catch (e) {
      await unlink(dir.at(tmp)).catch(() => {});
      throw e;
    }
  }

  /** Deletes an original (or a link we made in its place) once its internal copy exists. */
  async #remove(rec: FileRecord, where: Where): Promise<boolean> {
    const place = this.#place(rec, where);
    const { file } = place;
    try {
      const done = await this.#inOriginalsDir(rec, where, place, async (dir, name) => {
        if (rec[where] === 'linked') {
          const target = await readlink(dir.at(name)).catch(() => undefined);
          if (target === undefined) {
            await this.#gone(rec, where);
            return false;
          }
          if (!target.startsWith('/')) return false; // not a link of ours
        } else if (!(await this.#verify(rec, where, where === 'ramdisk' ? this.internal : this.external, dir, name))) {
          return false;
        }
        await unlink(dir.at(name));
        await unlink(dir.at(linkTempName(this.#tempKey, name, rec.id))).catch(() => {}); // a killed link's leftover, as in #link
        return true;
      });
      // An internal copy goes only once its shift has ended (G5, and G7's deletions of ended shifts' copies).
      if (done && where === 'internal' && this.external) this.#emptied.note(place.rel);
      if (done) await this.catalog.setOrigin(rec, where, 'deleted');
      return done;
    } catch (e) {
      if (await this.#unmountedMeanwhile(rec, where)) return false;
      if (await this.#readOnlyMeanwhile(e, where)) return false;
      if (await this.#copyToBeMadeAgain(rec, where)) return false;
      this.messages.publish('DEL_ERROR', file, `cannot delete ${file}: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * Notes the original of `rec` at `where` gone (its name or its directory is not there), unless it is an internal
   * copy on a storage whose mount point is not mounted (G13): what is missing then is the whole disk, back once it is
   * mounted again. Throws then (said once for the storage, tried again once it is mounted); noted gone,
   * the copy would have stayed on that disk for good, never deleted (G5) nor linked (G7). On the ramdisk (tmpfs)
   * an unmount takes the files with it.
   */
  async #gone(rec: FileRecord, where: Where): Promise<void> {
    const mountpoint = where === 'internal' ? this.internal.mountpoint : undefined;
    if (mountpoint && !(await this.isMounted(mountpoint))) throw new Error(`${mountpoint} is not mounted: the file is left until it is again`);
    await this.catalog.setOrigin(rec, where, 'gone');
  }

  /**
   * Runs `act` on the original of `rec` at `where` (`place`, as #place gives it): its directory held (reached without following links) and
   * its name there, the directory closed afterwards. A directory that is gone (removed by a user, say) took the
   * file with it: the original is noted gone and nothing runs (false).
   */
  async #inOriginalsDir(rec: FileRecord, where: Where, place: { root: string; rel: string },
    act: (dir: DirFd, name: string) => Promise<boolean>): Promise<boolean> {
    const held = where === 'internal' ? targetMissing(this.internal, () => DirFd.openParent(place.root, place.rel)) : DirFd.openParent(place.root, place.rel);
    if (!held) {
      await this.#gone(rec, where);
      return false;
    }
    return DirFd.with(held.dir, (d) => act(d, held.name));
  }

}


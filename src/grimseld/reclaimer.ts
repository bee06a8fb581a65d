// Frees space without losing a byte (SPEC G5, G6, G7, G12): originals are replaced by links to their copy, or
// deleted, only once that copy is complete and flushed; oldest first; never through a planted link.
import { constants } from 'node:fs';
import { lstat, open, readlink, rename, symlink, unlink, lchown, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sameFile } from './copier.js';
import { assertNoLinks, dirState } from './safe-path.js';
import { fillState } from './mounts.js';
import { sleep } from '../common/abort.js';
import type { Catalog, FileRecord } from './catalog.js';
import type { MessageHub, MessageCode } from './messages.js';
import type { ShiftBook } from './shift-book.js';
import type { Storage } from './storage.js';
import type { Logger } from '../common/logger.js';

export interface ReclaimSettings {
  ramdiskRoot: string;
  ramdiskMountpoint: string;
  createLinks: boolean;
  fillLimitPercent: number;
  intervalMs: number;
}

type Where = 'ramdisk' | 'internal';

/** Fill-state alarms, each sent once per crossing (re-armed when the fill state drops below the limit). */
const ALARMS: Array<{ code: MessageCode; atPercent: (limit: number) => number }> = [
  { code: 'FILLSTATE_LIMIT', atPercent: (limit) => limit },
  { code: 'ALMOST_OVERFLOW', atPercent: (limit) => Math.max(limit, 95) },
  { code: 'DISK_OVERFLOW', atPercent: () => 99.5 },
];

export class Reclaimer {
  #raised = new Map<string, Set<MessageCode>>();
  /** Earlier shifts may have originals to clean (set at a shift start and while some wait for copies). */
  #shiftChanged = true;

  constructor(
    private readonly catalog: Catalog,
    private readonly book: ShiftBook,
    private readonly internal: Storage,
    private readonly external: Storage | undefined,
    private readonly settings: ReclaimSettings,
    private readonly messages: MessageHub,
    private readonly log: Logger,
  ) {}

  /** A new shift started: earlier shifts' originals go as soon as they may (G5). */
  shiftStarted(): void {
    this.#shiftChanged = true;
  }

  async run(signal: AbortSignal): Promise<void> {
    let lastError = '';
    while (!signal.aborted) {
      try {
        await this.#tick();
        lastError = '';
      } catch (e) {
        // Logged once per distinct problem (a ramdisk not mounted yet would otherwise log 4 times a second).
        const msg = (e as Error).message;
        if (msg !== lastError) this.log.error({ err: e }, 'reclaiming space failed');
        lastError = msg;
      }
      await sleep(this.settings.intervalMs, signal);
    }
  }

  async #tick(): Promise<void> {
    if (this.#shiftChanged) await this.#cleanEarlierShifts();
    await this.#guard('ramdisk', this.settings.ramdiskMountpoint);
    if (this.external && this.internal.mountpoint) await this.#guard('internal', this.internal.mountpoint);
  }

  /** G5: ramdisk originals (and their links) of earlier shifts, and with EXTERNAL their internal copies. */
  async #cleanEarlierShifts(): Promise<void> {
    const current = this.book.current?.usertime;
    if (current === undefined) return;
    let waiting = false;
    for (const rec of this.catalog.files.values()) {
      if (rec.usertime >= current) continue;
      if (rec.onRamdisk && rec.ramdisk !== 'deleted' && rec.ramdisk !== 'gone') {
        if (this.catalog.copiedOn(rec, this.internal.id)) await this.#remove(rec, 'ramdisk');
        else waiting = true;
      }
      if (!this.catalog.isLive(rec)) continue; // settled by the removal: nothing left to clean
      if (this.external && rec.internal === 'present' && (!rec.onRamdisk || rec.ramdisk === 'deleted' || rec.ramdisk === 'gone')) {
        if (this.catalog.copiedOn(rec, this.external.id) && this.catalog.copiedOn(rec, this.internal.id)) await this.#remove(rec, 'internal');
        else waiting = true;
      }
    }
    this.#shiftChanged = waiting;
  }

  /** G6 / G7: above the fill limit, oldest first, originals whose copy exists are linked to it (or deleted). */
  async #guard(where: Where, mountpoint: string): Promise<void> {
    let fill = await fillState(mountpoint);
    this.#alarm(mountpoint, fill.percent);
    if (fill.percent < this.settings.fillLimitPercent) return;
    const copyHolder = where === 'ramdisk' ? this.internal : this.external!;
    let freed = 0;
    for (const rec of this.catalog.files.values()) {
      const eligible = where === 'ramdisk'
        ? rec.onRamdisk && rec.ramdisk === 'present'
        : rec.internal === 'present' && this.catalog.copiedOn(rec, this.internal.id);
      if (!eligible || !this.catalog.copiedOn(rec, copyHolder.id)) continue;
      // G7 always links (the internal disk is the user's data); G6 as configured. Read before: the record
      // may be settled by it.
      const size = rec.size;
      const linked = where === 'internal' || this.settings.createLinks ? await this.#link(rec, where, copyHolder) : await this.#remove(rec, where);
      if (!linked) continue;
      freed += size;
      // Re-read the fill state every few MB freed rather than after every file.
      if (freed >= fill.totalBytes / 200) {
        freed = 0;
        fill = await fillState(mountpoint);
        if (fill.percent < this.settings.fillLimitPercent) break;
      }
    }
    fill = await fillState(mountpoint);
    this.#alarm(mountpoint, fill.percent);
  }

  #alarm(mountpoint: string, percent: number): void {
    let raised = this.#raised.get(mountpoint);
    if (!raised) this.#raised.set(mountpoint, (raised = new Set()));
    if (percent < this.settings.fillLimitPercent) {
      raised.clear();
      return;
    }
    for (const a of ALARMS) {
      if (percent >= a.atPercent(this.settings.fillLimitPercent) && !raised.has(a.code)) {
        raised.add(a.code);
        this.messages.publish(a.code, mountpoint, `${mountpoint} is ${percent.toFixed(1)}% full ` +
          `(limit ${this.settings.fillLimitPercent}%); copied files are being ${this.settings.createLinks ? 'replaced by links' : 'deleted'}, files not yet copied are never touched`);
      }
    }
  }

  #paths(rec: FileRecord, where: Where): { file: string; base: string } {
    return where === 'ramdisk'
      ? { file: rec.src, base: this.settings.ramdiskRoot }
      : { file: this.internal.destOf(this.catalog.relOn(rec, this.internal.id)), base: this.internal.target };
  }

  /**
   * Checks that `file` is still the original we recorded (no link planted on the way), and that its copy
   * on `holder` is complete and flushed. Returns the original's lstat, or undefined when it must not be touched.
   */
  async #verify(rec: FileRecord, where: Where, holder: Storage | undefined): Promise<{ uid: number; gid: number } | undefined> {
    const { file, base } = this.#paths(rec, where);
    if (dirGone(base, file)) {
      await this.catalog.setOrigin(rec, where, 'gone');
      return undefined;
    }
    const st = await lstat(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!st) {
      await this.catalog.setOrigin(rec, where, 'gone');
      return undefined;
    }
    const original = where === 'ramdisk' ? st.isFile() && st.ino === rec.ino && st.dev === rec.dev && sameFile(st, rec) : st.isFile() && sameFile(st, rec);
    if (!original) {
      this.log.warn({ file }, 'not touching a file that is no longer the delivered one');
      await this.catalog.setOrigin(rec, where, 'gone');
      return undefined;
    }
    if (holder) {
      const copy = holder.destOf(this.catalog.relOn(rec, holder.id));
      const cst = await stat(copy);
      if (!cst.isFile() || !sameFile(cst, rec)) throw new Error(`its copy ${copy} is not complete`);
      await syncDir(path.dirname(copy));
    }
    return { uid: st.uid, gid: st.gid };
  }

  async #link(rec: FileRecord, where: Where, holder: Storage): Promise<boolean> {
    const { file } = this.#paths(rec, where);
    const copy = holder.destOf(this.catalog.relOn(rec, holder.id));
    try {
      const owner = await this.#verify(rec, where, holder);
      if (!owner) return false;
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.grimsel-link-${randomBytes(4).toString('hex')}`);
      await symlink(copy, tmp);
      try {
        await lchown(tmp, owner.uid, owner.gid);
        await rename(tmp, file); // atomic: readers see the file or the link, never nothing
      } catch (e) {
        await unlink(tmp).catch(() => {});
        throw e;
      }
      await this.catalog.setOrigin(rec, where, 'linked');
      return true;
    } catch (e) {
      this.messages.publish('LINK_ERROR', file, `cannot replace ${file} by a link to ${copy}: ${(e as Error).message}`);
      return false;
    }
  }

  /** Deletes an original (or a link we made in its place) once its internal copy exists. */
  async #remove(rec: FileRecord, where: Where): Promise<boolean> {
    const { file, base } = this.#paths(rec, where);
    try {
      if (rec[where] === 'linked') {
        if (dirGone(base, file)) {
          await this.catalog.setOrigin(rec, where, 'gone');
          return false;
        }
        const target = await readlink(file).catch(() => undefined);
        if (target === undefined) {
          await this.catalog.setOrigin(rec, where, 'gone');
          return false;
        }
        if (!target.startsWith('/')) return false; // not a link of ours
      } else if (!(await this.#verify(rec, where, where === 'ramdisk' ? this.internal : this.external))) {
        return false;
      }
      await unlink(file);
      await this.catalog.setOrigin(rec, where, 'deleted');
      return true;
    } catch (e) {
      this.messages.publish('DEL_ERROR', file, `cannot delete ${file}: ${(e as Error).message}`);
      return false;
    }
  }
}

/**
 * Whether the directory of `file` below `base` was removed (by a user, say): then so was the file, and there
 * is nothing left to clean up. A missing `base` (an unmounted ramdisk) is not that. Throws, naming it, when a
 * link or a file is on the way.
 */
function dirGone(base: string, file: string): boolean {
  const dir = path.dirname(file);
  const state = dirState(base, dir);
  if (state === 'missing' && dirState(base, base) === 'safe') return true;
  assertNoLinks(base, dir, state);
  return false;
}

/** fsyncs a directory so that renames into it survive a crash of the machine (before deleting originals). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

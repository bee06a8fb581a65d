// Where files enter grimseld: furkad's deliveries and operators' additions (SPEC G2, G8). Checks first, then queues.
import { lstat } from 'node:fs/promises';
import { isSafeRelative, splitMarked, unmark } from '../common/paths.js';
import type { Logger } from '../common/logger.js';
import type { ShiftBook } from './shift-book.js';
import type { Storage } from './storage.js';

/** A path refused at the door: the message names the path and the reason. */
export class RejectedPath extends Error {}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Checks a marked path and returns its real path and the part to replicate. Throws RejectedPath. */
export function checkMarkedPath(p: string): { src: string; rel: string } {
  if (typeof p !== 'string' || p === '') throw new RejectedPath('empty path');
  if (CONTROL.test(p)) throw new RejectedPath(`path ${JSON.stringify(p)} contains control characters`);
  if (!p.startsWith('/')) throw new RejectedPath(`path '${p}' is not absolute`);
  const { rel } = splitMarked(p);
  if (!isSafeRelative(rel)) throw new RejectedPath(`path '${p}': the part after './' must stay below it ('${rel}')`);
  return { src: unmark(p), rel };
}

export class Intake {
  constructor(
    private readonly book: ShiftBook,
    private readonly storages: Storage[],
    private readonly log: Logger,
  ) {}

  shiftStarted(usertime: bigint, uid: number, gid: number): void {
    const known = this.book.get(usertime);
    this.book.begin(usertime, uid, gid);
    if (!known) this.log.info({ usertime: String(usertime), uid, gid }, 'shift started');
  }

  /** Files furkad has put on the ramdisk; they are queued for every storage (G2). */
  delivered(usertime: bigint, uid: number, gid: number, paths: string[]): void {
    this.shiftStarted(usertime, uid, gid);
    for (const p of paths) {
      try {
        this.#queue(usertime, checkMarkedPath(p));
      } catch (e) {
        this.log.error({ path: p }, `delivered file refused: ${(e as Error).message}`);
      }
    }
  }

  /** An operator's file (G8): must exist and be a regular file; it joins the current shift. */
  async add(p: string): Promise<void> {
    const checked = checkMarkedPath(p);
    const st = await lstat(checked.src).catch(() => undefined);
    if (!st) throw new RejectedPath(`file '${checked.src}' does not exist`);
    if (!st.isFile()) throw new RejectedPath(`'${checked.src}' is not a regular file`);
    const shift = this.book.current;
    if (!shift) throw new RejectedPath('no shift has started yet (start one with furkad first)');
    this.#queue(shift.usertime, checked);
    this.log.info({ path: p }, 'file added');
  }

  #queue(usertime: bigint, f: { src: string; rel: string }): void {
    for (const s of this.storages) {
      this.book.count(usertime, s.id, undefined, 'pending');
      s.enqueue({ src: f.src, rel: f.rel, usertime });
    }
  }
}

// Room on the PPU ramdisk for one detector's files (F1, F10). A file larger than the free space there fails the
// whole rsync run it is in (rsync's receiver ends at the first write error), and every run after it, so every file
// that sorts after it would stay on the detector for good. Once a run has failed so, the next runs pass rsync
// `--max-size` with the free space at their start: the files that fit go on, the ones that do not wait on the
// detector (their sources kept), named (lastError; the log says new ones in a few lines, room-notice.ts), and are
// taken by themselves once there is room. A run that leaves
// nothing behind lifts the limit. Per file, not cumulative: files that fit one by one but not together fail a
// run again, after the ones before them were placed, so every run still moves something. Settle mode's copies made
// before the limit (beside staging) take no more room: they are compared without it, and taken (rsync-transport.ts).
import { availableBytes, roomOf } from '../common/statfs.js';
import type { Logger } from '../common/logger.js';
import { fewNames, namedFew, noRoomMessage, outOfInodes, RoomNotice } from './room-notice.js';

export class StagingRoom {
  /** Set by a run that failed for lack of room; cleared by a limited run that left nothing behind. */
  #limited = false;
  /** Files waiting on the detector for room (as named by rsync): the last run's, for lastError (note()). */
  #waiting = new Set<string>();
  /** What the log says of them: new ones in a few lines, not one per file (room-notice.ts, S4). */
  readonly #notice: RoomNotice;

  constructor(private readonly id: string, private readonly log: Logger, now?: () => number) {
    this.#notice = new RoomNotice(id, log, now);
  }

  /** --max-size for the next run (free bytes on `dir`'s file system), or undefined: no limit. */
  async limit(dir: string): Promise<number | undefined> {
    if (!this.#limited) return undefined;
    // Not known (a hung statfs): no limit, as before this run failed; a run that fails again says so.
    return availableBytes(dir).catch(() => undefined);
  }

  /** A run failed for lack of room on `dir`'s file system, receiving `rel` (if known): its message. */
  async full(dir: string, rel: string | undefined, size: number | undefined): Promise<string> {
    this.#limited = true;
    const room = await roomOf(dir);
    const free = room?.bytes;
    const inodes = room?.inodes;
    if (rel === undefined) {
      return `${inodes?.free === 0 ? outOfInodes(free, inodes.total) : `the PPU ramdisk has no room left (${free ?? '?'} bytes free)`}: files stay on the detector until there is room`;
    }
    this.#waiting.add(rel);
    this.#notice.waiting([rel], free, size);
    return noRoomMessage(rel, size, free, inodes);
  }

  /** A limited run ended well, leaving `over` on the detector for being larger than the free space. */
  ran(over: string[], limit: number | undefined): void {
    if (limit === undefined) return;
    const now = new Set(over); // a Set: tens of thousands may wait behind a full ramdisk, and a list's includes() is per file
    const left = [...this.#waiting].filter((rel) => !now.has(rel));
    this.#waiting = now;
    if (over.length > 0) {
      this.#notice.waiting(over, limit);
      this.#notice.still(now);
      return;
    }
    this.#limited = false;
    this.#notice.clear();
    // Named as few: the last run may have left tens of thousands, and one line of them all is a flood of its own.
    const named = fewNames(left);
    this.log.info({ detector: this.id, files: named, count: left.length },
      `the PPU ramdisk has room again: ${left.length} ${left.length === 1 ? 'file' : 'files'} that waited on the detector for it ${left.length === 1 ? 'is' : 'are'} taken` +
      (left.length === 0 ? '' : `: ${namedFew(named, left.length)}`));
  }

  /** What lastError says while files wait for room ('' = none). */
  note(): string {
    const n = this.#waiting.size;
    if (n === 0) return '';
    const first = [...this.#waiting][0] ?? '';
    return `${n} ${n === 1 ? 'file waits' : 'files wait'} on the detector until the PPU ramdisk has room (larger than its free space), ` +
      `${n === 1 ? '' : 'e.g. '}'${first}'; other files go on`;
  }
}

// A copy grimseld made and still counts on, gone from a storage whose disk is the same one (G3, G5, G7, G9): its user
// moved, compressed or deleted it (the shift's directory on the storage is theirs), or an administrator changed the
// storage's target. The reclaimer finds it when it checks the copy before it links or deletes the original. Before,
// the original then stayed for good, the status kept counting the copy, and each try was another LINK_ERROR or
// DEL_ERROR: the oldest files of the ramdisk, never freed, until it filled (found by a hostile tester, session 36).
// Now such a copy is pending again and made again from the original (or another copy), as copies lost with a
// swapped disk are (storage-marks.ts); the original goes only once that copy is there.
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';
import type { Catalog, FileRecord } from './catalog.js';
import { copyIsAt } from './copy-source.js';
import type { Dispatcher } from './dispatcher.js';
import type { MessageHub } from './messages.js';
import { destOf, type StorageInfo } from './storage-info.js';

/** How often a storage's gone copies are said (a COPY_ERROR), with how many were found since it was last said. */
const SAY_EVERY_MS = 60_000;

interface Unsaid {
  n: number;
  /** The first copy found gone since the last message. */
  first?: string | undefined;
  saidAt: number;
  timer?: NodeJS.Timeout | undefined;
}

export class LostCopies {
  /** Per storage: gone copies found and not said yet, when it was last said, and the timer that says them. */
  readonly #unsaid = new Map<string, Unsaid>();

  constructor(
    private readonly catalog: Catalog,
    private readonly planner: Pick<Dispatcher, 'canCopyAgain' | 'copyAgain'>,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly now: () => number = monotonicMs,
    private readonly sayEveryMs = SAY_EVERY_MS,
  ) {}

  /**
   * Whether the copy of `rec` on `st` is not there (no regular file of the original's size and mtime at its path)
   * and is to be made again: the catalog has it pending then, and its storage's queue has it. A copy that cannot be
   * made again (nothing left to read it from) stays counted as copied, and the reclaimer says why it waits. Never rejects.
   */
  async copyAgainIfGone(rec: FileRecord, st: StorageInfo): Promise<boolean> {
    try {
      if (!this.catalog.isLive(rec) || !this.catalog.copiedOn(rec, st.id)) return false;
      // An internal copy the guard linked or deleted (G7) is not expected there.
      if (st.type === 'INTERNAL' && rec.internal !== 'present') return false;
      const at = destOf(st, this.catalog.relOn(rec, st.id));
      if (await copyIsAt(at, rec)) return false;
      if (!this.planner.canCopyAgain(rec, st.id)) return false;
      await this.catalog.setLost([rec], st.id);
      if (!this.catalog.isLive(rec) || this.catalog.copiedOn(rec, st.id)) return false;
      this.planner.copyAgain(rec, st.id);
      this.#say(st, at);
      return true;
    } catch (e) {
      this.log.warn({ err: e, storage: st.id, file: rec.src }, `storage ${st.id}: cannot look for the copy of ${rec.src} there`);
      return false;
    }
  }

  /**
   * One COPY_ERROR for the storage at most every sayEveryMs, counting the copies found gone since the last and
   * naming the first of them: at once if the last was that long ago, else when that time has passed.
   */
  #say(st: StorageInfo, at: string): void {
    let u = this.#unsaid.get(st.id);
    if (!u) this.#unsaid.set(st.id, (u = { n: 0, saidAt: -Infinity }));
    u.n++;
    u.first ??= at;
    const wait = u.saidAt + this.sayEveryMs - this.now();
    if (wait <= 0) this.#publish(st, u);
    else if (!u.timer) {
      const due = u;
      u.timer = setTimeout(() => this.#publish(st, due), wait);
      u.timer.unref();
    }
  }

  #publish(st: StorageInfo, u: Unsaid): void {
    clearTimeout(u.timer);
    u.timer = undefined;
    if (u.n === 0 || u.first === undefined) return;
    this.messages.publish('COPY_ERROR', u.first,
      `storage ${st.id}: ${u.n === 1 ? `the copy ${u.first} is` : `${u.n} copies (${u.first} among them) are`} not there any more ` +
      `(moved, changed or deleted on the storage, or its target changed in grimseld.conf?): copied to it again from the ` +
      'original, which stays until that copy is made (G5); said at most once a minute for the storage');
    u.n = 0;
    u.first = undefined;
    u.saidAt = this.now();
  }
}

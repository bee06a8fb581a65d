// Copies that wait for the storage they must read their file from (G5, G7, G13): once a file's original went, a
// storage other than INTERNAL reads the internal copy, and an OPTIONAL one the EXTERNAL copy once the internal one
// went too (G7 links it away). While the storage read from is not mounted (the EXTERNAL disk taken home), such a
// copy waits for it, pending, not failed: said once per pair of storages (and again every minute while it lasts),
// naming the storage waited for and how many wait (at the first look, a second after the first one waits: by then
// the writers have met the rest), and handed back to its writers by itself once that storage is mounted again.
// Tried instead, each copy failed for ever with the bare ENOENT of the unmounted target (found by a tester).
import type { Later } from './dispatcher.js';
import type { MessageHub } from './messages.js';
import type { StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';
import { SaidOnce } from '../common/said-once.js';

/** How often a storage waited for is looked at (as the mount watch reads the mount table). */
const LOOK_MS = 1000;
/** While copies wait, their message is repeated this often. */
const REPEAT_MS = 60_000;

/** A storage copies wait for: how to look whether it is mounted now, and who waits for it. */
interface Awaited {
  source: StorageInfo;
  /** Whether it is mounted now (MountWatch.ok: read at most once a second). */
  mounted: () => Promise<boolean>;
  /** By the storage the copy is for: the record ids that wait. */
  waiting: Map<string, { dest: StorageInfo; ids: Set<number> }>;
  /** Cancels the next look. */
  cancel: () => void;
}

export class SourceWaits {
  readonly #awaited = new Map<string, Awaited>();
  readonly #said = new SaidOnce(REPEAT_MS);
  #stopped = false;

  constructor(
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly later: Later,
    /** Hands file `id` back to the writers of storage `dest`. */
    private readonly requeue: (dest: string, id: number) => void,
  ) {}

  /**
   * The copy of file `id` on `dest` must read it from `source`, which is not mounted (`mounted` says when it is
   * again): it waits, and is handed back once `source` is mounted.
   */
  wait(source: StorageInfo, mounted: () => Promise<boolean>, dest: StorageInfo, id: number): void {
    if (this.#stopped) return;
    let a = this.#awaited.get(source.id);
    if (!a) {
      a = { source, mounted, waiting: new Map(), cancel: () => undefined };
      this.#awaited.set(source.id, a);
      this.#lookLater(a);
    }
    let w = a.waiting.get(dest.id);
    if (!w) a.waiting.set(dest.id, (w = { dest, ids: new Set() }));
    w.ids.add(id);
  }

  stop(): void {
    this.#stopped = true;
    for (const a of this.#awaited.values()) a.cancel();
    this.#awaited.clear();
  }

  #lookLater(a: Awaited): void {
    a.cancel = this.later(LOOK_MS, () => void this.#look(a));
  }

  async #look(a: Awaited): Promise<void> {
    let mounted = false;
    try {
      mounted = await a.mounted();
    } catch (e) {
      this.log.warn({ err: e, storage: a.source.id }, 'cannot look whether a storage copies wait for is mounted; looked at again');
    }
    if (this.#stopped || this.#awaited.get(a.source.id) !== a) return;
    if (!mounted) {
      for (const w of a.waiting.values()) this.#say(a.source, w.dest, w.ids.size);
      this.#lookLater(a);
      return;
    }
    this.#awaited.delete(a.source.id);
    for (const w of a.waiting.values()) {
      this.#said.forget(this.#key(a.source, w.dest));
      this.log.info({ storage: w.dest.id, from: a.source.id, files: w.ids.size },
        `storage ${a.source.id} is mounted again: the ${w.ids.size} copies to storage ${w.dest.id} that waited for it go on`);
      for (const id of w.ids) this.requeue(w.dest.id, id);
    }
  }

  #key(source: StorageInfo, dest: StorageInfo): string {
    return `${source.id}\0${dest.id}`;
  }

  /** COPY_ERROR (the code about copies; short `src:dest` as the two storages' targets), once per REPEAT_MS and pair. */
  #say(source: StorageInfo, dest: StorageInfo, n: number): void {
    if (!this.#said.due(this.#key(source, dest))) return;
    const went = source.type === 'INTERNAL' ? 'their originals went once they were copied there (G5, G6)'
      : 'their originals and internal copies went once they were copied there (G5, G7)';
    this.messages.publish('COPY_ERROR', `${source.target}:${dest.target}`,
      `storage ${dest.id}: ${n} file(s) wait for storage ${source.id} (${source.type}), which holds the only copy of them left to read ` +
      `(${went}), and ${source.mountpoint ?? source.target} is not mounted or does not answer; they stay pending, nothing failed, and ` +
      `are copied to ${dest.id} as soon as ${source.mountpoint ?? source.target} is mounted again`);
  }
}

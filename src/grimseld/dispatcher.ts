// Hands every file to every storage, records outcomes in the catalog, retries what failed, and says so
// (G1, G3, G10, G12, G13). Each copy is checked against the file's checksum (I2) and carries it (I3).
import * as path from 'node:path';
import { ChecksumMismatch, SourceChanged } from './copier.js';
import { tagged, untagged } from '../common/checksum.js';
import type { Catalog, FileRecord } from './catalog.js';
import type { MessageHub } from './messages.js';
import type { CopyJob, CopyReport, Storage, StorageEvents } from './storage.js';
import type { Logger } from '../common/logger.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** While a storage's mount point is missing, the error is repeated this often (sooner while files wait for it). */
const UNMOUNTED_REPEAT_MS = 60_000;
const UNMOUNTED_REPEAT_BUSY_MS = 10_000;

export class Dispatcher implements StorageEvents {
  #attempts = new Map<string, number>();
  /** Failures announced as checksum mismatches, by `id:storage`: a mismatch after another failure is said too. */
  #mismatchSaid = new Set<string>();
  /**
   * Files without a checksum (an operator's) whose first complete read is under way on one storage, and the
   * storages waiting for it: the checksum that read finds becomes the file's, and every other copy is checked
   * against it. Two first reads at once could find two different files (one changed in place between them).
   */
  #firstRead = new Map<number, Set<Storage>>();
  /** Storages whose copies' attribute namespace was said (copy-provenance.ts): once each. */
  #attributesSaid = new Set<string>();
  #unmounted = new Map<string, number>();
  #timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly catalog: Catalog,
    private readonly storages: Storage[],
    private readonly messages: MessageHub,
    private readonly log: Logger,
  ) {}

  get internal(): Storage {
    return this.storages.find((s) => s.type === 'INTERNAL')!;
  }

  /** Queues what is still to be done for each record on each storage (`resumed`: after a restart). */
  submit(recs: Iterable<FileRecord>, resumed = false): void {
    for (const rec of recs) {
      for (const s of this.storages) if (!this.catalog.doneOn(rec, s.id)) s.enqueue(rec.id, resumed);
    }
  }

  /** Where to read a file now: the original while it is there, else its internal copy (G6 with create_links = no). */
  resolve(storage: Storage, id: number, sweep: boolean): CopyJob | undefined {
    const rec = this.catalog.files.get(id);
    if (!rec || this.catalog.doneOn(rec, storage.id)) return undefined;
    const checksum = rec.checksum === undefined ? undefined : untagged(rec.checksum);
    if (checksum === undefined) {
      // A first read is under way elsewhere: this storage waits for its checksum (queued again then).
      const waiting = this.#firstRead.get(id);
      if (waiting) {
        waiting.add(storage);
        return undefined;
      }
      this.#firstRead.set(id, new Set());
    }
    const rel = rec.rel;
    const shift = this.catalog.shiftOf(rec);
    const detector = rec.detector;
    // I3: what every copy carries besides its checksum.
    const check = { checksum, provenance: { ...(shift ? { shift } : {}), ...(detector !== undefined ? { detector } : {}) } };
    // Copies of copies (the internal copy, once the original is gone) are checked against the file's checksum too.
    if (rec.ramdisk === 'present' || storage.type === 'INTERNAL') {
      return { id, src: rec.src, root: this.catalog.sourceRoot(rec), rel, expect: { size: rec.size, mtimeMs: rec.mtimeMs, ino: rec.ino, dev: rec.dev }, sweep, ...check };
    }
    return { id, src: this.internal.destOf(this.catalog.relOn(rec, this.internal.id)), root: this.internal.target, rel,
      expect: { size: rec.size, mtimeMs: rec.mtimeMs }, sweep, ...check };
  }

  report(r: CopyReport): void {
    void this.#record(r).catch((e: unknown) => {
      // The journal could not be written: the state stays as it was and the copy is redone after a restart.
      this.log.error({ err: e }, 'cannot journal a copy result');
    });
  }

  async #record(r: CopyReport): Promise<void> {
    try {
      await this.#recordResult(r);
    } finally {
      this.#firstReadDone(r.job);
    }
  }

  /** A first read of a file without a checksum reported (I2): the storages that waited for it are queued again. */
  #firstReadDone(job: CopyJob): void {
    if (job.checksum !== undefined) return;
    const waiting = this.#firstRead.get(job.id);
    this.#firstRead.delete(job.id);
    for (const s of waiting ?? []) s.enqueue(job.id, false);
  }

  async #recordResult(r: CopyReport): Promise<void> {
    const rec = this.catalog.files.get(r.job.id);
    if (!rec) return;
    const key = `${rec.id}:${r.storage.id}`;
    if (r.result) this.#sayAttributes(r);
    const made = r.result?.checksum;
    if (!(r.outcome instanceof Error) && r.job.checksum === undefined && made !== undefined && rec.checksum !== undefined && tagged(made) !== rec.checksum) {
      // Read without a checksum while another read found one (cannot happen while first reads wait for each
      // other, above): the bytes are not those the file's checksum is of. Not counted; retried.
      const known = untagged(rec.checksum)!;
      r = { ...r, outcome: ChecksumMismatch.source(r.job.src, known, made) };
    }
    if (!(r.outcome instanceof Error)) {
      this.#attempts.delete(key);
      this.#mismatchSaid.delete(key);
      const wanted = r.storage.destOf(r.job.rel);
      const rel = r.dest === wanted ? undefined : path.join(path.dirname(r.job.rel), path.basename(r.dest));
      // A file without a checksum gets the one of its first complete read, journaled with this copy (I2).
      await this.catalog.setCopy(rec, r.storage.id, 'copied', { rel, verified: r.result?.verified === true,
        checksum: r.job.checksum === undefined && made !== undefined ? tagged(made) : undefined });
      if (rel !== undefined) this.#besideAnother(r, wanted);
      return;
    }
    // A source that changed is hopeless, unless it is our own doing: the original was just replaced
    // by a link or deleted (G6), and the next attempt reads the internal copy instead. A checksum mismatch is
    // retried like any failure: the original stays, never linked nor deleted on the strength of a bad copy (I2).
    const permanent = r.outcome instanceof SourceChanged && rec.ramdisk === 'present';
    await this.catalog.setCopy(rec, r.storage.id, 'failed', { permanent });
    const n = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, n);
    // Every file's failure is announced once (its retries are not): a full disk costs one message per
    // file that could not be written, not one per retry. A checksum mismatch is announced also when an
    // earlier failure of the file was something else.
    const mismatch = r.outcome instanceof ChecksumMismatch;
    if (n === 1 || (mismatch && !this.#mismatchSaid.has(key))) this.#copyError(r, permanent);
    else this.log.debug({ storage: r.storage.id, src: r.job.src, attempt: n }, (r.outcome as Error).message);
    if (mismatch) this.#mismatchSaid.add(key);
    if (permanent) {
      this.#attempts.delete(key);
      this.#mismatchSaid.delete(key);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.catalog.isLive(rec) && !this.catalog.copiedOn(rec, r.storage.id)) r.storage.enqueue(rec.id, true);
    }, Math.min(RETRY_MIN_MS * 2 ** (n - 1), RETRY_MAX_MS));
    timer.unref();
    this.#timers.add(timer);
  }

  /**
   * A copy that went beside a different file of its name (copier.ts) is copied and counted so, but whoever
   * looks for it under its name finds the other file: said as a COPY_ERROR (the code about copies; its short
   * message `src:dest` names where the copy really is), logged with it.
   */
  #besideAnother(r: CopyReport, wanted: string): void {
    this.messages.publish('COPY_ERROR', `${r.job.src}:${r.dest}`,
      `${wanted} on storage ${r.storage.id} holds another file (an earlier shift's, or another file of that name): ` +
      `it is kept, and this copy of ${r.job.src} is ${r.dest}; both are complete, the file counts as copied`);
  }

  /**
   * Which attribute namespace a storage's copies carry their provenance in (I3), said once per storage; a
   * storage that takes none gets its copies all the same, and its checksums are then only in grimseld's
   * journal, while grimseld holds the file (they go with its record once the file is settled).
   */
  #sayAttributes(r: CopyReport): void {
    const a = r.result?.attributes;
    if (a === undefined || this.#attributesSaid.has(r.storage.id)) return;
    this.#attributesSaid.add(r.storage.id);
    const s = { storage: r.storage.id, target: r.storage.target };
    if (a === 'none') {
      this.log.warn(s, `storage ${r.storage.id}: its file system takes no extended attributes (neither user.* nor trusted.*): copies are made ` +
        "without ppu.* attributes; checksum kept in the journal only (while grimseld holds the file), and ppuctl verify cannot check them");
    } else {
      this.log.info(s, `storage ${r.storage.id}: copies carry their checksum, shift and detector as ${a}.ppu.* attributes`);
    }
  }

  #copyError(r: CopyReport, permanent: boolean): void {
    this.messages.publish('COPY_ERROR', `${r.job.src}:${r.dest}`,
      `copy of ${r.job.src} to storage ${r.storage.id} (${r.dest}) failed: ${(r.outcome as Error).message}` +
      (permanent ? '; not retried' : '; retried until it succeeds'));
  }

  mountState(storage: Storage, mounted: boolean): void {
    const since = this.#unmounted.get(storage.id);
    if (mounted) {
      if (since !== undefined) {
        this.#unmounted.delete(storage.id);
        this.log.info({ storage: storage.id, mountpoint: storage.mountpoint }, 'storage mounted again; copying resumes');
      }
      return;
    }
    const now = Date.now();
    const repeat = storage.queued > 0 ? UNMOUNTED_REPEAT_BUSY_MS : UNMOUNTED_REPEAT_MS;
    if (since === undefined || now - since >= repeat) {
      this.#unmounted.set(storage.id, now);
      this.messages.publish('COPY_ERROR', `${storage.mountpoint}:${storage.target}`,
        `storage ${storage.id}: ${storage.mountpoint} is not mounted; nothing is written to ${storage.target} and its ${storage.queued} files stay pending until it is mounted`);
    }
  }

  stop(): void {
    this.#firstRead.clear();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}

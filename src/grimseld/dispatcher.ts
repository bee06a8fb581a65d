// Plans every copy and takes its result back (G1, G3, G10, G12, G13): one queue per storage of the files
// still to copy there, each made a fully resolved CopyJob when a writer of that storage takes it (where to read
// the file now: the original, or its internal copy once the original went, G6); each result recorded in the
// catalog once, a failed copy retried after a backoff, a storage's mount point checked before its writers take
// anything (mount-watch.ts). Each copy is checked against the file's checksum (I2) and carries it (I3).
// The flow is one way: catalog → Dispatcher → JobFeed → Storage (writers) → JobFeed.done → Dispatcher → catalog.
import { ChecksumMismatch, SourceChanged } from './copier.js';
import { NotMounted, RefusedDir } from './copy-dirs.js';
import { tagged, untagged } from '../common/checksum.js';
import { sleep } from '../common/abort.js';
import { takenDirOf } from '../common/numbered-dirs.js';
import type { Catalog, FileRecord } from './catalog.js';
import type { MessageHub } from './messages.js';
import type { CopyJob, CopyReport, ReadFrom } from './copy-job.js';
import { CopyQueue } from './copy-queue.js';
import { MountWatch, MOUNT_RECHECK_MS, type Owed } from './mount-watch.js';
import { destOf, type StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';
import { SaidOnce } from '../common/said-once.js';
import { SourceWaits } from './source-waits.js';
import * as path from 'node:path';
import { lstat } from 'node:fs/promises';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/**
 * A writer takes up to this many waiting files, or this many bytes, at once (BENCHMARKS.md): they are flushed
 * together (copyMany). Only what waits beyond one file per writer is batched, so a live stream is still
 * copied a file at a time, each the moment it comes.
 */
const BATCH_FILES = 16;
const BATCH_BYTES = 16 << 20;

/** What a storage's writers copy (storage.ts): its share of the dispatcher's plan. */
export interface JobFeed {
  /**
   * The next jobs for one writer, once the storage is mounted and something waits for it; an empty batch when
   * there is nothing to do yet (or `signal` aborted): ask again.
   */
  next(signal: AbortSignal): Promise<CopyJob[]>;
  /** The results of a batch next() gave, each once. */
  done(reports: CopyReport[]): void;
}

/** Who watches copies (metrics, the temp-file sweeper); called on the copy path, so they must not block. */
export interface CopyListener {
  /** A job was handed to a writer. */
  taken?(job: CopyJob): void;
  /** A job's result came back (before it is recorded). */
  reported?(report: CopyReport): void;
}

export interface CopyEvents {
  /** Subscribes; returns the unsubscribe function. */
  onCopy(listener: CopyListener): () => void;
}

/** Runs `fn` after `ms` (without keeping the process alive); returns what cancels it. */
export type Later = (ms: number, fn: () => void) => () => void;

const later: Later = (ms, fn) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
};

/** What the dispatcher's timing and mount checks are made of; tests replace them (dispatcher.test.ts). */
export interface DispatcherSeams {
  mountWatch?: (s: StorageInfo) => MountWatch;
  later?: Later;
}

/** The wait before a copy whose result could not be journaled is queued again. */
const JOURNAL_RETRY_MS = 30_000;

/** The wait before retry `n` (1, 2, …) of a failed copy: doubling from a second, at most a minute. */
function retryDelayMs(n: number): number {
  return Math.min(RETRY_MIN_MS * 2 ** (n - 1), RETRY_MAX_MS);
}

/** One storage as the dispatcher plans for it. */
interface Lane {
  storage: StorageInfo;
  queue: CopyQueue;
  mount: MountWatch;
  /** Jobs handed to its writers and not reported yet. */
  active: number;
  /** Swaps of its disk seen so far (diskSwapped): a job handed out before the last one is not counted. */
  disk: number;
}

export class Dispatcher implements CopyEvents {
  readonly #lanes: Map<string, Lane>;
  readonly #internal: StorageInfo;
  readonly #external: StorageInfo | undefined;
  #listeners = new Set<CopyListener>();
  #attempts = new Map<string, number>();
  /** Failures announced as checksum mismatches, by `id:storage`: a mismatch after another failure is said too. */
  readonly #mismatchSaid = new SaidOnce();
  /** Files and storages whose damaged source was said (once: the places are tried again after each backoff). */
  readonly #damagedSaid = new SaidOnce();
  /** Storages whose coarse times (copies' mtimes cut to a step) were said: once each. */
  readonly #coarseSaid = new SaidOnce();
  /**
   * Files without a checksum (an operator's) whose first complete read is under way on one storage, and the
   * storages waiting for it: the checksum that read finds becomes the file's, and every other copy is checked
   * against it. Two first reads at once could find two different files (one changed in place between them).
   */
  #firstRead = new Map<number, Set<string>>();
  /** Storages whose copies' attribute namespace was said (copy-provenance.ts): once each. */
  readonly #attributesSaid = new SaidOnce();
  /** Storages said to have copies waiting for internal copies not at the internal storage's target: once each and run. */
  readonly #noInternalSaid = new SaidOnce();
  /**
   * Files whose original or copy a writer found gone or changed while another copy was there (#recordResult),
   * and where: read from the next one (#readFrom). In memory only: after a restart the first read that finds one
   * gone learns it again. Dropped once the file is settled.
   */
  #unreadable = new Map<number, Set<ReadFrom>>();
  /** Retries waiting for their time, by what cancels each. */
  #retries = new Set<() => void>();
  /** Copy results being journaled and told (#done): a stop waits for them (recorded()). */
  readonly #recording = new Set<Promise<void>>();
  readonly #later: Later;
  /** Copies whose file is left only on a storage that is not mounted: they wait for it (source-waits.ts). */
  readonly #sourceWaits: SourceWaits;

  constructor(
    private readonly catalog: Catalog,
    storages: StorageInfo[],
    private readonly messages: MessageHub,
    private readonly log: Logger,
    seams: DispatcherSeams = {},
  ) {
    const mountWatch = seams.mountWatch ?? ((s: StorageInfo) => new MountWatch(s, messages, log));
    this.#later = seams.later ?? later;
    this.#lanes = new Map(storages.map((s) => [s.id, { storage: s, queue: new CopyQueue(), mount: mountWatch(s), active: 0, disk: 0 }]));
    this.#internal = storages.find((s) => s.type === 'INTERNAL')!;
    this.#external = storages.find((s) => s.type === 'EXTERNAL');
    this.#sourceWaits = new SourceWaits(messages, log, this.#later, (dest, id) => this.#lanes.get(dest)?.queue.push(id, true));
  }

  onCopy(listener: CopyListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Queues what is still to be done for each record on each storage. */
  submit(recs: Iterable<FileRecord>): void {
    for (const rec of recs) {
      for (const lane of this.#lanes.values()) if (!this.catalog.doneOn(rec, lane.storage.id)) lane.queue.push(rec.id, false);
    }
  }

  /** After a restart: queues every copy the journal says is still to make (an earlier attempt may have died mid-copy). */
  resume(): void {
    for (const lane of this.#lanes.values()) for (const rec of this.catalog.pendingOn(lane.storage.id)) lane.queue.push(rec.id, true);
  }

  /**
   * The disk of `storage` is another one than its copies were made on (storage-marks.ts): a copy handed out
   * before now and reported later went to the disk taken away, and is made again instead of counted.
   */
  diskSwapped(storage: string): void {
    const lane = this.#lanes.get(storage);
    if (lane) lane.disk++;
  }

  /**
   * Whether the copy of `rec` on `storage` can be made again, were it lost with its disk (storage-marks.ts):
   * the INTERNAL storage's is read from the original, which must still be there; another storage's from the
   * first place #readFrom finds (the original, the internal copy, the external copy).
   */
  canCopyAgain(rec: FileRecord, storage: string): boolean {
    const lane = this.#lanes.get(storage);
    if (!lane) return false;
    if (lane.storage.type === 'INTERNAL') return rec.ramdisk === 'present';
    return this.#readable(rec, lane.storage).length > 0;
  }

  /** Queues the copy of `rec` on `storage` again: it was lost with its disk, and the catalog has it pending. */
  copyAgain(rec: FileRecord, storage: string): void {
    this.#lanes.get(storage)?.queue.push(rec.id, true);
  }

  /** Files waiting for `storage` or being copied there. */
  queued(storage: string): number {
    const lane = this.#lanes.get(storage);
    return lane ? lane.queue.length + lane.active : 0;
  }

  /** The record ids waiting for `storage`, in order (not those being copied). */
  waiting(storage: string): number[] {
    return this.#lanes.get(storage)?.queue.ids() ?? [];
  }

  /** Where the copy of `rel` goes on each storage (G4), by storage id: what a COPY_ERROR of a file not taken names. */
  destinations(rel: string): Array<[storage: string, dest: string]> {
    return [...this.#lanes.values()].map((l) => [l.storage.id, destOf(l.storage, rel)]);
  }

  /** What the writers of `storage` copy. */
  feed(storage: string): JobFeed {
    const lane = this.#lanes.get(storage);
    if (!lane) throw new Error(`no storage ${storage}`);
    return { next: (signal) => this.#next(lane, signal), done: (reports) => this.#done(lane, reports) };
  }

  async #next(lane: Lane, signal: AbortSignal): Promise<CopyJob[]> {
    // G13: a configured mount point must be mounted before anything is written, and each copy is written only
    // onto the file system found mounted there (an unmount since is seen by the copy thread: copy-dirs.ts).
    const mounted = await this.#mountOk(lane);
    const device = lane.mount.mountedDevice;
    if (!mounted || (lane.storage.mountpoint && device === undefined)) {
      await sleep(MOUNT_RECHECK_MS, signal);
      return [];
    }
    if (lane.queue.length === 0) {
      await lane.queue.wait(signal);
      return [];
    }
    await this.#checkSources(lane);
    const jobs = this.#takeBatch(lane);
    const point = lane.storage.mountpoint;
    for (const job of jobs) {
      if (point && device !== undefined) job.mount = { point, device };
      job.disk = lane.disk;
    }
    lane.active += jobs.length;
    for (const job of jobs) for (const l of this.#listeners) l.taken?.(job);
    return jobs;
  }

  /**
   * The storages whose copies `lane` may read (G13): looked at now too (at most once a second, one stat otherwise),
   * so that no batch is handed a copy on one that stopped answering or was unmounted since. Their own lanes look only
   * while they have files to write: an OPTIONAL storage took copies on an EXTERNAL disk that hung after its last look,
   * its copy threads waited in the kernel, and the files with a source on the PPU waited behind them, as long as it hung.
   */
  async #checkSources(lane: Lane): Promise<void> {
    if (lane.storage.type === 'INTERNAL') return;
    const sources: Array<Exclude<ReadFrom, 'original'>> = lane.storage.type === 'OPTIONAL' && this.#external ? ['internal', 'external'] : ['internal'];
    for (const from of sources) await this.#mountOk(this.#laneOf(from));
  }

  /** The next jobs for one writer (see BATCH_FILES); empty when none of those taken is left to do. */
  #takeBatch(lane: Lane): CopyJob[] {
    // What waits beyond the first file, shared among the writers.
    const share = Math.floor((lane.queue.length - 1) / lane.storage.writers);
    const jobs: CopyJob[] = [];
    let bytes = 0;
    for (let queued = lane.queue.take(); queued !== undefined; queued = lane.queue.take()) {
      const job = this.resolve(lane.storage.id, queued.id, queued.sweep);
      if (job) {
        jobs.push(job);
        bytes += job.expect.size;
      }
      if (jobs.length >= Math.min(BATCH_FILES, 1 + share) || bytes >= BATCH_BYTES) break;
    }
    return jobs;
  }

  #done(lane: Lane, reports: CopyReport[]): void {
    lane.active -= reports.length;
    for (const r of reports) {
      for (const l of this.#listeners) l.reported?.(r);
      const recording = this.report(r);
      this.#recording.add(recording);
      void recording.finally(() => this.#recording.delete(recording));
    }
  }

  /**
   * Resolves once every copy result reported so far is journaled, counted and told (COPY_ERROR): a stop waits for
   * this after the storages' last batches, before it closes the bus and the message server (main.ts). Without it,
   * the results of the last batch were journaled and told after them, or not at all when the process had ended.
   */
  async recorded(): Promise<void> {
    while (this.#recording.size) await Promise.all([...this.#recording]);
  }

  /**
   * The job for file `id` on `storage` as it is to be copied now; undefined when there is nothing to do (or,
   * for a file without a checksum, while another storage makes its first read). Where it reads: #readFrom.
   */
  resolve(storage: string, id: number, sweep: boolean): CopyJob | undefined {
    const lane = this.#lanes.get(storage);
    const rec = this.catalog.record(id);
    if (!lane || !rec || this.catalog.doneOn(rec, storage)) return undefined;
    const from = this.#readFrom(rec, lane.storage);
    // Only a copy on a storage found not mounted is left to read: the copy waits for that storage (G13).
    if (from !== 'original' && this.#mountOf(from).foundDown) {
      this.#waitForSource(from, lane.storage, id);
      return undefined;
    }
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
    const check = { checksum, provenance: { ...(shift ? { shift } : {}), ...(detector !== undefined ? { detector } : {}) },
      ...(rec.copyOnly ? { byOperator: true as const } : {}) };
    const dest = destOf(lane.storage, rel);
    if (from === 'original') {
      return { id, storage, src: rec.src, from, root: this.catalog.sourceRoot(rec), rel, dest,
        expect: { size: rec.size, mtimeMs: rec.mtimeMs, ino: rec.ino, dev: rec.dev }, sweep, ...check };
    }
    // Copies of copies are checked against the file's checksum too.
    const copy = from === 'internal' ? this.#internal : this.#external!;
    return { id, storage, src: destOf(copy, this.catalog.relOn(rec, copy.id)), from, root: copy.target, rel, dest,
      expect: { size: rec.size, mtimeMs: rec.mtimeMs }, sweep, ...check };
  }

  /**
   * Where a copy on `storage` reads the file: the INTERNAL storage always from the original; the others from the
   * first of the original, the internal copy and (for an OPTIONAL storage) the external copy that is there as
   * far as the catalog knows and that no writer found gone or changed since (#unreadable), one on a storage
   * found mounted before one found not. So an OPTIONAL storage unmounted over a shift change still gets the files
   * whose original and internal copy went meanwhile (G7 links internal copies away), once it is mounted again
   * (G13), and reads the internal copy while the EXTERNAL disk is away.
   */
  #readFrom(rec: FileRecord, storage: StorageInfo): ReadFrom {
    if (storage.type === 'INTERNAL') return 'original';
    const there = this.#readable(rec, storage);
    const skip = this.#unreadable.get(rec.id);
    const usable = there.filter((f) => !skip?.has(f));
    // None left that no writer found gone: the first there is (the found gone may have been a storage not mounted).
    return usable.find((f) => f === 'original' || !this.#mountOf(f).foundDown) ?? usable[0] ?? there[0] ?? 'internal';
  }

  /** The lane of the storage that holds copy `from`. */
  #laneOf(from: Exclude<ReadFrom, 'original'>): Lane {
    return this.#lanes.get(from === 'internal' ? this.#internal.id : this.#external!.id)!;
  }

  /** Whether `lane`'s storage may be written to now (mount-watch.ts), saying what it owes when it may not. */
  #mountOk(lane: Lane): Promise<boolean> {
    return lane.mount.ok(() => lane.queue.length + lane.active, () => this.#owed(lane.storage.id));
  }

  /** The files still to copy to `storage`, pending and counted failed (retried), as QueryStatus counts them. */
  #owed(storage: string): Owed {
    const owed = { pending: 0, failed: 0 };
    for (const rec of this.catalog.pendingOn(storage)) owed[this.catalog.stateOn(rec, storage) === 'failed' ? 'failed' : 'pending']++;
    return owed;
  }

  /** The mount watch of the storage that holds copy `from`. */
  #mountOf(from: Exclude<ReadFrom, 'original'>): MountWatch {
    return this.#laneOf(from).mount;
  }

  /** Whether the storage that holds copy `from` is not mounted now (its mount table read at most once a second). */
  async #sourceDown(from: Exclude<ReadFrom, 'original'>): Promise<boolean> {
    return !(await this.#sourceUp(this.#laneOf(from)));
  }

  /**
   * Whether copies may be read from the storage of `lane`: mounted (and writable, as its writers need it), or,
   * without a mount point, answering (one that is read-only still serves its copies).
   */
  async #sourceUp(lane: Lane): Promise<boolean> {
    const ok = await this.#mountOk(lane);
    return lane.storage.mountpoint !== undefined ? ok : !lane.mount.foundDown;
  }

  /** The copy of file `id` on `dest` waits until the storage holding copy `from` is mounted again. */
  #waitForSource(from: Exclude<ReadFrom, 'original'>, dest: StorageInfo, id: number): void {
    const lane = this.#laneOf(from);
    this.#sourceWaits.wait(lane.storage, () => this.#sourceUp(lane), dest, id);
  }

  /** The places a copy on `storage` could read the file from, as the catalog knows them, in the order #readFrom tries them. */
  #readable(rec: FileRecord, storage: StorageInfo): ReadFrom[] {
    const there: ReadFrom[] = [];
    if (rec.ramdisk === 'present') there.push('original');
    // A copy only with the file's checksum to check it against (an operator's file has none before its first read).
    if (rec.checksum === undefined) return there;
    if (rec.internal === 'present' && this.catalog.copiedOn(rec, this.#internal.id)) there.push('internal');
    const external = this.#external;
    if (external && storage.id !== external.id && this.catalog.copiedOn(rec, external.id)) there.push('external');
    return there;
  }

  /**
   * Records a copy's result (its writer reports it through the feed). Resolves once it is journalled and
   * counted (or could not be); never rejects.
   */
  report(r: CopyReport): Promise<void> {
    return this.#record(r).catch((e: unknown) => {
      // The journal could not be written (a full state_dir): the state stays as it was, and the copy is queued
      // again after a while; it then finds its copy made and records it. Waiting for a restart instead, the file
      // stayed pending, and its original was never linked nor deleted, however full the ramdisk became.
      this.log.error({ err: e, storage: r.job.storage, src: r.job.src }, `cannot journal a copy result; tried again in ${JOURNAL_RETRY_MS / 1000} s`);
      const rec = this.catalog.record(r.job.id);
      if (rec && this.#lanes.has(r.job.storage)) this.#retryLater(rec, r.job.storage, JOURNAL_RETRY_MS);
    });
  }

  async #record(r: CopyReport): Promise<void> {
    try {
      await this.#recordResult(r);
    } finally {
      this.#firstReadDone(r.job);
      this.#forgetUnreadable(r.job.id);
    }
  }

  /** Where the file cannot be read is forgotten once nothing is left to copy of it. */
  #forgetUnreadable(id: number): void {
    if (!this.#unreadable.has(id)) return;
    const rec = this.catalog.record(id);
    if (!rec || [...this.#lanes.keys()].every((s) => this.catalog.doneOn(rec, s))) this.#unreadable.delete(id);
  }

  /** A first read of a file without a checksum reported (I2): the storages that waited for it are queued again. */
  #firstReadDone(job: CopyJob): void {
    if (job.checksum !== undefined) return;
    const waiting = this.#firstRead.get(job.id);
    this.#firstRead.delete(job.id);
    for (const s of waiting ?? []) this.#lanes.get(s)?.queue.push(job.id, false);
  }

  async #recordResult(r: CopyReport): Promise<void> {
    const rec = this.catalog.record(r.job.id);
    if (!rec) return;
    const lane = this.#lanes.get(r.job.storage);
    if (!lane) return;
    const { storage } = lane;
    if (r.job.disk !== undefined && r.job.disk !== lane.disk) {
      // Made on the disk that was swapped away since it was handed out (a lazy unmount lets a batch finish there):
      // not counted, made again on the disk there now (or found there, identical, and counted then).
      this.log.debug({ storage: storage.id, src: r.job.src }, 'copy made before its storage\'s disk was swapped; made again');
      if (this.catalog.isLive(rec) && !this.catalog.copiedOn(rec, storage.id)) lane.queue.push(rec.id, true);
      return;
    }
    const key = `${rec.id}:${storage.id}`;
    if (r.result) this.#sayAttributes(r, storage);
    const made = r.result?.checksum;
    if (!(r.outcome instanceof Error) && r.job.checksum === undefined && made !== undefined && rec.checksum !== undefined && tagged(made) !== rec.checksum) {
      // Read without a checksum while another read found one (cannot happen while first reads wait for each
      // other, above): the bytes are not those the file's checksum is of. Not counted; retried.
      const known = untagged(rec.checksum)!;
      r = { ...r, outcome: ChecksumMismatch.source(r.job.src, known, made) };
    }
    if (!(r.outcome instanceof Error)) {
      this.#attempts.delete(key);
      this.#mismatchSaid.forget(key);
      this.#damagedSaid.forget(key);
      const wanted = r.job.dest;
      // A numbered name (NAME.~1~), or a numbered directory on the way (Y.~1~/NAME) where a file holds Y there.
      const rel = r.dest === wanted ? undefined : path.relative(storage.target, r.dest);
      // A file without a checksum gets the one of its first complete read, journaled with this copy (I2).
      await this.catalog.setCopy(rec, storage.id, 'copied', { rel, verified: r.result?.verified === true,
        checksum: r.job.checksum === undefined && made !== undefined ? tagged(made) : undefined });
      if (r.job.disk !== undefined && r.job.disk !== lane.disk) {
        // The disk was found swapped while this result was journaled: the copy may be on the one taken away.
        await this.catalog.setLost([rec], storage.id);
        if (this.catalog.isLive(rec) && !this.catalog.copiedOn(rec, storage.id)) lane.queue.push(rec.id, true);
        return;
      }
      if (rel !== undefined) this.#besideAnother(r, wanted);
      const clamped = r.result?.mtimeClamped;
      if (clamped?.stepMs !== undefined) {
        // Every copy there is cut so: said once per storage and run, not for each file.
        if (this.#coarseSaid.due(storage.id)) {
          this.log.warn({ storage: storage.id, step_ms: clamped.stepMs, src: r.job.src, mtime_ns: clamped.wanted, stored_mtime_ns: clamped.stored },
            `storage ${storage.id}: its file system keeps mtimes in steps of ${clamped.stepMs} ms only (exFAT 10 ms, ext3 1 s, FAT 2 s), ` +
            'so its copies get their originals\' mtimes cut down to that, as cp -p gives them; they count as copied');
        }
      } else if (clamped) {
        // G3 cannot be met there; G5 still cleans the original up (common/file-times.ts), so this is where the time is kept.
        this.log.warn({ storage: storage.id, src: r.job.src, dest: r.dest, mtime_ns: clamped.wanted, stored_mtime_ns: clamped.stored },
          `storage ${storage.id}: its file system cannot store the mtime of ${r.job.src} (${clamped.wanted} ns since the epoch) and ` +
          `gave the copy ${clamped.stored} ns, the nearest it keeps; counted as copied, and its original is cleaned up with its shift`);
      }
      return;
    }
    // The storage unmounted between the mount check and the copy (G13, copy-dirs.ts): nothing was written and
    // nothing failed; the file waits, pending, for the next check, which says the storage is not mounted.
    if (r.outcome instanceof NotMounted) {
      this.log.debug({ storage: storage.id, src: r.job.src, why: r.outcome.message }, 'storage unmounted under a copy; it waits for the mount');
      this.#retryLater(rec, storage.id, MOUNT_RECHECK_MS);
      return;
    }
    // The storage is read-only (remounted so since its last look, G13): nothing failed for the file, the storage
    // takes nothing. Said once for the storage (its mount watch), not for each file; the file waits, pending, and
    // is copied once the storage is writable again. An EROFS the storage does not confirm is a failure like any.
    if ((r.outcome as NodeJS.ErrnoException).code === 'EROFS' && (await lane.mount.readOnlyNow())) {
      this.log.debug({ storage: storage.id, src: r.job.src }, 'storage read-only under a copy; it waits until it is writable');
      this.#retryLater(rec, storage.id, MOUNT_RECHECK_MS);
      return;
    }
    // A copy read back from a storage that is not mounted (any more): it waits for that storage, pending and said
    // once as that, not failed for ever with the bare ENOENT of its target (G13).
    const from = r.job.from;
    if (from !== 'original' && (await this.#sourceDown(from))) {
      this.#waitForSource(from, storage, rec.id);
      return;
    }
    // A source found gone or changed, read for a storage other than INTERNAL: where a copy of the file is still
    // there, the next attempt reads that at once, and nothing failed. That is grimseld's own doing most of the
    // time: the reclaimer deletes an original, or replaces it by a link, once its internal copy exists (G5,
    // G6), and the catalog knows only once that is journalled; or a kill -9 came in between. So is an internal
    // copy that went at a shift change while an OPTIONAL storage read it (G5). Likewise a source whose bytes are
    // not the file's checksum (an internal copy damaged on its disk, an original changed in place): the next
    // place that holds the file is read at once; that damage is news, and said (I2).
    const badBytes = r.outcome instanceof ChecksumMismatch && r.outcome.at === 'source';
    if ((r.outcome instanceof SourceChanged || badBytes) && storage.type !== 'INTERNAL') {
      const skip = this.#unreadable.get(rec.id) ?? new Set<ReadFrom>();
      skip.add(r.job.from);
      const next = this.#readable(rec, storage).find((f) => !skip.has(f));
      if (next !== undefined) {
        this.#unreadable.set(rec.id, skip);
        // Said once per file and storage (the places are tried again after each backoff when none was right).
        if (badBytes && this.#damagedSaid.due(key)) {
          this.messages.publish('COPY_ERROR', `${r.job.src}:${r.dest}`, `copy of ${r.job.src} to storage ${r.job.storage} (${r.dest}): ` +
            `${(r.outcome as Error).message}; read from the ${next === 'original' ? 'original' : `${next} copy`} instead`);
        } else {
          this.log.debug({ storage: storage.id, src: r.job.src, next, why: (r.outcome as Error).message }, 'source of a copy gone, changed or damaged; read from another copy');
        }
        lane.queue.push(rec.id, true);
        return;
      }
      this.#unreadable.delete(rec.id);
    }
    // Otherwise a source that changed is hopeless if it was the original, still there and no longer the file,
    // and the internal copy will not come either (done: its writer changed it before any copy was made); while
    // that copy is under way, retried. A copy read back that is gone (its storage not mounted, say) is retried.
    // A checksum mismatch is retried like any failure: the original stays, never linked nor deleted on the
    // strength of a bad copy (I2). An operator's copy refused a directory of the storage (copy-dirs.ts): that
    // directory stays as it is, whoever's it is, and so would the refusal.
    const permanent = r.outcome instanceof RefusedDir || (r.outcome instanceof SourceChanged && r.job.from === 'original' && rec.ramdisk === 'present' &&
      (storage.type === 'INTERNAL' || this.catalog.doneOn(rec, this.#internal.id)));
    const n = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, n);
    // A first attempt of this run on a copy the journal already has failed: a retry of a failure announced by
    // an earlier run of grimseld (journaled before it was said), not news. Without this every restart said
    // each still-failing file again (3050 COPY_ERRORs per restart, found by a hostile tester, G10).
    const failedBefore = n === 1 && this.catalog.stateOn(rec, storage.id) === 'failed';
    // Read from an internal copy not at the internal storage's target, the original gone (G5): every file of the
    // shifts before a target change there, for a storage added or renamed since. Each said as 'retried until it
    // succeeds', they were one COPY_ERROR per file that no retry could make good.
    const noInternal = !permanent && r.job.from === 'internal' && rec.ramdisk !== 'present' &&
      (await lstat(r.job.src).then(() => false, (e: NodeJS.ErrnoException) => e.code === 'ENOENT' || e.code === 'ENOTDIR'));
    await this.catalog.setCopy(rec, storage.id, 'failed', { permanent });
    // Every file's failure is announced once (its retries are not): a full disk costs one message per
    // file that could not be written, not one per retry. A checksum mismatch is announced also when an
    // earlier failure of the file was something else.
    const newMismatch = r.outcome instanceof ChecksumMismatch && this.#mismatchSaid.due(key);
    // A failure given up after retries is said again: the first message promised a retry.
    if (noInternal) {
      if (this.#noInternalSaid.due(storage.id)) this.#sayNoInternal(r, storage);
      else this.log.debug({ storage: storage.id, src: r.job.src, attempt: n }, (r.outcome as Error).message);
    } else if ((n === 1 && !failedBefore) || permanent || newMismatch) this.#copyError(r, permanent);
    else this.log.debug({ storage: storage.id, src: r.job.src, attempt: n, failedBefore }, (r.outcome as Error).message);
    if (permanent) {
      this.#attempts.delete(key);
      this.#mismatchSaid.forget(key);
      this.#damagedSaid.forget(key);
      return;
    }
    this.#retryLater(rec, storage.id, retryDelayMs(n));
  }

  /** Queues the copy of `rec` on `storage` again after `ms`, unless it is settled or copied there by then. */
  #retryLater(rec: FileRecord, storage: string, ms: number): void {
    const cancel = this.#later(ms, () => {
      this.#retries.delete(cancel);
      if (this.catalog.isLive(rec) && !this.catalog.copiedOn(rec, storage)) this.#lanes.get(storage)!.queue.push(rec.id, true);
    });
    this.#retries.add(cancel);
  }

  /**
   * A copy that went beside a different file of its name (copier.ts) is copied and counted so, but whoever
   * looks for it under its name finds the other file: said as a COPY_ERROR (the code about copies; its short
   * message `src:dest` names where the copy really is), logged with it.
   */
  #besideAnother(r: CopyReport, wanted: string): void {
    const taken = takenDirOf(wanted, r.dest);
    const what = taken === undefined
      ? `${wanted} on storage ${r.job.storage} holds another file (an earlier shift's, or another file of that name)`
      : `${taken} on storage ${r.job.storage} is a file, not a directory (a file of that name delivered before, kept)`;
    this.messages.publish('COPY_ERROR', `${r.job.src}:${r.dest}`,
      `${what}: it is kept, and this copy of ${r.job.src} is ${r.dest}; both are complete, the file counts as copied`);
  }

  /**
   * Which attribute namespace a storage's copies carry their provenance in (I3), said once per storage; a
   * storage that takes none gets its copies all the same, and its checksums are then only in grimseld's
   * journal, while grimseld holds the file (they go with its record once the file is settled).
   */
  #sayAttributes(r: CopyReport, storage: StorageInfo): void {
    const a = r.result?.attributes;
    if (a === undefined || !this.#attributesSaid.due(storage.id)) return;
    const s = { storage: storage.id, target: storage.target };
    if (a === 'none') {
      this.log.warn(s, `storage ${storage.id}: its file system takes no extended attributes (neither user.* nor trusted.*): copies are made ` +
        "without ppu.* attributes; checksum kept in the journal only (while grimseld holds the file), and ppuctl verify cannot check them");
    } else {
      this.log.info(s, `storage ${storage.id}: copies carry their checksum, shift and detector as ${a}.ppu.* attributes`);
    }
  }

  /**
   * Said once for `storage` (not per file): its copies read from internal copies that are not at the internal
   * storage's target, their originals gone. What they wait for, and that they are tried again (retryLater).
   */
  #sayNoInternal(r: CopyReport, storage: StorageInfo): void {
    const internal = this.#internal;
    this.messages.publish('COPY_ERROR', `${internal.target}:${storage.target}`,
      `storage ${storage.id}: copies of files whose ramdisk original is gone are made from their internal copy, and ${r.job.src} ` +
      `(this storage's copy ${r.dest}) is not in the internal storage's target ${internal.target}: moved or deleted there, or storage ` +
      `${internal.id}'s target changed in grimseld.conf (its copies made before are below the old target)? Every such copy counts ` +
      'failed, said here once for this storage, and is tried again at least once a minute: it is made once its internal copy is ' +
      `at that path again (the old target back in grimseld.conf, or the copies moved into ${internal.target})`);
  }

  #copyError(r: CopyReport, permanent: boolean): void {
    this.messages.publish('COPY_ERROR', `${r.job.src}:${r.dest}`,
      `copy of ${r.job.src} to storage ${r.job.storage} (${r.dest}) failed: ${(r.outcome as Error).message}` +
      (permanent ? '; not retried' : '; retried until it succeeds'));
  }

  stop(): void {
    this.#sourceWaits.stop();
    this.#firstRead.clear();
    this.#unreadable.clear();
    for (const cancel of this.#retries) cancel();
    this.#retries.clear();
  }
}


// Whether a storage's mount point is mounted (G13), checked at most once a second, and said when it is not:
// a COPY_ERROR, repeated every minute (every 10 s while files wait for it), and a log line when it is back. A mount
// table that cannot be read (EMFILE) is "cannot tell": nothing written, said the same way, read again next time.
// Between two readings of the mount table, each batch first compares the mount point's device with the one it
// had when found mounted (one stat, off the event loop): a storage unmounted within the second is seen before
// the next batch. An unmount between that stat and the copy thread's open is seen by the copy thread: each job
// carries the mount point and its device (`mountedDevice`), and the thread opens the storage target only while
// the mount point still has it (copy-dirs.ts); the target is then held open for the batch, so a plain umount
// fails as busy until it is done (`umount -l` detaches it, and the batch's copies still land on that disk).
// What neither sees: a bind mount of a directory of the same file system (same device), which the next
// reading of the table finds.
import { stat } from 'node:fs/promises';
import { isMountPoint } from './mounts.js';
import type { MessageHub } from './messages.js';
import type { StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';

export const MOUNT_RECHECK_MS = 1000;
/** A stat of the mount point that takes longer: the storage does not answer (a hard NFS mount whose server hangs). */
const STAT_TIMEOUT_MS = 5000;
const HUNG = Symbol('hung');
/** While a storage's mount point is missing, the error is repeated this often (sooner while files wait for it). */
const UNMOUNTED_REPEAT_MS = 60_000;
const UNMOUNTED_REPEAT_BUSY_MS = 10_000;

/**
 * The device of the file system `dir` is on (undefined if it cannot be stat'ed). In libuv's thread pool: a
 * stat of a hung NFS mount blocks a pool thread (main.ts sizes the pool for it), never the event loop.
 */
async function deviceOf(dir: string): Promise<number | undefined> {
  try {
    return (await stat(dir)).dev;
  } catch {
    return undefined;
  }
}

export class MountWatch {
  #checked: { ok: boolean; at: number } | undefined;
  /** The mount point's device when last found mounted. */
  #device: number | undefined;
  /** When the missing mount point was last said; undefined while it is mounted. */
  #saidAt: number | undefined;
  /** The check under way: the storage's writers share it. */
  #pending: Promise<boolean> | undefined;
  /** The stat under way: never a second one while it hangs (each would hold a thread of libuv's pool for good). */
  #statting: Promise<number | undefined> | undefined;
  #statStarted = 0;

  constructor(
    private readonly storage: StorageInfo,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = monotonicMs,
    private readonly device: (dir: string) => Promise<number | undefined> = deviceOf,
    private readonly statTimeoutMs = STAT_TIMEOUT_MS,
  ) {}

  /**
   * The device of the file system mounted at the storage's mount point, as the last check that found it mounted
   * saw it; undefined without a mount point or while it is not mounted. The copy thread writes only onto it.
   */
  get mountedDevice(): number | undefined {
    return this.storage.mountpoint && this.#checked?.ok ? this.#device : undefined;
  }

  /**
   * Whether the last check found the storage not mounted (or not answering, or not to be checked): copies that must
   * read their file from it wait for it (dispatcher.ts). False without a mount point and before any check.
   */
  get foundDown(): boolean {
    return this.storage.mountpoint !== undefined && this.#checked?.ok === false;
  }

  /** Whether the storage may be written to now; `queued`: files waiting for it (said in the message). */
  ok(queued: () => number): Promise<boolean> {
    const { mountpoint } = this.storage;
    if (!mountpoint) return Promise.resolve(true);
    this.#pending ??= this.#check(mountpoint, queued).finally(() => { this.#pending = undefined; });
    return this.#pending;
  }

  async #check(mountpoint: string, queued: () => number): Promise<boolean> {
    const now = this.now();
    const checked = this.#checked;
    if (checked && now - checked.at <= MOUNT_RECHECK_MS) {
      if (!checked.ok) return false;
      const device = await this.#deviceNow(mountpoint);
      if (device === this.#device) return true;
      if (device === HUNG) return this.#verdict(false, queued, 'does not answer');
      // Another device than when found mounted: the mount table is read again now.
    }
    const before = await this.#deviceNow(mountpoint);
    if (before === HUNG) return this.#verdict(false, queued, 'does not answer');
    let mounted: boolean;
    try {
      mounted = await this.isMounted(mountpoint);
    } catch (e) {
      // The mount table could not be read (no descriptor left: EMFILE): cannot tell, so nothing is written to the
      // storage, said as for a missing mount, and the table is read again at the next look (a second later).
      return this.#verdict(false, queued, `cannot be checked (${(e as Error).message})`);
    }
    const after = await this.#deviceNow(mountpoint);
    if (after === HUNG) return this.#verdict(false, queued, 'does not answer');
    if (after !== before) {
      // Mounted or unmounted while the table was read: nothing written, nothing said, looked at again next time.
      this.#checked = undefined;
      return false;
    }
    this.#device = mounted ? before : undefined;
    return this.#verdict(mounted && before !== undefined, queued, 'is not mounted');
  }

  #verdict(ok: boolean, queued: () => number, why: string): boolean {
    // From when the verdict is known: after a stat that hung 5 s, the next look is a second later, not at once.
    this.#checked = { ok, at: this.now() };
    this.#said(ok, queued(), why);
    return ok;
  }

  /**
   * The mount point's device now; HUNG when its stat has not come back within statTimeoutMs of its start (a
   * stat out longer than that already is HUNG at once: the storage's writers do not wait 5 s at every look).
   */
  async #deviceNow(mountpoint: string): Promise<number | undefined | typeof HUNG> {
    if (!this.#statting) {
      this.#statStarted = monotonicMs();
      this.#statting = this.device(mountpoint).finally(() => { this.#statting = undefined; });
    }
    const left = this.statTimeoutMs - (monotonicMs() - this.#statStarted);
    if (left <= 0) return HUNG;
    const statting = this.#statting;
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<typeof HUNG>((resolve) => { timer = setTimeout(() => resolve(HUNG), left); });
    try {
      return await Promise.race([statting, hung]);
    } finally {
      clearTimeout(timer);
    }
  }

  #said(mounted: boolean, queued: number, why: string): void {
    const { id, mountpoint, target } = this.storage;
    if (mounted) {
      if (this.#saidAt !== undefined) {
        this.#saidAt = undefined;
        this.log.info({ storage: id, mountpoint }, 'storage mounted again; copying resumes');
      }
      return;
    }
    const now = this.now();
    const repeat = queued > 0 ? UNMOUNTED_REPEAT_BUSY_MS : UNMOUNTED_REPEAT_MS;
    if (this.#saidAt === undefined || now - this.#saidAt >= repeat) {
      this.#saidAt = now;
      this.messages.publish('COPY_ERROR', `${mountpoint}:${target}`,
        `storage ${id}: ${mountpoint} ${why}; nothing is written to ${target} and its ${queued} files stay pending until it is mounted${why === 'is not mounted' ? '' : why === 'does not answer' ? ' and answers' : ' and that can be checked'}`);
    }
  }
}

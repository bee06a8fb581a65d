// Whether a storage's mount point is mounted (G13), checked at most once a second, and said when it is not:
// a COPY_ERROR, repeated every minute (every 10 s while files wait for it), and a log line when it is back.
// Between two readings of the mount table, each batch first compares the mount point's device with the one it
// had when found mounted (one stat, off the event loop): a storage unmounted within the second is seen before
// the next batch. What it cannot see: an unmount between that stat and the copy thread's open, and a bind mount
// of a directory of the same file system (same device), which the next reading of the table finds.
import { stat } from 'node:fs/promises';
import { isMountPoint } from './mounts.js';
import type { MessageHub } from './messages.js';
import type { StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';

export const MOUNT_RECHECK_MS = 1000;
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
  /** The check under way: the storage's writers share it (one stat in flight, also while it hangs). */
  #pending: Promise<boolean> | undefined;

  constructor(
    private readonly storage: StorageInfo,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = Date.now,
    private readonly device: (dir: string) => Promise<number | undefined> = deviceOf,
  ) {}

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
      if (await this.device(mountpoint) === this.#device) return true;
      // Another device than when found mounted: the mount table is read again now.
    }
    const before = await this.device(mountpoint);
    const mounted = await this.isMounted(mountpoint);
    if (await this.device(mountpoint) !== before) {
      // Mounted or unmounted while the table was read: nothing written, nothing said, looked at again next time.
      this.#checked = undefined;
      return false;
    }
    const ok = mounted && before !== undefined;
    this.#device = ok ? before : undefined;
    this.#checked = { ok, at: now };
    this.#said(ok, queued());
    return ok;
  }

  #said(mounted: boolean, queued: number): void {
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
        `storage ${id}: ${mountpoint} is not mounted; nothing is written to ${target} and its ${queued} files stay pending until it is mounted`);
    }
  }
}

// Whether a storage's mount point is mounted (G13), checked at most once a second, and said when it is not:
// a COPY_ERROR, repeated every minute (every 10 s while files wait for it), and a log line when it is back.
// Between two checks, the mount point's device is compared with the one it had when found mounted (one stat):
// a storage unmounted within the second is seen at once, so no batch is written to the bare directory.
import { statSync } from 'node:fs';
import { isMountPoint } from './mounts.js';
import type { MessageHub } from './messages.js';
import type { StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';

export const MOUNT_RECHECK_MS = 1000;
/** While a storage's mount point is missing, the error is repeated this often (sooner while files wait for it). */
const UNMOUNTED_REPEAT_MS = 60_000;
const UNMOUNTED_REPEAT_BUSY_MS = 10_000;

/** The device of the file system `dir` is on (undefined if it cannot be stat'ed). */
function deviceOf(dir: string): number | undefined {
  try {
    return statSync(dir).dev;
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

  constructor(
    private readonly storage: StorageInfo,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = Date.now,
    private readonly device: (dir: string) => number | undefined = deviceOf,
  ) {}

  /** Whether the storage may be written to now; `queued`: files waiting for it (said in the message). */
  async ok(queued: () => number): Promise<boolean> {
    const { mountpoint } = this.storage;
    if (!mountpoint) return true;
    const now = this.now();
    const moved = this.#checked?.ok === true && this.device(mountpoint) !== this.#device;
    if (!this.#checked || now - this.#checked.at > MOUNT_RECHECK_MS || moved) {
      // A device that changes while the mount table is read (mounted or unmounted meanwhile): not written to
      // until the next check.
      const before = this.device(mountpoint);
      const ok = (await this.isMounted(mountpoint)) && before !== undefined && this.device(mountpoint) === before;
      this.#device = ok ? before : undefined;
      this.#checked = { ok, at: now };
      this.#said(ok, queued());
    }
    return this.#checked.ok;
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

// Whether a storage's mount point is mounted (G13), checked at most once a second, and said when it is not:
// a COPY_ERROR, repeated every minute (every 10 s while files wait for it), and a log line when it is back.
import { isMountPoint } from './mounts.js';
import type { MessageHub } from './messages.js';
import type { StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';

export const MOUNT_RECHECK_MS = 1000;
/** While a storage's mount point is missing, the error is repeated this often (sooner while files wait for it). */
const UNMOUNTED_REPEAT_MS = 60_000;
const UNMOUNTED_REPEAT_BUSY_MS = 10_000;

export class MountWatch {
  #checked: { ok: boolean; at: number } | undefined;
  /** When the missing mount point was last said; undefined while it is mounted. */
  #saidAt: number | undefined;

  constructor(
    private readonly storage: StorageInfo,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the storage may be written to now; `queued`: files waiting for it (said in the message). */
  async ok(queued: () => number): Promise<boolean> {
    const { mountpoint } = this.storage;
    if (!mountpoint) return true;
    const now = this.now();
    if (!this.#checked || now - this.#checked.at > MOUNT_RECHECK_MS) {
      this.#checked = { ok: await this.isMounted(mountpoint), at: now };
      this.#said(this.#checked.ok, queued());
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

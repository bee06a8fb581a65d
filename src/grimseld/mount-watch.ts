// Whether a storage's mount point is mounted (G13), checked at most once a second, and said when it is not:
// a COPY_ERROR, repeated every minute (every 10 s while files wait for it), and a log line when it is back. A mount
// table that cannot be read (EMFILE) is "cannot tell": nothing written, said the same way, read again next time.
// Between two readings of the mount table, each batch first compares what is at the mount point (its device and
// inode: MountId) with what was there when found mounted (one stat, off the event loop): a storage unmounted within
// the second is seen before the next batch. An unmount between that stat and the copy thread's open is seen by the
// copy thread: each job carries the mount point and its MountId (`mountedDevice`), and the thread opens the storage
// target only while the mount point still has it (copy-dirs.ts); the target is then held open for the batch, so a
// plain umount fails as busy until it is done (`umount -l` detaches it, and the batch's copies still land on that
// disk). The inode is what tells a bind mount of a directory of the same file system (the same device) from the
// bare mount point beneath it.
// A storage found mounted is also asked whether it is writable (access W_OK, at each reading of the table): one
// mounted or remounted read-only (`mount -o remount,ro`, or ext4's errors=remount-ro) is said like an unmounted one,
// once and then at the same pace, its files kept pending, not failed one by one; a copy that still meets EROFS
// (read-only since the last look; or a storage without a mount point, looked at only then) is handled the same way
// (readOnlyNow). Writable again, copying resumes by itself.
// The message counts the storage's files as QueryStatus does: those counted failed before (a full disk, which is
// what remounts ext4 read-only) stay failed, and are named so, retried once the storage takes writes again.
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { isMountPoint } from './mounts.js';
import { mountIdOf, type MountId } from './copy-dirs.js';
import type { MessageHub } from './messages.js';
import { probedAt, type StorageInfo } from './storage-info.js';
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';
import { mountOf, mountsOf } from '../common/mounts.js';

export const MOUNT_RECHECK_MS = 1000;
/** A stat of the mount point that takes longer: the storage does not answer (a hard NFS mount whose server hangs). */
const STAT_TIMEOUT_MS = 5000;
export const HUNG = Symbol('hung');
/** While a storage's mount point is missing, the error is repeated this often (sooner while files wait for it). */
const UNMOUNTED_REPEAT_MS = 60_000;
const UNMOUNTED_REPEAT_BUSY_MS = 10_000;
/** Why a storage whose bounded stat did not come back counts as down. */
export const DOES_NOT_ANSWER = 'does not answer';
/** Why a storage found mounted is not written to: its file system takes no writes. */
export const READ_ONLY = 'is read-only (mounted read-only, or remounted so, as a file system does after an error; or, under the shipped unit, a ' +
  'directory made after grimseld started, which its ReadWritePaths= did not take: restart grimseld then)';

/**
 * The storage is read-only as grimseld sees it, its file system not: a mount is read-only in grimseld's view alone.
 * The shipped unit's ProtectSystem=strict gives grimseld a mount namespace of its own, where a mount keeps the
 * read-only flag it had when grimseld started: made writable again since (`mount -o remount,rw`), it stays
 * read-only for grimseld (found by hostile tester h11 across an upgrade's restart). So does a directory made after
 * the start, which its ReadWritePaths= did not take.
 */
export const READ_ONLY_HERE = "is read-only for grimseld alone: its file system takes writes, but grimseld's unit (ProtectSystem=strict) " +
  'keeps each mount as it was when grimseld started (read-only then, or a directory made since that its ReadWritePaths= did not take): ' +
  'restart grimseld (furkad restarts with it and starts the default shift)';

/** Whether `why` says the storage takes no writes (READ_ONLY, READ_ONLY_HERE). */
export const isReadOnlyWhy = (why: string | undefined): boolean => why === READ_ONLY || why === READ_ONLY_HERE;

/** The mount tables readOnlyHereAlone compares: this process's, and init's (the host's, outside any unit's namespace). */
export interface MountViews {
  own(): Promise<string>;
  init(): Promise<string>;
}

const procViews: MountViews = {
  own: () => readFile('/proc/self/mountinfo', 'utf8'),
  init: () => readFile('/proc/1/mountinfo', 'utf8'),
};

/**
 * Whether the mount holding the first of `dirs` that exists is read-only as this process sees it while init sees it
 * writable (READ_ONLY_HERE); false where that cannot be told, or where init sees it read-only too (an
 * administrator's read-only bind, grimseld run outside its unit: restarting would not help; reviewer r5).
 */
export async function readOnlyHereAlone(dirs: string[], views: MountViews = procViews): Promise<boolean> {
  for (const dir of dirs) {
    const real = await realpath(dir).catch(() => undefined);
    if (real === undefined) continue;
    try {
      const own = mountOf(real, mountsOf(await views.own()));
      if (own === undefined || !own.readOnly || own.fsReadOnly) return false;
      const init = mountOf(real, mountsOf(await views.init()));
      return init !== undefined && !init.readOnly;
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * Whether the file system `dirs[0]` is on takes no writes (EROFS from access W_OK, which writes nothing), asked of the
 * first of `dirs` that exists. Any other answer is "writable": a copy then says for itself what is wrong.
 */
export async function readOnly(dirs: string[]): Promise<boolean> {
  for (const dir of dirs) {
    try {
      await access(dir, constants.W_OK);
      return false;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EROFS') return true;
      if (code !== 'ENOENT') return false;
    }
  }
  return false;
}

/**
 * What is at `dir` (MountId: device and inode; undefined if it cannot be stat'ed). In libuv's thread pool: a
 * stat of a hung NFS mount blocks a pool thread (main.ts sizes the pool for it), never the event loop.
 */
async function deviceOf(dir: string): Promise<MountId | undefined> {
  try {
    return mountIdOf(await stat(dir));
  } catch {
    return undefined;
  }
}

/**
 * The storage's files still to copy, as QueryStatus counts them: pending, and counted failed (an earlier copy of
 * them failed; retried, not failed for good). What a message about the storage says waits.
 */
export interface Owed {
  pending: number;
  failed: number;
}

/**
 * A storage mount point's stat, one at a time and bounded: the fill guards and the temp-file sweep ask it too before
 * they work on a storage (answers()): their reads there are synchronous, on the event loop, and a hung storage
 * reached so held up all of grimseld.
 */
export class MountPointProbe {
  /** The stat under way: never a second one while it hangs (each would hold a thread of libuv's pool for good). */
  #statting: Promise<MountId | undefined> | undefined;
  #statStarted = 0;

  constructor(
    private readonly device: (dir: string) => Promise<MountId | undefined> = deviceOf,
    private readonly timeoutMs = STAT_TIMEOUT_MS,
  ) {}

  /**
   * The mount point's device now; HUNG when its stat has not come back within timeoutMs of its start (a
   * stat out longer than that already is HUNG at once: the storage's writers do not wait 5 s at every look).
   */
  async deviceNow(mountpoint: string): Promise<MountId | undefined | typeof HUNG> {
    if (!this.#statting) {
      this.#statStarted = monotonicMs();
      this.#statting = this.device(mountpoint).finally(() => { this.#statting = undefined; });
    }
    const left = this.timeoutMs - (monotonicMs() - this.#statStarted);
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
}

/** grimseld's probes, one per mount point: a hung storage holds one of libuv's threads with its stat, not one per part that asks. */
const probes = new Map<string, MountPointProbe>();

/**
 * The probe of `mountpoint` that the copies' mount watch, the fill guards and the temp-file sweep share. Each of
 * them with its own, a hung storage held three of libuv's threads (writers + 3 in all: main.ts), and two such
 * storages all of them, the journal's fsyncs among them.
 */
export function sharedProbe(mountpoint: string): MountPointProbe {
  let probe = probes.get(mountpoint);
  if (!probe) probes.set(mountpoint, (probe = new MountPointProbe()));
  return probe;
}

/** Whether the stat of `mountpoint` comes back within the bound (sharedProbe): false for a hung NFS or FUSE server. */
export async function answers(mountpoint: string): Promise<boolean> {
  return (await sharedProbe(mountpoint).deviceNow(mountpoint)) !== HUNG;
}

export class MountWatch {
  /** The last verdict (`why` it was not ok). */
  #checked: { ok: boolean; at: number; why?: string } | undefined;
  /** The mount point's device when last found mounted. */
  #device: MountId | undefined;
  /** When the missing mount point (or the read-only storage) was last said, and why; undefined while it is writable. */
  #saidAt: number | undefined;
  #saidWhy = '';
  /** A copy met EROFS, or the last look found the storage read-only: looked at again before anything is written. */
  #readOnly = false;
  /** The check under way: the storage's writers share it. */
  #pending: Promise<boolean> | undefined;
  /** The mount point's stat, bounded (MountPointProbe). */
  readonly #probe: MountPointProbe;
  /** What the storage owes, asked only when it is said (ok()). */
  #owed: (() => Owed) | undefined;

  constructor(
    private readonly storage: StorageInfo,
    private readonly messages: MessageHub,
    private readonly log: Logger,
    private readonly isMounted: (dir: string) => Promise<boolean> = isMountPoint,
    private readonly now: () => number = monotonicMs,
    /** A test's stat of the mount point; none: grimseld's shared probe (sharedProbe). */
    device?: (dir: string) => Promise<MountId | undefined>,
    statTimeoutMs = STAT_TIMEOUT_MS,
  ) {
    this.#probe = device ? new MountPointProbe(device, statTimeoutMs) : sharedProbe(probedAt(storage));
  }

  /**
   * The device of the file system mounted at the storage's mount point, as the last check that found it mounted
   * saw it; undefined without a mount point or while it is not mounted. The copy thread writes only onto it.
   */
  get mountedDevice(): MountId | undefined {
    return this.storage.mountpoint && this.#checked?.ok ? this.#device : undefined;
  }

  /**
   * Whether the last check found the storage not mounted (or not answering, or not to be checked): copies that must
   * read their file from it wait for it (dispatcher.ts). False without a mount point and before any check.
   */
  get foundDown(): boolean {
    return this.#checked?.ok === false && (this.storage.mountpoint !== undefined || this.#checked.why === DOES_NOT_ANSWER);
  }

  /**
   * Whether the storage may be written to now; `queued`: files waiting for it (the pace of the message, and what
   * it says without `owed`); `owed`: the storage's files still to copy, as QueryStatus counts them (said so).
   */
  ok(queued: () => number, owed?: () => Owed): Promise<boolean> {
    const { mountpoint } = this.storage;
    this.#owed = owed;
    this.#pending ??= (mountpoint ? this.#check(mountpoint, queued) : this.#checkAnswers(queued)).finally(() => { this.#pending = undefined; });
    return this.#pending;
  }

  /**
   * A copy to the storage failed with EROFS: whether the storage is read-only now (then it is said once, not the
   * file, and nothing is written to it until it is writable again), or only that copy met it.
   */
  async readOnlyNow(): Promise<boolean> {
    if (!(await readOnly(this.#writeProbes()))) return false;
    this.#readOnly = true;
    this.#checked = undefined;
    return true;
  }

  /** Where writability is asked: the target, or the mount point (or the nearest directory up) while it has none. */
  #writeProbes(): string[] {
    const { target, mountpoint } = this.storage;
    const up: string[] = [];
    for (let d = target; ; d = path.dirname(d)) {
      up.push(d);
      if (d === mountpoint || path.dirname(d) === d) break;
    }
    return up;
  }

  /**
   * A storage without a mount point: its target's bounded stat (a hard NFS mount whose server hangs does not answer:
   * nothing is written to it, and copies that read from it wait, as for one with a mount point); after a copy met
   * EROFS, writable again?
   */
  async #checkAnswers(queued: () => number): Promise<boolean> {
    if ((await this.#deviceNow(this.storage.target)) === HUNG) return this.#verdict(false, queued, DOES_NOT_ANSWER);
    if (this.#readOnly) return this.#checkWritable(queued);
    if (this.#checked?.ok === false) return this.#verdict(true, queued, '');
    return true;
  }

  /** A storage without a mount point, after a copy met EROFS: writable again? Asked at most once a second. */
  async #checkWritable(queued: () => number): Promise<boolean> {
    const checked = this.#checked;
    if (checked && this.now() - checked.at <= MOUNT_RECHECK_MS) return checked.ok;
    return this.#writable(queued);
  }

  /** The verdict on a storage found mounted (or without a mount point): whether its file system takes writes. */
  async #writable(queued: () => number): Promise<boolean> {
    this.#readOnly = await readOnly(this.#writeProbes());
    const why = this.#readOnly && (await readOnlyHereAlone(this.#writeProbes())) ? READ_ONLY_HERE : READ_ONLY;
    return this.#verdict(!this.#readOnly, queued, why);
  }

  async #check(mountpoint: string, queued: () => number): Promise<boolean> {
    const now = this.now();
    const checked = this.#checked;
    if (checked && now - checked.at <= MOUNT_RECHECK_MS) {
      if (!checked.ok) return false;
      const device = await this.#deviceNow(mountpoint);
      if (device === this.#device) return true;
      if (device === HUNG) return this.#verdict(false, queued, DOES_NOT_ANSWER);
      // Another device than when found mounted: the mount table is read again now.
    }
    const before = await this.#deviceNow(mountpoint);
    if (before === HUNG) return this.#verdict(false, queued, DOES_NOT_ANSWER);
    let mounted: boolean;
    try {
      mounted = await this.isMounted(mountpoint);
    } catch (e) {
      // The mount table could not be read (no descriptor left: EMFILE): cannot tell, so nothing is written to the
      // storage, said as for a missing mount, and the table is read again at the next look (a second later).
      return this.#verdict(false, queued, `cannot be checked (${(e as Error).message})`);
    }
    const after = await this.#deviceNow(mountpoint);
    if (after === HUNG) return this.#verdict(false, queued, DOES_NOT_ANSWER);
    if (after !== before) {
      // Mounted or unmounted while the table was read: nothing written, nothing said, looked at again next time.
      this.#checked = undefined;
      return false;
    }
    this.#device = mounted ? before : undefined;
    if (!mounted || before === undefined) return this.#verdict(false, queued, 'is not mounted');
    return this.#writable(queued);
  }

  #verdict(ok: boolean, queued: () => number, why: string): boolean {
    // From when the verdict is known: after a stat that hung 5 s, the next look is a second later, not at once.
    this.#checked = { ok, at: this.now(), why };
    this.#said(ok, queued(), why);
    return ok;
  }

  #deviceNow(mountpoint: string): Promise<MountId | undefined | typeof HUNG> {
    return this.#probe.deviceNow(mountpoint);
  }

  #said(mounted: boolean, queued: number, why: string): void {
    const { id, mountpoint, target } = this.storage;
    if (mounted) {
      if (this.#saidAt !== undefined) {
        this.#saidAt = undefined;
        const again = isReadOnlyWhy(this.#saidWhy) ? 'writable again' : mountpoint ? 'mounted again' : 'answering again';
        this.log.info({ storage: id, mountpoint }, `storage ${again}; copying resumes`);
      }
      return;
    }
    const now = this.now();
    const repeat = queued > 0 ? UNMOUNTED_REPEAT_BUSY_MS : UNMOUNTED_REPEAT_MS;
    // Once per storage and cause, repeated at the pace above; a new cause (read-only, then unmounted) at once.
    if (this.#saidAt === undefined || why !== this.#saidWhy || now - this.#saidAt >= repeat) {
      this.#saidAt = now;
      this.#saidWhy = why;
      const until = isReadOnlyWhy(why) ? 'it is writable again' : !mountpoint ? 'it answers again'
        : `it is mounted${why === 'is not mounted' ? '' : why === DOES_NOT_ANSWER ? ' and answers' : ' and that can be checked'}`;
      const where = mountpoint ?? target;
      this.messages.publish('COPY_ERROR', `${where}:${target}`, `storage ${id}: ${where} ${why}; nothing is written to ${target} and ${owedText(this.#owed?.() ?? { pending: queued, failed: 0 }, until)}`);
    }
  }
}

/**
 * What waits for a storage that takes nothing now, in QueryStatus's words: files counted failed before (a full
 * disk, say) are not called pending: they are retried once it takes writes again, and counted copied then.
 */
function owedText({ pending, failed }: Owed, until: string): string {
  if (failed === 0) return `its ${pending} files stay pending until ${until}`;
  return `its ${pending + failed} files wait until ${until}: ${pending} pending, and ${failed} counted failed ` +
    '(an earlier copy of them failed, as QueryStatus shows; each is tried again then)';
}

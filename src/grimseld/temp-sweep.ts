// Stale copy temp files on the storages (G3, G12): those grimseld made (temp-names.ts) that no copy will rename any more.
// The directories swept may be a shift user's, who can swap them for a link at any moment (docs/threat-model.md): each is
// reached from its storage's target without following links and held, and every name is looked at and
// removed in the directory held (common/dir-fd.ts).
import { lstat, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { DirFd } from '../common/dir-fd.js';
import { sleep } from '../common/abort.js';
import type { Logger } from '../common/logger.js';
import { isMountPoint } from './mounts.js';
import { answers } from './mount-watch.js';
import type { CopyReport } from './copy-job.js';
import type { CopyEvents } from './dispatcher.js';
import { probedAt, type StorageInfo } from './storage-info.js';
import { isOwnTemp, isOwnTempOf, isUnkeyedTemp, type TempKey } from './temp-names.js';

/** Directories remembered because a copy failed there; more are not kept (the roots are always swept). */
const MAX_SUSPECTS = 4096;
/** Files in the form of an earlier release's temp names, each named in the log once; more are not remembered. */
const MAX_NAMED = 4096;

/**
 * The copier removes its own temp file when a copy fails, and one an earlier attempt left when that same file
 * is copied again; a temp file outlives both when grimseld is killed mid-copy and the file is never copied
 * again (its source gone: failed for good), or when the removal itself failed. Those stayed
 * for ever, most visibly in a storage's root (files added without `./` land there). This sweeps, at start and
 * then periodically, each storage's root and every directory where a copy failed since, removing temp files
 * nothing has changed for `maxAgeMs`: a copy in progress changes its temp file with every chunk, so only
 * the flush of a batch (seconds) stands between its last change and its rename, and a temp file of a name being
 * copied now is left whatever its age says (the wall clock may have been stepped forward, an NFS server may
 * stall). Never recursive: a storage tree holds every shift's files, and walking it would cost the disks more
 * than any leftover. Only names
 * made with grimseld's key are removed (temp-names.ts): a user's file of any name, copied there, never is.
 */
/** A directory to sweep: a storage's target and the path below it ('' for the target itself). */
interface SweepDir {
  target: string;
  rel: string;
}

export class TempSweeper {
  /** By the directory's full path. */
  readonly #suspects = new Map<string, SweepDir>();

  readonly #targets: Map<string, string>;

  /** Unkeyed temp names (temp-names.ts) already named in the log, by full path. */
  readonly #named = new Set<string>();

  /** The final names of the copies handed to a writer and not reported yet, with how many of each. */
  readonly #copying = new Map<string, number>();

  /** Notes, from `copies`, the directory of every failed copy for the next sweep; removes only names made with `key`. */
  constructor(
    private readonly storages: StorageInfo[],
    copies: CopyEvents,
    private readonly key: TempKey,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now, // wall clock: compared with file ctimes
  ) {
    this.#targets = new Map(storages.map((s) => [s.id, s.target]));
    copies.onCopy({
      taken: (job) => this.#copying.set(path.basename(job.dest), (this.#copying.get(path.basename(job.dest)) ?? 0) + 1),
      reported: (r) => {
        const name = path.basename(r.job.dest);
        const n = this.#copying.get(name) ?? 0;
        if (n > 1) this.#copying.set(name, n - 1);
        else this.#copying.delete(name);
        this.#failedIn(r);
      },
    });
  }

  /**
   * Whether temp name `entry` may be a running copy's: one of a final name being copied now. Such a file is left
   * whatever its age says: a copy's writes keep its ctime young by the wall clock only while that clock is not
   * stepped forward (by more than `maxAgeMs`: then every running copy's temp file looked stale, and its removal
   * failed the copy at its rename).
   */
  #running(entry: string): boolean {
    for (const name of this.#copying.keys()) if (isOwnTempOf(this.key, entry, name)) return true;
    return false;
  }

  #failedIn(r: CopyReport): void {
    const target = this.#targets.get(r.job.storage);
    if (!(r.outcome instanceof Error) || target === undefined || this.#suspects.size >= MAX_SUSPECTS) return;
    const dir = path.dirname(r.dest);
    const rel = path.relative(target, dir);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) this.#suspects.set(dir, { target, rel });
  }

  /** One sweep; returns the files removed. A storage whose mount point is not mounted is left alone (G13). */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    const unkeyed: string[] = [];
    const dirs = new Map<string, SweepDir>();
    /** The targets of storages not mounted or not answering: neither their roots nor their suspects are swept now. */
    const away = new Set<string>();
    for (const s of this.storages) {
      // A storage that does not answer (a hard NFS mount whose server hangs) is left alone like an unmounted one: the
      // sweep opens and reads directories synchronously (DirFd), and on a hung storage that held up all of grimseld.
      if (!(await answers(probedAt(s))) || (s.mountpoint && !(await isMountPoint(s.mountpoint)))) {
        away.add(s.target);
        continue;
      }
      dirs.set(s.target, { target: s.target, rel: '' });
    }
    for (const [p, d] of [...this.#suspects]) if (!away.has(d.target)) dirs.set(p, d);
    for (const [p, d] of dirs) {
      const { gone, left, earlier } = await this.#sweepDir(d);
      removed.push(...gone);
      unkeyed.push(...earlier);
      // A directory stays suspect while it holds temp files too young to go.
      if (!left) this.#suspects.delete(p);
    }
    if (removed.length) {
      this.log.warn({ files: removed.slice(0, 20), count: removed.length },
        `removed ${removed.length} stale grimseld temp file(s) left by copies that never finished (unchanged for over ${Math.round(this.maxAgeMs / 1000)} s)`);
    }
    const news = unkeyed.filter((f) => !this.#named.has(f));
    if (news.length) {
      for (const f of news) if (this.#named.size < MAX_NAMED) this.#named.add(f);
      this.log.warn({ files: news.slice(0, 20), count: news.length },
        `left ${news.length} file(s) named like copy temp files of a grimseld release before keyed temp names: a user's file may be named so, and only an operator can tell; remove those that are leftovers by hand`);
    }
    return removed;
  }

  async #sweepDir({ target, rel }: SweepDir): Promise<{ gone: string[]; left: boolean; earlier: string[] }> {
    const gone: string[] = [];
    const earlier: string[] = [];
    let left = false;
    let dir: DirFd;
    let names: string[];
    try {
      const top = DirFd.open(target);
      try {
        dir = top.walk(rel);
      } finally {
        top.close();
      }
    } catch {
      return { gone, left, earlier }; // not made yet, gone, or a link on the way: nothing of ours to sweep
    }
    try {
      try {
        names = dir.names();
      } catch {
        return { gone, left, earlier };
      }
      for (const name of names) {
        const own = isOwnTemp(this.key, name);
        if (!own && !isUnkeyedTemp(name)) continue;
        const file = dir.show(name);
        try {
          const st = await lstat(dir.at(name));
          if (!st.isFile()) continue; // a link or directory with that name is not ours: never followed, never removed
          if (!own) {
            earlier.push(file);
            continue;
          }
          // ctime, not mtime: the copier gives its temp file the source's mtime, however old. Against the wall
          // clock, as the kernel's ctime is.
          if (this.now() - st.ctimeMs < this.maxAgeMs || this.#running(name)) {
            left = true;
            continue;
          }
          await unlink(dir.at(name));
          gone.push(file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file, err: e }, 'cannot remove a stale grimseld temp file');
        }
      }
    } finally {
      dir.close();
    }
    return { gone, left, earlier };
  }

  /** Sweeps now and then every `intervalMs` until `signal` aborts; a failed sweep is logged, never fatal. */
  async run(signal: AbortSignal, intervalMs: number): Promise<void> {
    while (!signal.aborted) {
      await this.sweep().catch((e: unknown) => this.log.error({ err: e }, 'sweeping stale temp files failed'));
      await sleep(intervalMs, signal);
    }
  }
}

// The directories in which the fill guards replaced originals by links to their copies (G6, G7), per shift:
// what the shift-change clean-up (G5) sweeps once that shift has ended.
//
// A file's record is dropped once every copy is done and its original is linked (the catalog keeps live
// records only: a long shift at 100 Hz links millions), so nothing would remember those links, and they
// stayed for good, dangling once their copy went. One entry per directory and shift, not per file: a
// handful per shift, journaled the first time a link is made there and dropped once swept.
//
// The sweep removes only what such a link is: a symbolic link named N that reads `${to}/N` (or the numbered
// name its copy got there), whose copy belongs to an earlier shift than the current one (its provenance, I3,
// the shift furkad delivered it in) or, where the copy records none, whose own mtime, which the guard sets to
// its shift's start, is before the current shift's start. Not its ctime: the wall clock may have been stepped
// back since the current shift began, and its links would look older than it. The link's owner can set its
// mtime (`touch -h`), and so keep or lose only links of their own, as they can remove or make them anyway. So a
// later shift of the same user, writing into the same directory, keeps its own links, and a user's own links
// (anything else) are left alone (G2). The directory is reached from the root without following links
// (common/dir-fd.ts); removing a link loses no data: its copy stays. The check and the unlink follow each other
// at once, without giving way to other work: the user may rename a file of theirs over the name in between, a
// window of microseconds (docs/threat-model.md).
import { closeSync, constants, fstatSync, readlinkSync, type BigIntStats } from 'node:fs';
import { opendir } from 'node:fs/promises';
import { readProvenance } from '../common/provenance.js';
import * as path from 'node:path';
import { DirFd, UnsafePath } from '../common/dir-fd.js';
import { numberedName } from '../common/numbered-name.js';
import type { Logger } from '../common/logger.js';
import type { Catalog } from './catalog.js';
import type { MessageHub } from './messages.js';
import { isMountPoint } from './mounts.js';

/** Where the links were made, below which root, and the directory their copies are in. */
export interface LinkDir {
  /** The ramdisk (G6: links to internal copies) or the internal storage (G7: links to external copies). */
  where: 'ramdisk' | 'internal';
  /** The directory below grimseld's ramdisk `target` or the internal storage's target. */
  dir: string;
  /** The absolute directory the links point into: a link named N there is ours when it reads `${to}/N`. */
  to: string;
}

export class LinkDirs {
  #byShift = new Map<bigint, Map<string, LinkDir>>();

  has(u: bigint, d: LinkDir): boolean {
    return this.#byShift.get(u)?.has(keyOf(d)) === true;
  }

  add(u: bigint, d: LinkDir): void {
    let dirs = this.#byShift.get(u);
    if (!dirs) this.#byShift.set(u, (dirs = new Map()));
    dirs.set(keyOf(d), d);
  }

  /** Forgets shift `u`'s directories (swept). */
  drop(u: bigint): void {
    this.#byShift.delete(u);
  }

  /** Shifts that started before `u`, with their directories. */
  before(u: bigint): Array<[bigint, LinkDir[]]> {
    return [...this.#byShift].filter(([s]) => s < u).map(([s, dirs]) => [s, [...dirs.values()]]);
  }

  /** Every directory held, with its shift. */
  *entries(): Generator<[bigint, LinkDir]> {
    for (const [u, dirs] of this.#byShift) for (const d of dirs.values()) yield [u, d];
  }

  get size(): number {
    let n = 0;
    for (const dirs of this.#byShift.values()) n += dirs.size;
    return n;
  }
}

function keyOf(d: LinkDir): string {
  return `${d.where}\0${d.dir}\0${d.to}`;
}

/** Whether `text` is what a fill guard's link named `name` in a directory of `d` reads (its copy's path). */
export function isGuardLink(d: LinkDir, name: string, text: string): boolean {
  if (!text.startsWith(`${d.to}/`)) return false;
  const base = text.slice(d.to.length + 1);
  if (base === name) return true;
  const n = /\.~([1-9][0-9]{0,3})~$/.exec(base);
  return n !== null && numberedName(name, Number(n[1])) === base;
}

/**
 * The mtime a fill guard's link gets (reclaimer.ts): shift start `u` (µs since the epoch) rounded up to a whole
 * second. Whole seconds pass through libuv and the kernel exactly (a double of today's seconds with µs digits is
 * cut down to the µs below about every other time), and every file system that holds links keeps them (ext4 with
 * 128-byte inodes keeps whole seconds only). Rounded up, so that a link of the current shift never reads as
 * older than its start; a link of a shift that ended within the same second reads as the current one's and stays.
 */
export function shiftSeconds(u: bigint): number {
  return Number((u + 999_999n) / 1_000_000n);
}

/**
 * What a fill guard's link says of its shift (µs): its own mtime, shiftSeconds of its shift's start. A link made by
 * a release before that has the time it was made.
 */
function linkShift(st: BigIntStats): bigint {
  return st.mtimeNs / 1000n;
}

/**
 * Removes the fill guards' links in `d` (below `root`) made before `beforeUs` (µs since the epoch); returns how
 * many. A directory that is gone, or that a user replaced by a link or a file, has nothing of ours left to
 * sweep: 0. Other failures throw (the clean-up tries again later), a missing root (not mounted) among them.
 */
export async function sweepLinkDir(root: string, d: LinkDir, beforeUs: bigint, copyRoots: string[] = []): Promise<number> {
  const top = DirFd.open(root); // a root that is missing (not mounted) throws: the sweep waits for it
  let dir: DirFd;
  try {
    dir = top.walk(d.dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof UnsafePath || code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return 0;
    throw e;
  } finally {
    top.close();
  }
  let removed = 0;
  try {
    // Iterated in batches: a directory of 100 000 links does not hold up grimseld's event loop.
    for await (const e of await opendir(`/proc/self/fd/${dir.fd}`)) {
      if (!e.isSymbolicLink()) continue;
      const at = dir.at(e.name) as string;
      const st = dir.lstatBig(e.name);
      if (!st?.isSymbolicLink()) continue;
      let text: string;
      try {
        text = readlinkSync(at);
      } catch {
        continue;
      }
      if (!isGuardLink(d, e.name, text)) continue;
      // Whose the copy is, as it says, or else as the link's own mtime says: never a link of the current shift.
      if ((copyShift(text, copyRoots) ?? linkShift(st)) >= beforeUs) continue;
      try {
        dir.unlink(e.name);
        removed++;
      } catch (u) {
        if ((u as NodeJS.ErrnoException).code !== 'ENOENT') throw u; // gone meanwhile (G5 removed its record's link): fine
      }
    }
  } finally {
    dir.close();
  }
  return removed;
}

/**
 * The shift start (µs) the copy at `file` records (I3), reached from the storage target among `roots` it lies
 * below without following links (the copy's directory is its user's, who may swap any part of it for a link, to
 * a mount that hangs, say), and opened so (O_NOFOLLOW, O_NONBLOCK). A copy that is itself a link (the internal
 * guard's, G7) is followed to the copy it names, once, the same way. Undefined when it cannot be told.
 */
function copyShift(file: string, roots: string[], hops = 1): bigint | undefined {
  const root = roots.map((r) => r.replace(/\/+$/, '')).find((r) => file.startsWith(`${r}/`));
  if (root === undefined) return undefined;
  let held;
  try {
    held = DirFd.openParent(root, file.slice(root.length + 1));
  } catch {
    return undefined;
  }
  if (!held) return undefined;
  try {
    const st = held.dir.lstat(held.name);
    if (st?.isSymbolicLink()) return hops > 0 ? copyShift(readlinkSync(held.dir.at(held.name)), roots, hops - 1) : undefined;
    if (!st?.isFile()) return undefined;
    const fd = held.dir.openFile(held.name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    try {
      return fstatSync(fd).isFile() ? readProvenance(fd)?.shift?.startUs : undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  } finally {
    held.dir.close();
  }
}

/**
 * Sweeps the link directories of ended shifts in the background (G5): a directory of a long shift may hold a
 * million links, and the fill guards, which run in the same loop, must not wait for it. A sweep asked for
 * while one runs follows it; one that could not finish (a DEL_ERROR) is tried again after `retry.firstMs`,
 * doubling up to `retry.maxMs`, as the reclaimer's deletions are.
 */
export class LinkSweeper {
  #wanted: bigint | undefined;
  #last: bigint | undefined;
  #running: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = 0;
  #stopped = false;

  /**
   * `mountpoint`: the internal storage's, where one is configured (G13): nothing is swept while it is not
   * mounted. `copyRoots`: the storage targets the links point into (internal, external), from which a copy's
   * recorded shift is read without following links.
   */
  constructor(private readonly catalog: Catalog, private readonly roots: Record<LinkDir['where'], string>,
    private readonly messages: MessageHub, private readonly log: Logger, private readonly retry: { firstMs: number; maxMs: number },
    private readonly mountpoint?: string, private readonly copyRoots: string[] = []) {}

  /** Sweeps the links of shifts that started before `current` (its start, µs), unless none has any. */
  sweep(current: bigint): void {
    if (this.#stopped || this.catalog.linkDirsBefore(current).length === 0) return;
    // A sweep that failed waits out its pause (one DEL_ERROR per try, not one per tick of the reclaimer), unless
    // a shift started since: then its predecessor's links are due at once.
    if (this.#retry !== undefined && current === this.#last) return;
    this.#wanted = current;
    this.#running ??= this.#run().finally(() => { this.#running = undefined; });
  }

  /** No more sweeps; resolves once the one running (if any) is done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    await this.#running;
  }

  async #run(): Promise<void> {
    while (this.#wanted !== undefined && !this.#stopped) {
      const current = this.#wanted;
      this.#wanted = undefined;
      this.#last = current;
      let ok = false;
      try {
        ok = await this.#sweepBefore(current);
      } catch (e) {
        this.log.error({ err: e }, 'removing the links of ended shifts failed');
      }
      clearTimeout(this.#retry);
      this.#retry = undefined;
      if (ok) {
        this.#retryMs = 0;
        continue;
      }
      this.#retryMs = this.#retryMs === 0 ? this.retry.firstMs : Math.min(this.#retryMs * 2, this.retry.maxMs);
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.sweep(this.#last!);
      }, this.#retryMs);
      this.#retry.unref();
    }
  }

  /** One pass over every shift before `current`; false when some directory could not be swept. */
  async #sweepBefore(current: bigint): Promise<boolean> {
    let ok = true;
    for (const [u, dirs] of this.catalog.linkDirsBefore(current)) {
      let removed = 0;
      let swept = true;
      // The ramdisk's first: their copies on the internal disk may be links the internal directories' sweep removes.
      for (const d of [...dirs].sort((a, b) => (a.where === b.where ? 0 : a.where === 'ramdisk' ? -1 : 1))) {
        const root = this.roots[d.where];
        try {
          // The internal disk, where its mount point is configured: its links' directories and the copies the
          // ramdisk's links name are there; on the bare mount point both are missing, which would pass for swept.
          if (this.mountpoint && !(await isMountPoint(this.mountpoint))) throw new Error(`${this.mountpoint} is not mounted: swept when it is again`);
          removed += await sweepLinkDir(root, d, current, this.copyRoots);
        } catch (e) {
          swept = false;
          const where = path.join(root, d.dir);
          this.messages.publish('DEL_ERROR', where, `cannot remove the links to copies in ${where} of an ended shift: ${(e as Error).message}`);
        }
      }
      if (removed > 0) this.log.info({ shift: String(u), removed }, 'removed the links of an ended shift');
      if (this.#stopped) return true;
      if (swept) await this.catalog.linkDirsSwept(u);
      else ok = false;
    }
    return ok;
  }
}

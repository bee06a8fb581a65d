// The detector's files below the agent's root as the agent touches them: looked at, read and deleted only through
// directories kept open one component at a time, never through a link a writer swapped in (docs/threat-model.md; A2, A3, A4).
//
// Why: the agent runs as root, and the detector's writer owns the directories below the root. Between a check by
// path and a use by path the writer can swap a directory for a symbolic link, and root would then send
// /etc/shadow to the PPU (confidentiality) or delete a file of the same name anywhere (integrity). Every call
// here resolves the root (the administrator's, trusted) and then each component with O_NOFOLLOW
// (common/dir-fd.ts), and acts on one entry of the directory it has open.
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { components, DirFd, UnsafePath } from '../common/dir-fd.js';
import { candidateNames, NO_HARD_LINKS } from '../common/numbered-name.js';
import { fileKey } from './open-writers.js';
import { baseId } from '../common/file-id.js';
import { monotonicMs } from '../common/monotonic.js';

/** Whether a file on disk is still the announced one: `same`, `changed` (or not a plain file any more) or `gone`. */
export type Sameness = 'same' | 'changed' | 'gone';

/**
 * What became of an acknowledged file: deleted, changed or gone meanwhile, or `written` (some process still
 * writes it: kept). `restoredAs`: a file taken by mistake and put back beside a newer one (see takeAside).
 * `renamed`: put back by rename(2), not link(2) (putBack): the kernel reports that as the file's MOVED_TO
 * (complete), and its writer's close under the name it was put back as.
 */
export interface Removal {
  outcome: 'deleted' | 'written' | Exclude<Sameness, 'same'>;
  restoredAs?: string;
  renamed?: true;
}

/**
 * An acknowledged file taken aside (SourceFiles.takeAside) while the agent asks whether anyone still writes
 * it: its directory and a read-only descriptor of it held open until finishAside().
 */
export interface TakenAside {
  dir: DirFd;
  name: string;
  aside: string;
  /** The aside name relative to the root: the name the kernel reports the file's writer's close under now. */
  asideRel: string;
  fd: number;
  rel: string;
  /** The id acknowledged. */
  id: string;
  /** "dev:ino", as open-writers.ts compares files. */
  file: string;
  /** Its ctime before it was taken aside (the rename sets another): when it last changed in any way. */
  ctimeNs: bigint;
}

/** A file's identity as the protocol names it: INO:SIZE:MTIME_NS (docs/agent-protocol.md). */
export function fileId(stat: BigIntStats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
}

/** Whether `stat` is of the file announced as `id`, as far as the file system can tell (baseId). */
export function isFileOf(stat: BigIntStats, id: string): boolean {
  return fileId(stat) === baseId(id);
}

const SLASH = 0x2f;

/**
 * The name an acknowledged file has for the moment between its check and its deletion: hidden, never announced.
 * It says which file was meant (its id) and, where the name fits, the name it had: an agent killed in that
 * moment leaves it behind, and the next one finishes the job (recoverAside).
 */
const ASIDE_PREFIX = '.furka-agent-acked-';
const ASIDE = /^\.furka-agent-acked-(\d+)-(\d+)-(\d+)-[0-9a-f]{8}(?:~(.+))?$/s;
const NAME_MAX = 255;

/**
 * The 8 random hex digits that make an aside name the agent's own: no user can guess the next one and plant
 * something under it. Drawn from a pool of random bytes, one call for 1024 names, not one per file.
 */
let tagPool = Buffer.alloc(0);
let tagAt = 0;
function nextAsideTag(): string {
  if (tagAt + 4 > tagPool.length) {
    tagPool = randomBytes(4096);
    tagAt = 0;
  }
  tagAt += 4;
  return tagPool.toString('hex', tagAt - 4, tagAt);
}

/**
 * Aside names for acknowledged file `id`, named `name`, in its directory: the one that says both, then the one
 * that says only the id (for a name too long to fit beside it, here or on a file system that allows less).
 */
function asideNames(id: string, name: string): string[] {
  const base = `${ASIDE_PREFIX}${baseId(id).replace(/:/g, '-')}-${nextAsideTag()}`;
  const full = `${base}~${name}`;
  return Buffer.byteLength(full) <= NAME_MAX ? [full, base] : [base];
}

/** What an aside name says: the acknowledged file's id, and its name if it fitted. */
function parseAside(base: string): { id: string; name?: string } | undefined {
  const m = ASIDE.exec(base);
  if (!m) return undefined;
  return { id: `${m[1]}:${m[2]}:${m[3]}`, ...(m[4] !== undefined ? { name: m[4] } : {}) };
}

/** What recoverAside() did with a name left aside by an agent that was killed. */
export type AsideRecovery =
  | { outcome: 'deleted' }
  /** `written`: the acknowledged file itself, put back because some process still writes it. */
  | { outcome: 'restored'; as: string; written?: boolean; renamed?: true }
  | { outcome: 'unknown' };

/** Whether root-relative `rel` has such a name: only an agent killed in that moment leaves one behind. */
export function isAsideName(rel: Buffer): boolean {
  const base = rel.subarray(rel.lastIndexOf(SLASH) + 1);
  return base.toString('latin1').startsWith(ASIDE_PREFIX);
}

/** A root-relative path cut into its directory and its name ('a/b/c' → 'a/b', 'c'; 'c' → '', 'c'). */
function split(rel: string | Buffer): [string | Buffer, string | Buffer] {
  if (typeof rel === 'string') {
    const at = rel.lastIndexOf('/');
    return at < 0 ? ['', rel] : [rel.slice(0, at), rel.slice(at + 1)];
  }
  const at = rel.lastIndexOf(SLASH);
  return at < 0 ? [Buffer.alloc(0), rel] : [rel.subarray(0, at), rel.subarray(at + 1)];
}

/** A path that does not (or no longer) reach a file below the root, rather than a failure to report. */
function unreachable(e: unknown): boolean {
  return e instanceof UnsafePath || ['ENOENT', 'ENOTDIR', 'ELOOP'].includes((e as NodeJS.ErrnoException).code ?? '');
}

/**
 * How long the root stays open after its last use. Held while files flow (two system calls less for each of
 * the several per file, A6), let go when idle: an open descriptor on a mount point makes `umount` fail (busy).
 */
const ROOT_IDLE_MS = 1000;

/**
 * Directories below the root kept open between operations (the most recently used). Each file costs several
 * operations (announce, send, its check after reading, the deletion), and reaching its directory anew is an
 * open(2) and a close(2) per component for each: most of the agent's system calls per file (#13).
 */
const DIRS_KEPT = 64;

export class SourceFiles {
  #top: DirFd | undefined;
  /**
   * Directories below the root, reached from it as any walk is (no link followed) and kept open: by their
   * path's components (latin1), least recently used first. A kept handle points at the directory that was
   * checked wherever it is moved to, as a walked one does for the moment of its use; what a later rename or
   * removal of a directory means is the kernel's to say: the catalog forgets the directory (and all below it)
   * when an event says it went or came (over another), and every rescan and the root's idle close forget
   * all. Kept only while `keepDirs()` says every directory is watched (so that every such change comes as an
   * event); otherwise each use walks from the root and closes. See docs/threat-model.md.
   */
  readonly #dirs = new Map<string, DirFd>();
  /** Aside names (root-relative) of files taken aside and not yet finished: a rescan leaves them alone. */
  readonly #inFlight = new Set<string>();
  #lastUse = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  /**
   * `root` is the configured root as a real path: trusted, held open, and opened again after forgetRoot() (it
   * may be deleted and made again).
   */
  constructor(readonly root: string, private readonly keepDirs: () => boolean = () => false) {}

  /**
   * The root may have been replaced (the kernel said so, or a rescan follows a restart of the watch): the next
   * call opens it again. Until then a replaced root's files are not found, never others taken for them: each
   * is checked by its identity.
   */
  forgetRoot(): void {
    this.#top?.close();
    this.#top = undefined;
    this.#forgetKept();
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /**
   * Directory `rel` (below the root) was removed, moved, replaced or lost its watch: its kept handle, and those
   * of the directories below it, are let go; the next use walks to whatever has that name then.
   */
  forgetDir(rel: string | Buffer): void {
    let key: string;
    try {
      key = dirKey(rel);
    } catch {
      return; // not a path below the root: nothing kept for it
    }
    for (const [k, dir] of this.#dirs) {
      if (k === key || key === '' || k.startsWith(`${key}/`)) {
        dir.close();
        this.#dirs.delete(k);
      }
    }
  }

  /** Closes the root once it has not been used for ROOT_IDLE_MS. */
  #closeWhenIdle(): void {
    this.#lastUse = monotonicMs();
    if (this.#idleTimer) return;
    const check = (): void => {
      const idle = monotonicMs() - this.#lastUse;
      if (idle >= ROOT_IDLE_MS) {
        this.#idleTimer = undefined;
        this.forgetRoot();
      } else {
        this.#idleTimer = setTimeout(check, ROOT_IDLE_MS - idle);
        this.#idleTimer.unref();
      }
    };
    this.#idleTimer = setTimeout(check, ROOT_IDLE_MS);
    this.#idleTimer.unref();
  }

  /** lstat of root-relative `rel`; undefined when it is gone or reached only through a link. */
  lstat(rel: string | Buffer): BigIntStats | undefined {
    try {
      return this.#within(rel, (dir, name) => dir.lstatBig(name));
    } catch (e) {
      if (unreachable(e)) return undefined;
      throw e;
    }
  }

  /**
   * Creates the empty file `name` in the root and closes it (a barrier mark, barrier.ts): O_EXCL, so never an
   * existing file, and O_NOFOLLOW, so never through a link.
   */
  createMark(name: string): void {
    this.#within(name, (dir, n) => closeSync(dir.openFile(n, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)));
  }

  /**
   * Deletes `name` in the root if it is an empty regular file (a mark, barrier.ts), through remove(): a file a
   * user renames onto that name meanwhile is put back (a hidden name: never announced), never deleted.
   */
  removeMark(name: string): Removal | undefined {
    const st = this.lstat(name);
    if (!st?.isFile() || st.size !== 0n) return undefined;
    return this.remove(name, fileId(st));
  }

  /** Whether `rel` is still the file `id` (a regular file, not reached through a link). */
  sameness(rel: string, id: string): Sameness {
    let st: BigIntStats | undefined;
    try {
      st = this.#within(rel, (dir, name) => dir.lstatBig(name));
    } catch (e) {
      // A directory on the way swapped for a link: what the path reaches now is not the announced file.
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : 'changed';
    }
    if (!st) return 'gone';
    return st.isFile() && isFileOf(st, id) ? 'same' : 'changed';
  }

  /**
   * Opens `rel` for reading if it is still the file `id`; undefined if not. O_NOFOLLOW on the name in its
   * open directory, O_NONBLOCK so that a FIFO swapped in cannot hang the agent, and fstat of what was opened
   * checked again: only ever the announced regular file is read. Returns the descriptor and that fstat.
   */
  open(rel: string, id: string): { fd: number; stat: BigIntStats } | undefined {
    try {
      return this.#within(rel, (dir, name) => {
        const st = dir.lstatBig(name);
        if (!st?.isFile() || !isFileOf(st, id)) return undefined;
        const fd = dir.openFile(name, constants.O_RDONLY | constants.O_NONBLOCK);
        const now = fstatSync(fd, { bigint: true });
        if (now.isFile() && isFileOf(now, id)) return { fd, stat: now };
        closeSync(fd);
        return undefined;
      });
    } catch {
      return undefined;
    }
  }

  /**
   * Deletes `rel` if it is still the file `id` and no process writes it (`written`, asked while the file is
   * aside); see takeAside() and finishAside(), which do the same in two steps around an asynchronous question.
   */
  remove(rel: string, id: string, written: (t: TakenAside) => boolean = () => false): Removal {
    const t = this.takeAside(rel, id);
    if (!('fd' in t)) return t;
    let w: boolean;
    try {
      w = written(t);
    } catch (e) {
      this.finishAside(t, true); // no answer: put back, never deleted
      throw e;
    }
    return this.finishAside(t, w);
  }

  /**
   * The first half of deleting `rel` if it is still the file `id` (A4). A writer may rename a new file over the
   * name at any moment, also between the check and the unlink, and unlink(2) takes whatever has the name then:
   * so the file is first renamed to a hidden name of its own in the same open directory (atomic, and that name
   * is the agent's alone), and checked there. Anything else taken by that rename is put back with link(2),
   * which never replaces a file: under its name, or beside a newer one as NAME.~N~ (`restoredAs`), never lost.
   * The acknowledged file is returned taken aside, open for reading (the descriptor asks whether anyone still
   * writes it, lease-check.ts): finishAside() deletes it or puts it back. Throws only for what the caller
   * should log (an immutable file, say).
   */
  takeAside(rel: string, id: string): Removal | TakenAside {
    try {
      return this.#within(rel, (parent, name) => {
        const st = parent.lstatBig(name);
        if (!st) return { outcome: 'gone' };
        if (!st.isFile() || !isFileOf(st, id)) return { outcome: 'changed' };
        // A handle of its own: the root and the kept directories may be closed (forgetRoot, forgetDir) while
        // the question is out.
        const dir = parent.walk('');
        try {
          const names = asideNames(id, name as string);
          let aside = names[0]!;
          for (;;) {
            try {
              dir.rename(dir.at(name), aside);
              break;
            } catch (e) {
              const code = (e as NodeJS.ErrnoException).code;
              if (code === 'ENOENT') return closing(dir, { outcome: 'gone' });
              if (code !== 'ENAMETOOLONG' || aside === names[names.length - 1]) throw e;
              aside = names[names.length - 1]!;
            }
          }
          try {
            const taken = dir.lstatBig(aside);
            if (!taken) return closing(dir, { outcome: 'gone' });
            const fd = taken.isFile() && taken.dev === st.dev && isFileOf(taken, id) ? openTaken(dir, aside, taken) : undefined;
            if (fd !== undefined) {
              const asideRel = path.join(split(rel)[0] as string, aside);
              this.#inFlight.add(asideRel);
              return { dir, name: name as string, aside, asideRel, fd, rel, id, file: fileKey(taken), ctimeNs: st.ctimeNs };
            }
          } catch (e) {
            // Never left under a hidden name, where nothing announces it (out of descriptors, say): put back first.
            putBack(dir, aside, name as string);
            throw e;
          }
          return closing(dir, { outcome: 'changed', ...restored(rel, putBackHow(dir, aside, name as string)) });
        } catch (e) {
          dir.close();
          throw e;
        }
      });
    } catch (e) {
      if (unreachable(e)) return { outcome: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : 'changed' };
      throw e;
    }
  }

  /**
   * The second half: deletes the acknowledged file taken aside, or, if some process still writes it
   * (`written`), puts it back under its name (or NAME.~N~ beside a newer one) as `written`: its writer has
   * more to put in it, and it is announced again when that writer closes it (under the aside name: the kernel
   * reports a close under the name the file was opened by, as it is now). One that changed while the question
   * was out (a descriptor opened before it was taken aside), or that the catalog knows to be `rewritten` since
   * (a close the file system cannot tell, baseId), is put back as `changed`.
   */
  finishAside(t: TakenAside, written: boolean, rewritten = false): Removal {
    try {
      if (!written && !rewritten && isFileOf(fstatSync(t.fd, { bigint: true }), t.id)) {
        t.dir.unlink(t.aside);
        return { outcome: 'deleted' };
      }
      return { outcome: written ? 'written' : 'changed', ...restored(t.rel, putBackHow(t.dir, t.aside, t.name)) };
    } finally {
      closeSync(t.fd);
      t.dir.close();
      this.#inFlight.delete(t.asideRel);
    }
  }

  /** Whether root-relative `rel` is the aside name of a deletion in progress (not one a killed agent left). */
  inFlight(rel: Buffer): boolean {
    return this.#inFlight.has(rel.toString('utf8'));
  }

  /**
   * Finishes what an agent killed between taking an acknowledged file aside and deleting it left behind at
   * `rel` (an aside name): the file the acknowledgement was for (its id in the name, and still its identity)
   * is deleted, as acknowledged; any other file (one a writer renamed over the acknowledged one) is put back
   * under the name it had, or beside a newer one as NAME.~N~, never replacing anything. `unknown` when the
   * name does not say (an older agent's, or a name too long to fit): then it is left for a person. One some
   * process still writes (`written`) is put back under its name too, `written`: its writer has more to put in it.
   */
  recoverAside(rel: Buffer, written: (t: TakenAside) => boolean = () => false): AsideRecovery {
    const [dirRel, base] = split(rel) as [Buffer, Buffer];
    const said = parseAside(base.toString('utf8'));
    if (!said || !Buffer.from(base.toString('utf8')).equals(base)) return { outcome: 'unknown' };
    // The acknowledged file is deleted the way remove() deletes one: taken aside again, checked there, so
    // that a file renamed onto this name meanwhile is never deleted for it.
    const relText = rel.toString('utf8');
    const removal = this.remove(relText, said.id, written);
    if (removal.outcome === 'deleted') return { outcome: 'deleted' };
    if (removal.outcome === 'gone' || said.name === undefined || said.name.includes('/')) return { outcome: 'unknown' };
    const name = said.name;
    return this.#within(relText, (dir, n) => {
      if (!dir.lstatBig(n)?.isFile()) return { outcome: 'unknown' };
      const back = putBackHow(dir, n as string, name);
      return { outcome: 'restored', as: path.join(dirRel.toString('utf8'), back.as), ...(removal.outcome === 'written' ? { written: true } : {}),
        ...(back.renamed ? { renamed: true } : {}) };
    });
  }

  /** Runs `fn` with the directory of `rel` open (reached from the root without following links) and its name. */
  #within<T>(rel: string | Buffer, fn: (dir: DirFd, name: string | Buffer) => T): T {
    const [dirRel, name] = split(rel);
    this.#top ??= DirFd.open(this.root);
    const top = this.#top;
    this.#closeWhenIdle();
    if (dirRel.length === 0) return fn(top, name);
    // `fn` is synchronous: no other call can close a kept handle while it runs.
    if (this.keepDirs()) return fn(this.#kept(top, dirRel), name);
    this.#forgetKept();
    return DirFd.with(top.walk(dirRel), (dir) => fn(dir, name));
  }

  #forgetKept(): void {
    for (const dir of this.#dirs.values()) dir.close();
    this.#dirs.clear();
  }

  /** The kept handle of directory `dirRel` below the root `top`, walked to (and kept) if there is none. */
  #kept(top: DirFd, dirRel: string | Buffer): DirFd {
    const key = dirKey(dirRel);
    const known = this.#dirs.get(key);
    if (known) {
      this.#dirs.delete(key);
      this.#dirs.set(key, known);
      return known;
    }
    const dir = top.walk(dirRel);
    this.#dirs.set(key, dir);
    if (this.#dirs.size > DIRS_KEPT) {
      const [oldest, old] = this.#dirs.entries().next().value as [string, DirFd];
      old.close();
      this.#dirs.delete(oldest);
    }
    return dir;
  }
}

/** A path of ASCII characters only, whose bytes are its characters. */
const ASCII = /^[\x00-\x7f]*$/;

/** A directory path's key in the kept handles: its components' bytes (latin1), '/' between (so 'a//b' is 'a/b'). */
function dirKey(rel: string | Buffer): string {
  // Nearly every path is ASCII: its components are their own latin1 bytes, without a Buffer for each look-up.
  if (typeof rel === 'string' && ASCII.test(rel)) return components(rel).join('/');
  return components(typeof rel === 'string' ? Buffer.from(rel) : rel).map((c) => c.toString('latin1')).join('/');
}

/** Closes `dir` and returns `out`. */
function closing<T>(dir: DirFd, out: T): T {
  dir.close();
  return out;
}

/** The file taken aside, opened for reading if it still is `st` (O_NONBLOCK: never a FIFO's hang); undefined if not. */
function openTaken(dir: DirFd, aside: string, st: BigIntStats): number | undefined {
  const fd = dir.openFile(aside, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const now = fstatSync(fd, { bigint: true });
    if (now.dev === st.dev && now.ino === st.ino) return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  closeSync(fd);
  return undefined;
}

/** `restoredAs`: the name (below the root) a file put back in `rel`'s directory got; `renamed` if by rename(2). */
function restored(rel: string, back: { as: string; renamed: boolean }): { restoredAs?: string; renamed?: true } {
  return { restoredAs: path.join(split(rel)[0] as string, back.as), ...(back.renamed ? { renamed: true as const } : {}) };
}

/**
 * link(2) errors of a file system that has hard links but no room for one now: tmpfs counts each link against
 * its inodes (nr_inodes), so a ramdisk out of inodes fails it with ENOSPC; a quota, EDQUOT; a file at its
 * file system's limit on links, EMLINK. rename(2) needs none of that.
 */
const NO_ROOM_FOR_LINK: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EMLINK']);

/**
 * Gives the file at `aside` its name `name` again, or the first free NAME.~N~ if a newer file took that
 * meanwhile (numbered-name.ts, as furkad does); returns the name it got.
 */
function putBack(dir: DirFd, aside: string, name: string): string {
  return putBackHow(dir, aside, name).as;
}

/**
 * putBack(), saying how: with link(2), which never replaces a file, then the aside name unlinked; where the
 * file system has no hard links, or no room for one now (NO_ROOM_FOR_LINK: an acknowledged file whose writer
 * still held it stayed under its hidden name, never announced, on a ramdisk out of inodes; found by a hostile
 * tester), by rename(2) to a name checked to be free (a window of microseconds), `renamed`.
 */
function putBackHow(dir: DirFd, aside: string, name: string): { as: string; renamed: boolean } {
  for (const candidate of candidateNames(name)) {
    try {
      dir.link(dir.at(aside), candidate);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST') continue;
      if (!NO_HARD_LINKS.has(code) && !NO_ROOM_FOR_LINK.has(code)) {
        throw new Error(`cannot give ${dir.show(aside)} its name ${dir.show(name)} back: ${(e as Error).message}; it stays under that hidden name`);
      }
      // Check, then rename (a window of microseconds).
      if (dir.lstat(candidate)) continue;
      try {
        dir.rename(dir.at(aside), candidate);
      } catch (e2) {
        throw new Error(`cannot give ${dir.show(aside)} its name ${dir.show(name)} back: ${(e as Error).message} (link), ${(e2 as Error).message} (rename); it stays under that hidden name`);
      }
      return { as: candidate, renamed: true };
    }
    dir.unlink(aside);
    return { as: candidate, renamed: false };
  }
  throw new Error(`cannot give ${dir.show(aside)} its name ${dir.show(name)} back: all numbered names are taken; it stays under that hidden name`);
}

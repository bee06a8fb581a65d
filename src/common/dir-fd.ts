// Directories kept open, and every file operation relative to one (docs/threat-model.md).
//
// A root daemon acting in a tree a user can write to must not resolve a path name twice: between a check
// (lstat, realpath) and a use (rename, unlink, open) the user can swap a directory on the way for a symbolic
// link. The cure is the *at system calls on directory descriptors; Node has none of them, but Linux gives
// them to any path: `/proc/self/fd/N/name` is resolved by jumping straight to the directory that descriptor
// N refers to (a "magic link", nd_jump_link in the kernel: no path is walked again), and then looking up the one
// component `name` in it. rename(2), link(2), unlink(2), mkdir(2), symlink(2) and lchown(2) do not follow a
// final symbolic link, and open(2) is given O_NOFOLLOW, so each call acts on exactly one entry of a directory
// we have open. A directory is opened one component at a time with O_DIRECTORY|O_NOFOLLOW from an open one: a
// link anywhere on the way fails the open (ELOOP/ENOTDIR) instead of being followed.
//
// This needs /proc, which every systemd machine has; it is checked once, loudly. No native code, so the
// same JavaScript runs on Node 16 (CentOS 7) and 20.
import { closeSync, constants, fstatSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync,
  type BigIntStats, type Dirent, type Stats } from 'node:fs';

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** A path that a user changed into something a root daemon must not follow (a link, a file where a directory was). */
export class UnsafePath extends Error {}

let procChecked = false;

/** Fails unless /proc/self/fd works (mounted /proc): without it nothing here can be done safely. */
function checkProc(): void {
  if (procChecked) return;
  if (!statSync('/proc/self/fd', { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error('/proc/self/fd is missing: /proc must be mounted for safe file operations in user-writable directories');
  }
  procChecked = true;
}

/** Refuses anything but one plain directory entry name. */
function entryName<N extends string | Buffer>(name: N): N {
  const s = typeof name === 'string' ? name : name.toString('latin1');
  if (s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\0')) throw new UnsafePath(`not a single file name: ${JSON.stringify(s)}`);
  return name;
}

/**
 * The components of a relative path; '' and '.' are skipped, '..' and absolute paths refused. A path of raw
 * bytes (a name that is not UTF-8, as a detector may write) is split into byte components.
 */
export function components(rel: string): string[];
export function components(rel: Buffer): Buffer[];
export function components(rel: string | Buffer): Array<string | Buffer>;
export function components(rel: string | Buffer): Array<string | Buffer> {
  const text = typeof rel === 'string' ? rel : rel.toString('latin1');
  if (text.startsWith('/')) throw new UnsafePath(`${shownName(rel)} is not a relative path`);
  const texts = text.split('/');
  if (texts.includes('..')) throw new UnsafePath(`${shownName(rel)} leaves its directory ('..')`);
  // latin1 maps each byte to one character, so the byte components are cut where the text ones are.
  const parts: Array<string | Buffer> = [];
  let at = 0;
  for (const t of texts) {
    if (t !== '' && t !== '.') parts.push(typeof rel === 'string' ? t : rel.subarray(at, at + t.length));
    at += t.length + 1;
  }
  return parts;
}

function shownName(name: string | Buffer): string {
  return typeof name === 'string' ? name : name.toString('utf8');
}

/** What walk() does with each directory on the way: made says whether walk() created it; i is its depth (0 = first below). */
export type DirVisit = (dir: DirFd, st: Stats, made: boolean, i: number) => void;

/**
 * Whether walk() may follow the symbolic link `link` (its lstat) found as an entry of `dir`: only for a link
 * no user can have made or can change, say root's own in a directory only root can write (shift-dir.ts).
 * Without one, every link is refused.
 */
export type TrustLink = (dir: DirFd, link: Stats) => boolean;

/** What each open DirFd's descriptor shows as (readable); an entry lives as long as its handle is open. */
const shownByFd = new Map<number, string>();

/**
 * `e` with every `/proc/self/fd/N` of a DirFd still open in its message and path replaced by the directory as
 * a person would write it: an error such as "ENOSPC … mkdir '/proc/self/fd/35/ops'" names the storage's
 * directory instead, in logs, lastError and COPY_ERROR messages. Only while the handles are open: see readable.
 */
function readablePaths<E>(e: E): E {
  if (!(e instanceof Error)) return e;
  const swap = (text: string): string => text.replace(/\/proc\/self\/fd\/(\d+)/g, (all, fd: string) => shownByFd.get(Number(fd)) ?? all);
  e.message = swap(e.message);
  const err = e as { path?: unknown; dest?: unknown };
  if (typeof err.path === 'string') err.path = swap(err.path);
  if (typeof err.dest === 'string') err.dest = swap(err.dest);
  return e;
}

/**
 * The result of `call`, a call on at() paths; what it throws, or rejects with, names directories as a person would
 * (readablePaths), while the handles it went through are still open. Every call DirFd makes on such a path goes
 * through this, so that placing, copying and cleaning up say where, in furkad's, grimseld's and furka-agent's errors alike.
 */
function readable<T>(call: () => T): T {
  let out: T;
  try {
    out = call();
  } catch (e) {
    throw readablePaths(e);
  }
  return (out instanceof Promise ? out.catch((e: unknown) => { throw readablePaths(e); }) : out) as T;
}

/**
 * One open directory. Close it (or use DirFd.with) when done: it holds a file descriptor. A call on one of its
 * entries that it has no method for (an asynchronous one) is made on at() inside DirFd.with, for its errors.
 */
export class DirFd {
  #fd: number;

  private constructor(fd: number, readonly shown: string) {
    this.#fd = fd;
    shownByFd.set(fd, shown);
  }

  /**
   * Opens a directory the administrator configured (a target, a storage, the detector root): the path is
   * trusted, links in it included. Everything below it is reached through this handle only.
   */
  static open(dir: string): DirFd {
    checkProc();
    return new DirFd(openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY), dir);
  }

  /**
   * The directory holding `rel` below the trusted `root`, reached without following links and held (close it),
   * and the file's name in it; undefined when that directory is gone (removed by a user, say), and with it the
   * file. A missing `root` (an unmounted ramdisk) is not that: it throws, as does a link or a file on the way
   * (UnsafePath, naming it).
   */
  static openParent(root: string, rel: string): { dir: DirFd; name: string } | undefined {
    const [dirRel, name] = splitRel(rel);
    const top = DirFd.open(root);
    try {
      return { dir: top.walk(dirRel), name };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    } finally {
      top.close();
    }
  }

  /**
   * Runs `fn` with `dir` open and closes it afterwards, also when `fn` throws or rejects; what it throws names
   * directories as a person would (readable), `dir` and any other still open.
   */
  static with<T>(dir: DirFd, fn: (d: DirFd) => T): T {
    let out: T;
    try {
      out = readable(() => fn(dir));
    } catch (e) {
      dir.close();
      throw e;
    }
    if (out instanceof Promise) return out.finally(() => dir.close()) as T;
    dir.close();
    return out;
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error(`${this.shown}: directory handle used after close`);
    return this.#fd;
  }

  /**
   * The path that reaches entry `name` of this directory, and nothing else (see the top of this file). Use it
   * with synchronous calls, or keep this handle open until an asynchronous one has finished: once closed, its
   * descriptor number may be reused by another open, and the path would reach into that one.
   */
  at(name: string): string;
  at(name: Buffer): Buffer;
  at(name: string | Buffer): string | Buffer;
  at(name: string | Buffer): string | Buffer {
    entryName(name);
    return typeof name === 'string' ? `/proc/self/fd/${this.fd}/${name}` : Buffer.concat([Buffer.from(`/proc/self/fd/${this.fd}/`), name]);
  }

  /** For messages: where an entry is, as a person would write it. */
  show(name: string | Buffer = ''): string {
    const n = typeof name === 'string' ? name : name.toString('utf8');
    return n ? `${this.shown}/${n}` : this.shown;
  }

  /**
   * The subdirectory `name`, refusing a symbolic link or anything not a directory (UnsafePath). A link that
   * `trust` accepts is followed instead (see TrustLink).
   */
  child(name: string | Buffer, trust?: TrustLink): DirFd {
    return readable(() => this.#child(name, trust));
  }

  #child(name: string | Buffer, trust?: TrustLink): DirFd {
    try {
      return new DirFd(openSync(this.at(name), DIR_FLAGS), this.show(name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        // With O_DIRECTORY a link fails as ENOTDIR too: look, for the message and for `trust`.
        const st = lstatSync(this.at(name), { throwIfNoEntry: false });
        if (st?.isSymbolicLink() && trust?.(this, st)) {
          return new DirFd(openSync(this.at(name), constants.O_RDONLY | constants.O_DIRECTORY), this.show(name));
        }
        // A directory now (or nothing): something else was there a moment ago, someone is swapping it.
        const what = code === 'ELOOP' || st?.isSymbolicLink() ? 'a symbolic link'
          : st && !st.isDirectory() ? 'not a directory' : 'being swapped with a symbolic link or another file';
        throw new UnsafePath(`refusing to follow ${this.show(name)}: it is ${what}`);
      }
      throw e;
    }
  }

  /**
   * The directory `rel` below this one, reached one component at a time without following links. With
   * `make`, missing directories are created (mode 0755 less the umask) and `visit` is called for every
   * directory on the way, made or found, while it is open (to give it its owner with fchown). Intermediate
   * handles are closed; the caller closes the one returned. `trust`: see TrustLink.
   */
  walk(rel: string | Buffer, make = false, visit?: DirVisit, trust?: TrustLink): DirFd {
    let cur: DirFd = this;
    components(rel).forEach((part, i) => {
      let made = false;
      let next: DirFd;
      try {
        next = cur.child(part, trust);
      } catch (e) {
        if (!make || (e as NodeJS.ErrnoException).code !== 'ENOENT') {
          if (cur !== this) cur.close();
          throw e;
        }
        try {
          cur.mkdir(part);
          made = true;
        } catch (m) {
          if ((m as NodeJS.ErrnoException).code !== 'EEXIST') {
            if (cur !== this) cur.close();
            throw m;
          }
        }
        try {
          next = cur.child(part, trust);
        } catch (o) {
          if (cur !== this) cur.close();
          throw o;
        }
      }
      if (cur !== this) cur.close();
      cur = next;
      if (visit) {
        try {
          visit(cur, fstatSync(cur.fd), made, i);
        } catch (v) {
          cur.close();
          throw v;
        }
      }
    });
    return cur === this ? readable(() => new DirFd(openSync(`/proc/self/fd/${this.fd}`, constants.O_RDONLY | constants.O_DIRECTORY), this.shown)) : cur;
  }

  /** lstat of entry `name`; undefined when there is none. */
  lstat(name: string | Buffer): Stats | undefined {
    return readable(() => lstatSync(this.at(name), { throwIfNoEntry: false }));
  }

  /** lstat of entry `name` with nanosecond times and 64-bit inode numbers; undefined when there is none. */
  lstatBig(name: string | Buffer): BigIntStats | undefined {
    return readable(() => lstatSync(this.at(name), { bigint: true, throwIfNoEntry: false }));
  }

  /** The names in this directory (the one open, wherever it is now), as bytes: any name a writer made. */
  list(): Buffer[] {
    return readable(() => readdirSync(`/proc/self/fd/${this.fd}`, { encoding: 'buffer' }));
  }

  /** The names in this directory as strings (names that are not UTF-8 come out mangled: for our own names only). */
  names(): string[] {
    return readable(() => readdirSync(`/proc/self/fd/${this.fd}`));
  }

  /** The entries of this directory with their types, names as strings (for our own names, as names()). */
  entries(): Dirent[] {
    return readable(() => readdirSync(`/proc/self/fd/${this.fd}`, { withFileTypes: true }));
  }

  /** Opens file `name` of this directory with `flags` | O_NOFOLLOW (a link there fails with ELOOP). */
  openFile(name: string | Buffer, flags: number, mode = 0o600): number {
    return readable(() => openSync(this.at(name), flags | constants.O_NOFOLLOW, mode));
  }

  /** link(2) of `existing` (a path, or another entry's at()) as entry `name`: never over one there (EEXIST). */
  link(existing: string | Buffer, name: string | Buffer): void {
    readable(() => linkSync(existing, this.at(name)));
  }

  /** rename(2) of `from` (a path, or another entry's at()) to entry `name`: replaces what is there, never through a link. */
  rename(from: string | Buffer, name: string | Buffer): void {
    readable(() => renameSync(from, this.at(name)));
  }

  unlink(name: string | Buffer): void {
    readable(() => unlinkSync(this.at(name)));
  }

  /** A directory `name` here (mode 0755 less the umask by default). */
  mkdir(name: string | Buffer, mode = 0o755): void {
    readable(() => mkdirSync(this.at(name), { mode }));
  }

  rmdir(name: string | Buffer): void {
    readable(() => rmdirSync(this.at(name)));
  }

  /** rmdir(), unless the directory is not empty (any more), gone, or something else in its place: then false. */
  rmdirIfEmpty(name: string | Buffer): boolean {
    try {
      this.rmdir(name);
      return true;
    } catch (e) {
      if (leftAsIs(e)) return false;
      throw e;
    }
  }

  close(): void {
    if (this.#fd >= 0) {
      shownByFd.delete(this.#fd);
      closeSync(this.#fd);
    }
    this.#fd = -1;
  }
}

/** The directory part and last component of a relative path ('a/b/c.img' → ['a/b', 'c.img']). */
export function splitRel(rel: string): [string, string] {
  const parts = components(rel);
  const name = parts.pop();
  if (name === undefined) throw new UnsafePath(`${JSON.stringify(rel)} names no file`);
  return [parts.join('/'), name];
}

/** An rmdir(2) error that leaves the directory as it is, and says nothing worth telling: not empty, gone, not a directory. */
export function leftAsIs(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT' || code === 'ENOTDIR';
}

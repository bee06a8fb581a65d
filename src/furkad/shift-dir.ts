// A shift's directory below one target (F3, F4): created owned by the shift, never through a planted symlink.
import { chmod, lchown, link, lstat, mkdir, rename, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { candidateNames, NO_HARD_LINKS } from '../common/numbered-name.js';
import type { Logger } from '../common/logger.js';

export class ShiftDir {
  readonly root: string;

  /**
   * `target` is the real (unmarked) directory, `usrdir` the expanded one ('' = none); `replicatedFrom` the part of
   * the target before its './' (what grimseld does not replicate): the directories between it and the target
   * are shared by every shift too.
   */
  constructor(readonly target: string, usrdir: string, readonly uid: number, readonly gid: number, private readonly log?: Logger,
    private readonly replicatedFrom?: string) {
    this.root = path.join(target, usrdir);
  }

  /**
   * Creates the target (the administrator's) and the usrdir below it (F4). Only the usrdir's last component is
   * the shift's: the target and the usrdir's parents are shared by every shift and stay root's, without group
   * or other write, or the user of the first shift could make and delete the directories of later ones (and
   * grimseld mirrors these owners on the storages). One found owned by a user is given back to root.
   */
  async prepare(): Promise<void> {
    await mkdir(this.target, { recursive: true });
    const from = this.replicatedFrom;
    const between = from !== undefined && isBelow(this.target, from) ? path.relative(from, this.target).split('/').filter(Boolean) : [];
    for (let i = 1; i < between.length; i++) await this.#rootOwned(path.join(from!, ...between.slice(0, i)), false);
    await this.#rootOwned(this.target, false);
    const parts = path.relative(this.target, this.root).split('/').filter((p) => p !== '' && p !== '.');
    const last = parts.pop();
    if (last === undefined) return;
    await this.#ensureBelow(this.target, parts.join('/'), 'root');
    await this.#ensureBelow(path.join(this.target, ...parts), last);
  }

  /**
   * Makes sure a directory all shifts share is root's and writable by root only. lchown first: then the user
   * who owned it cannot rename it away any more (its parent is root's, or sticky), and a link swapped in
   * before is only re-owned; checked again before chmod, which follows links. The target may be the
   * administrator's link: left as it is.
   */
  async #rootOwned(dir: string, made: boolean): Promise<void> {
    const st = await lstat(dir);
    if (st.isSymbolicLink() || made || (st.uid === 0 && st.gid === 0 && (st.mode & 0o022) === 0)) return;
    this.log?.warn({ dir, uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8) },
      `${dir} is shared by every shift but was not root's alone: given back to root, without group and other write`);
    await lchown(dir, 0, 0);
    const now = await lstat(dir);
    if (!now.isDirectory() || now.uid !== 0) throw new Error(`${dir} changed while being given back to root`);
    if ((now.mode & 0o022) !== 0) await chmod(dir, now.mode & 0o7755);
  }

  /**
   * Moves a complete file from staging to `rel` below the shift's directory, creating its parents (F2, F3),
   * and returns the name it has there. A different file already under `rel` (an earlier shift's of the same
   * usrdir, a detector that restarted its numbering) is never replaced: the new one goes beside it as
   * `rel.~1~` (or the next free number, numbered-name.ts), with a warning naming both. A file there with the
   * staged one's size and mtime is the same file placed again (furkad was killed after placing it): the
   * staged copy is dropped and that name returned. link() takes a name only when it is free, atomically, and
   * never writes through a link planted under it, as rename() would.
   */
  async place(staged: string, rel: string): Promise<string> {
    await this.#ensureBelow(this.root, path.dirname(rel));
    let st: Stats | undefined; // read only when a name is taken: the usual placing is link + unlink (F9)
    for (const name of candidateNames(rel)) {
      const final = path.join(this.root, name);
      if (!(await this.#take(staged, final))) {
        const there = await lstat(final).catch(() => undefined);
        // Gone between the two calls (grimseld cleaned up an earlier shift's file): the name is free again.
        if (!there && await this.#take(staged, final)) return this.#placed(rel, name);
        if (!there) continue;
        st ??= await lstat(staged);
        if (!sameFile(there, st)) continue;
        await unlink(staged).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
        return name;
      }
      return this.#placed(rel, name);
    }
    throw new Error(`cannot place ${rel}: it and all its numbered names are taken`);
  }

  /** Says so when a file got a numbered name; returns the name. */
  #placed(rel: string, name: string): string {
    if (name !== rel) {
      this.log?.warn({ file: path.join(this.root, rel), placedAs: path.join(this.root, name) },
        `${path.join(this.root, rel)} holds another file: the new one is placed beside it as ${path.join(this.root, name)}, both kept`);
    }
    return name;
  }

  /** Gives `staged` the name `final` if it is free (true); false when something is there. */
  async #take(staged: string, final: string): Promise<boolean> {
    try {
      await link(staged, final);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST') return false;
      if (!NO_HARD_LINKS.has(code)) throw e;
      // No hard links here: check, then rename (a window of microseconds, see NO_HARD_LINKS).
      if (await lstat(final).then(() => true, () => false)) return false;
      await rename(staged, final);
      return true;
    }
    await unlink(staged);
    return true;
  }

  /**
   * Walks `rel` below `base` one component at a time, for every file: users own the usrdir and can swap
   * a directory in it for a link at any moment, so nothing is cached. A missing directory is made and
   * given to the shift with lchown; an existing one must be a real directory. (Node has no renameat, so
   * a swap between this check and the rename remains possible; the window is a few microseconds.)
   */
  async #ensureBelow(base: string, rel: string, owner: 'shift' | 'root' = 'shift'): Promise<void> {
    let dir = base;
    for (const part of rel.split('/').filter((p) => p !== '' && p !== '.')) {
      dir = path.join(dir, part);
      let st = await lstat(dir).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
      let made = false;
      if (!st) {
        try {
          await mkdir(dir, { mode: 0o755 });
          made = true;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        st = await lstat(dir);
      }
      if (!st.isDirectory()) throw new Error(`refusing to write through ${dir}: it is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`);
      if (owner === 'root') {
        await this.#rootOwned(dir, made);
        continue;
      }
      // A directory this shift made, or one of an earlier shift of the same name, belongs to the shift.
      if (made || st.uid !== this.uid || st.gid !== this.gid) await lchown(dir, this.uid, this.gid);
    }
  }
}

/** `p` is below `base` (not `base` itself). */
function isBelow(p: string, base: string): boolean {
  const rel = path.relative(base, p);
  return rel !== '' && rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel);
}

/** The same file by G3's measure: a regular file of the same size and mtime (to the millisecond). */
function sameFile(a: Stats, b: Stats): boolean {
  return a.isFile() && (a.ino === b.ino && a.dev === b.dev || a.size === b.size && Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs));
}

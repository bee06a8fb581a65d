// A shift's directory below one target (F3, F4): created owned by the shift, never through a planted symlink.
import { lchown, lstat, mkdir, rename } from 'node:fs/promises';
import * as path from 'node:path';

export class ShiftDir {
  readonly root: string;

  /** `target` is the real (unmarked) directory, `usrdir` the expanded one ('' = none). */
  constructor(readonly target: string, usrdir: string, readonly uid: number, readonly gid: number) {
    this.root = path.join(target, usrdir);
  }

  /** Creates the target (the administrator's, root-owned) and the usrdir below it, owned by the shift (F4). */
  async prepare(): Promise<void> {
    await mkdir(this.target, { recursive: true });
    await this.#ensureBelow(this.target, path.relative(this.target, this.root));
  }

  /** Moves a complete file from staging to `rel` below the shift's directory, creating its parents (F2, F3). */
  async place(staged: string, rel: string): Promise<void> {
    await this.#ensureBelow(this.root, path.dirname(rel));
    await rename(staged, path.join(this.root, rel));
  }

  /**
   * Walks `rel` below `base` one component at a time, for every file: users own the usrdir and can swap
   * a directory in it for a link at any moment, so nothing is cached. A missing directory is made and
   * given to the shift with lchown; an existing one must be a real directory. (Node has no renameat, so
   * a swap between this check and the rename remains possible; the window is a few microseconds.)
   */
  async #ensureBelow(base: string, rel: string): Promise<void> {
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
      // A directory this shift made, or one of an earlier shift of the same name, belongs to the shift.
      if (made || st.uid !== this.uid || st.gid !== this.gid) await lchown(dir, this.uid, this.gid);
    }
  }
}

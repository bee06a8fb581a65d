// A shift's directory below one target (F3, F4): created owned by the shift, never through a planted symlink.
import { lchown, lstat, mkdir, rename } from 'node:fs/promises';
import * as path from 'node:path';

export class ShiftDir {
  /** Directories checked or created in this shift: one lstat per new directory, not per file. */
  #known = new Set<string>();
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
   * Walks `rel` below `base` one component at a time. A missing directory is made and given to the shift
   * with lchown; an existing one must be a real directory: users own the usrdir and could plant a link
   * there to make root write elsewhere.
   */
  async #ensureBelow(base: string, rel: string): Promise<void> {
    let dir = base;
    for (const part of rel.split('/').filter((p) => p !== '' && p !== '.')) {
      dir = path.join(dir, part);
      if (this.#known.has(dir)) continue;
      let made = false;
      try {
        await mkdir(dir, { mode: 0o755 });
        made = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const st = await lstat(dir);
      if (!st.isDirectory()) throw new Error(`refusing to write through ${dir}: it is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`);
      // A directory this shift made, or the usrdir itself from an earlier shift of the same name, belongs to the shift.
      if (made || st.uid !== this.uid || st.gid !== this.gid) await lchown(dir, this.uid, this.gid);
      this.#known.add(dir);
    }
  }
}

// The directories on the internal storage that G5 emptied: once an ended shift's internal copies are deleted
// (their external copies made), their directories go too, else the internal disk collects the empty tree of every
// shift (a long-run tester found 566 of 720 directories there empty after 211 shift changes).
//
// Only what the shift's user owns is removed: the shift's directory (`<usrdir>`, the last component, theirs with
// preserve_uid, as furkad gives it on the ramdisk, F4) and below. Directories that are root's are shared by every
// shift (the per-detector directory, a usrdir's parents, copy-dirs.ts) and stay, as does the storage's target;
// without preserve_uid (or for a root shift) every directory is root's and none is removed. Like furkad's sweep of
// the ramdisk (furkad/shift-sweep.ts), which removes the ramdisk's: rmdir(2) removes only an empty directory,
// atomically, so a file the user (or a copy) puts there first keeps it, and its parents; every directory is reached
// from the target one component at a time without following links, and removed as an entry of its parent held
// open (common/dir-fd.ts). A user who swaps such an entry meanwhile can only have grimseld remove an empty
// directory in a directory of their own, which they could do themselves (docs/threat-model.md).
import { fstatSync } from 'node:fs';
import * as path from 'node:path';
import { DirFd, leftAsIs, UnsafePath } from '../common/dir-fd.js';

/** A directory found not empty at this many shift changes' clean-ups is let go: the user keeps something there. */
const TRIES = 3;

/** How often a noted directory was found not empty, and at which shift change's clean-up last. */
interface Tries {
  n: number;
  epoch: number;
}

export class EmptiedDirs {
  /** Directories below the target (relative) a deletion emptied, perhaps, and how often they were found not empty. */
  readonly #dirs = new Map<string, Tries | undefined>();

  /** Noted since the last remove(). */
  #fresh = false;
  /** The epoch of the last remove(). */
  #epoch: number | undefined;

  /** The copy at `rel` (below the target) was deleted: its directory may be empty now. */
  note(rel: string): void {
    const dir = path.posix.dirname(rel);
    if (dir === '.' || dir === '' || this.#dirs.has(dir)) return;
    this.#dirs.set(dir, undefined);
    this.#fresh = true;
  }

  get size(): number {
    return this.#dirs.size;
  }

  /**
   * Whether remove() has anything to try at `epoch`: a directory noted since the last, or ones kept from an earlier
   * epoch. A clean-up that waits for copies passes on every tick; it need not look at the same directories each time.
   */
  due(epoch: number): boolean {
    return this.#dirs.size > 0 && (this.#fresh || this.#epoch !== epoch);
  }

  /**
   * Removes the noted directories that are empty, and their parents that are empty then, deepest first, up to the
   * first that is root's (never `root` itself); never one that `busy` holds (the directories of copies still to
   * be made: the copier may be making them now). Synchronous, so that no copy is handed out meanwhile. Returns
   * how many went, and what could not be looked at. A directory still holding something is tried again at a
   * later shift change's clean-up (a fill guard's links there go in the background, link-dirs.ts), TRIES in all;
   * `epoch` tells them apart (the shift starts so far: a clean-up that waits for copies passes on every tick).
   */
  remove(root: string, busy: ReadonlySet<string>, epoch: number): { removed: number; errors: string[] } {
    const result = { removed: 0, errors: [] as string[] };
    if (this.#dirs.size === 0) return result;
    const top = DirFd.open(root); // a missing target (not mounted) throws: tried at the next pass
    this.#fresh = false;
    this.#epoch = epoch;
    try {
      const deepestFirst = [...this.#dirs.keys()].sort((a, b) => b.split('/').length - a.split('/').length);
      for (const dir of deepestFirst) {
        if (!this.#dirs.has(dir)) continue; // removed already, as a parent of a deeper one
        const left = this.#removeUp(top, dir, busy, result);
        if (!left) {
          this.#dirs.delete(dir);
          continue;
        }
        const tries = this.#dirs.get(dir);
        const n = tries === undefined ? 1 : tries.epoch === epoch ? tries.n : tries.n + 1;
        if (n < TRIES) this.#dirs.set(dir, { n, epoch });
        else this.#dirs.delete(dir);
      }
    } finally {
      top.close();
    }
    return result;
  }

  /**
   * Removes `dir` (below the held `top`) and then its parents while each is empty and its user's; true when `dir`
   * itself is still there and not empty (worth another try).
   */
  #removeUp(top: DirFd, dir: string, busy: ReadonlySet<string>, result: { removed: number; errors: string[] }): boolean {
    const parts = dir.split('/');
    const held: DirFd[] = [top];
    try {
      for (const part of parts) held.push(held[held.length - 1]!.child(part));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Gone, or a link or file in its place now (a user's doing): nothing of ours to remove there.
      if (code !== 'ENOENT' && !(e instanceof UnsafePath)) result.errors.push(`${path.join(top.shown, dir)}: ${(e as Error).message}`);
      for (const d of held.slice(1)) d.close();
      return false;
    }
    try {
      for (let i = parts.length; i >= 1; i--) {
        const rel = parts.slice(0, i).join('/');
        if (busy.has(rel)) return false;
        const d = held[i]!;
        if (fstatSync(d.fd).uid === 0) return false; // shared by every shift (or no owners kept): stays
        try {
          held[i - 1]!.rmdir(parts[i - 1]!);
          result.removed++;
          this.#dirs.delete(rel);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOTEMPTY' || code === 'EEXIST') return i === parts.length;
          if (!leftAsIs(e)) result.errors.push(`${d.show()}: ${(e as Error).message}`);
          return false;
        }
      }
      return false;
    } finally {
      for (const d of held.slice(1)) d.close();
    }
  }
}

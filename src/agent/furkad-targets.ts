// Directories below the root that are a furkad's targets: they hold furkad's staging directory (`.furkad-staging`),
// so what is in them is what a furkad on this host fetched and placed, never a detector's image. A host with both
// packages (a test box, or a PPU that is also a detector server) whose agent root holds furkad's target, as the
// shipped configs do (root /ramdisk, target /ramdisk/./1mf), had each delivered file announced again, fetched again
// and placed one level deeper, for ever (found by a tester, session 36). Nothing below such a directory is announced.
// Looked at once per directory (one lstat, cached until the directory goes or the tree is walked anew), and told
// by the kernel's event when furkad makes its staging directory in one already known: no system call per file. Only a
// staging directory as furkad makes it counts (isFurkadStaging), so a user cannot hide a directory from furkad so.
import type { BigIntStats } from 'node:fs';
import { STAGING_NAME } from '../common/paths.js';

/**
 * Whether `st` is a furkad's staging directory: root's (or this process's owner's, as furkad runs as the agent does)
 * and closed to group and others, as furkad keeps it (detector.ts checkStagingRoot). A user cannot make one: a
 * `.furkad-staging` a detector's user made (in the root, say) hides nothing from furkad.
 */
export function isFurkadStaging(st: BigIntStats | undefined): boolean | undefined {
  if (!st?.isDirectory()) return false;
  // Root's but open to others: furkad closes it when it prepares staging (checkStagingRoot), a change the kernel's
  // events do not tell (no ATTRIB watched). Looked at again each time, not taken for "no target" for good.
  const ours = st.uid === 0n || st.uid === BigInt(process.getuid?.() ?? 0);
  if ((st.mode & 0o077n) !== 0n) return ours ? undefined : false;
  return ours;
}

export class FurkadTargets {
  /** Directories looked at (relative to the root, as latin1 keys; '' is the root): whether each is a furkad target. */
  readonly #known = new Map<string, boolean>();

  /**
   * `holdsStaging`: whether the directory `dir` (below the root) holds a staging directory of furkad's now;
   * undefined: not yet, to be looked at again each time (not cached). `found`: told of each target the first time
   * it is found (to be said once).
   */
  constructor(private readonly holdsStaging: (dir: string) => boolean | undefined, private readonly found: (dir: string) => void) {}

  /** Whether the path `rel` (below the root, a file's or a directory's) lies in a furkad target. */
  contains(rel: Buffer | string): boolean {
    const key = typeof rel === 'string' ? rel : rel.toString('latin1');
    if (this.#is('')) return true;
    for (let slash = key.indexOf('/'); slash > 0; slash = key.indexOf('/', slash + 1)) {
      if (this.#is(key.slice(0, slash))) return true;
    }
    return false;
  }

  /** The kernel said directory `rel` came: if it is named as furkad's staging, its parent is looked at again. */
  dirNew(rel: Buffer): void {
    const key = rel.toString('latin1');
    const slash = key.lastIndexOf('/');
    if (key.slice(slash + 1) === STAGING_NAME) this.#known.delete(slash < 0 ? '' : key.slice(0, slash));
  }

  /** Directory `rel` went (or a directory was moved onto it): it and what was below it are looked at anew. */
  dirGone(rel: Buffer): void {
    const key = rel.toString('latin1');
    const slash = key.lastIndexOf('/');
    // furkad's staging gone: its parent is looked at again (a target no more, perhaps).
    if (key.slice(slash + 1) === STAGING_NAME) this.#known.delete(slash < 0 ? '' : key.slice(0, slash));
    const prefix = `${key}/`;
    for (const dir of [...this.#known.keys()]) if (dir === key || dir.startsWith(prefix)) this.#known.delete(dir);
  }

  /** The tree is walked anew (a rescan): every directory is looked at again. */
  clear(): void {
    this.#known.clear();
  }

  #is(dir: string): boolean {
    const known = this.#known.get(dir);
    if (known !== undefined) return known;
    let holds: boolean | undefined;
    try {
      holds = this.holdsStaging(dir);
    } catch { /* not looked at: not taken for a target, asked again next time */
      return false;
    }
    if (holds === undefined) return false;
    this.#set(dir, holds);
    return holds;
  }

  #set(dir: string, holds: boolean): void {
    const was = this.#known.get(dir);
    this.#known.set(dir, holds);
    if (holds && was !== true) this.found(dir);
  }
}

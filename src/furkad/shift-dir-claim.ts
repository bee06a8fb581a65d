// Whether an existing directory may become a shift's own (F4): not one furkad made on the way to a target.
import type { Stats } from 'node:fs';
import { STAGING_NAME } from '../common/paths.js';

/**
 * What in an existing shift directory (its own stat `st`, its entries `names`, each looked at with `lstat`)
 * makes it no user's to get, for shift `uid` to rename what is in it: furkad's staging (it is or was a
 * detector's target: `.../1mf/960_960` served as one, and is now shift 960:960's directory), or, the directory
 * being root's, anything in it that is not the shift's (furkad made it on the way to a target an operator named
 * at or below a shift's directory not made yet, `.../1mf/53403_100/run1`: another shift's directories, its
 * files and staging are there; found by hostile testers). Undefined if none. An empty directory of root's
 * (made, and a stop before it was given), one holding only the shift's own entries, and a user's are given.
 */
export function claimProblem(st: Stats, uid: number, names: string[], lstat: (name: string) => Stats | undefined): string | undefined {
  if (lstat(STAGING_NAME)?.uid === 0) return `holds furkad's ${STAGING_NAME}: it is (or was) a detector's target`;
  if (st.uid !== 0) return undefined;
  for (const n of names) {
    const s = lstat(n);
    if (s === undefined || s.uid === uid) continue;
    return `is root's and holds '${n}' of ${s.uid === 0 ? 'root' : `uid ${s.uid}`}, not of this shift: furkad made it on the way to a detector's target`;
  }
  return undefined;
}

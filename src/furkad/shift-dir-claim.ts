// Whether an existing directory may become a shift's own (F4): not one furkad made on the way to a target.
import type { Stats } from 'node:fs';
import { STAGING_NAME } from '../common/paths.js';

/**
 * What in an existing shift directory (its own stat `st`, its entries `names`, each looked at with `lstat`)
 * makes it no user's to get, for them to rename what is in it: furkad's staging (it is or was a detector's
 * target: `.../1mf/960_960` served as one, and is now shift 960:960's directory), or, the directory being
 * root's, a directory of root's in it (furkad made it on the way to a target an operator named below a shift's
 * directory not made yet, `.../1mf/500_501/run1`: another shift's files and staging are there; found by a
 * hostile tester). Undefined if none. An empty directory of root's (made, not yet given: a stop in between)
 * and a user's own are given.
 */
export function claimProblem(st: Stats, names: string[], lstat: (name: string) => Stats | undefined): string | undefined {
  if (lstat(STAGING_NAME)?.uid === 0) return `holds furkad's ${STAGING_NAME}: it is (or was) a detector's target`;
  if (st.uid !== 0) return undefined;
  const roots = names.find((n) => {
    const s = lstat(n);
    return s !== undefined && s.uid === 0 && s.isDirectory();
  });
  return roots === undefined ? undefined : `is root's and holds root's directory '${roots}': furkad made it on the way to a detector's target`;
}

// The directories a file goes into when a name on its way is taken by a file (F2, G3): numbered as files are.
//
// A detector may write a file `Y` and later, in the same shift, a directory `Y/` holding more files (or the other
// way round, which numbered-name.ts covers already: the file is placed beside the directory as `Y.~1~`). The file
// `Y` is a delivered file, never removed nor replaced, so `Y/g.img` cannot go where its name says; waiting does
// not help either: on a storage the file `Y` stays for good. It goes into the first of `Y`, `Y.~1~`, `Y.~2~` …
// that is a directory or free, on the ramdisk and on every storage alike, so each makes the same choice from
// what it holds, and every later file of `Y/` joins it there. A symbolic link on the way is still refused
// (dir-fd.ts): that is a user's doing to be said, not a name to go around.
import { fstatSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { components, DirFd, UnsafePath, type DirVisit } from './dir-fd.js';
import { candidateNames } from './numbered-name.js';

/** A directory reached by walkNumbered and the path it has below the directory walked from (numbered where it had to be). */
export interface NumberedDir {
  dir: DirFd;
  rel: string;
}

/**
 * Directory `rel` below `top`, each component the first of its name and its numbered names that is a directory
 * or (with `make`) free, made there; without `make` a missing one throws ENOENT, as DirFd.walk does. `visit` is
 * called for each directory on the way, as DirFd.walk calls it. The caller closes the directory returned; it
 * is `top` reopened when `rel` is empty.
 */
export function walkNumbered(top: DirFd, rel: string, make: boolean, visit?: DirVisit): NumberedDir {
  const taken: string[] = [];
  let cur = top;
  try {
    components(rel).forEach((part, i) => {
      const { dir, name, made } = enter(cur, part, make);
      if (cur !== top) cur.close();
      cur = dir;
      taken.push(name);
      visit?.(cur, fstatSync(cur.fd), made, i);
    });
  } catch (e) {
    if (cur !== top) cur.close();
    throw e;
  }
  return { dir: cur === top ? top.walk('') : cur, rel: taken.join('/') };
}

/** Whether `st` is what a directory's name may be numbered around: anything there but a directory or a symbolic link. */
function standsInTheWay(st: Stats | undefined): boolean {
  return st !== undefined && !st.isDirectory() && !st.isSymbolicLink();
}

/** The subdirectory of `dir` for component `part`: `part` or its first numbered name that is a directory or free. */
function enter(dir: DirFd, part: string, make: boolean): { dir: DirFd; name: string; made: boolean } {
  for (const name of candidateNames(part)) {
    // Twice at most: a name found free and then taken by someone else's mkdir (a directory: entered) or file (next).
    for (let tries = 0; tries < 2; tries++) {
      const st = dir.lstat(name);
      if (standsInTheWay(st)) break;
      if (st === undefined) {
        if (!make) throw Object.assign(new Error(`${dir.show(name)} does not exist`), { code: 'ENOENT' });
        try {
          dir.mkdir(name);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
          throw e;
        }
        return { dir: dir.child(name), name, made: true };
      }
      try {
        return { dir: dir.child(name), name, made: false };
      } catch (e) {
        // Replaced meanwhile by a file: looked at again; by a link: refused.
        if (!(e instanceof UnsafePath) || !standsInTheWay(dir.lstat(name))) throw e;
        break;
      }
    }
  }
  throw new UnsafePath(`${dir.show(part)} and all its numbered names are taken by files: no directory can be made for it`);
}

/**
 * Of a path `wanted` placed as `placed`, the directory on the way (as far as `wanted` names it) whose name a file
 * held, so that `placed` went into a numbered one: `a/Y` for `a/Y/g.img` placed as `a/Y.~1~/g.img`. Undefined
 * when the directories are the same (the file's own name numbered, or none).
 */
export function takenDirOf(wanted: string, placed: string): string | undefined {
  const [a, b] = [path.dirname(wanted).split('/'), path.dirname(placed).split('/')];
  const i = a.findIndex((part, j) => part !== b[j]);
  return i < 0 ? undefined : a.slice(0, i + 1).join('/');
}

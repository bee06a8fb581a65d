// The names a file gets when its own name is taken by a different file (F2, G3): never over the other
// one, but beside it as `NAME.~1~`, `NAME.~2~`, … Pure path arithmetic, shared by furkad and grimseld.
//
// Why GNU's numbered-backup form (`cp --backup=numbered`, `mv -b`) and not a number before the extension
// (`x_00000_1.img`): processing tools find an image series by its template (XDS `x_?????.img`, DIALS and
// viewers by extension), so a name that still ends in `.img`/`.cbf` could be taken as a frame of that
// series, or of another; `x_00000.img.~1~` ends in no image extension, so no template or `*.cbf` glob
// picks it up by mistake, administrators know the form, and renaming it back is stripping the suffix.

import { fitName } from './name-max.js';

/** More numbered names than this for one name is not a collision but something broken: refuse. */
export const MAX_NUMBERED = 9999;

const NUMBERED = /\.~([1-9][0-9]*)~$/;

/**
 * `file` (a name, or a path: its last component) with the number `n` (1, 2, …): `x.img` → `x.img.~n~`. A
 * numbered `file` is numbered from its stem. A name that would pass NAME_MAX so is cut to fit (at a character
 * boundary) and followed by `~` and 8 hex digits of its hash: two long names with the same start never share
 * a numbered name (a file found there is taken for this one by its size and mtime where no checksum is known).
 */
export function numberedName(file: string, n: number): string {
  const stem = file.replace(NUMBERED, '');
  const suffix = `.~${n}~`;
  const slash = stem.lastIndexOf('/');
  const base = stem.slice(slash + 1);
  return `${stem.slice(0, slash + 1)}${fitName(base, suffix.length)}${suffix}`;
}

/**
 * The names to try for `file`, in order: `file` itself, then `file.~1~`, `file.~2~` … up to MAX_NUMBERED.
 * A name that is already numbered (`x.img.~1~`, itself placed beside another) goes on from its stem
 * (`x.img.~2~`, not `x.img.~1~.~1~`).
 */
export function* candidateNames(file: string): Generator<string> {
  yield file;
  for (let n = 1; n <= MAX_NUMBERED; n++) {
    const name = numberedName(file, n);
    if (name !== file) yield name;
  }
}

/** Whether `name` is a numbered name (as made by numberedName). */
export function isNumberedName(name: string): boolean {
  return NUMBERED.test(name);
}

/** Whether any component of path `p` is a numbered name: the file's own, or a directory's (numbered-dirs.ts). */
export function hasNumberedPart(p: string): boolean {
  return p.split('/').some(isNumberedName);
}

/**
 * link(2) errors of file systems without hard links (vfat, exFAT, some network file systems): there a name
 * is taken by checking it is free, then renaming, which leaves a window of microseconds between the two.
 */
export const NO_HARD_LINKS: ReadonlySet<string> = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

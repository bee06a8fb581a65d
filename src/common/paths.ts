// The './' marker (F7, G4) and usrdir templating (F4): pure path arithmetic, no I/O.
import * as path from 'node:path';

/** furkad's own directory below each detector target (staging, files set aside): never swept, never a delivered file's. */
export const STAGING_NAME = '.furkad-staging';

/** A file path split at its './' marker: `root` is not replicated, `rel` is. */
export interface MarkedPath {
  root: string;
  rel: string;
}

const MARKER = '/./';

/** Makes sure a target carries a marker; without one, the marker goes at its end (F7). */
export function markTarget(target: string): string {
  if (target.endsWith('/.')) return `${target}/`;
  if (target.includes(MARKER)) return target;
  return `${target.replace(/\/+$/, '')}${MARKER}`;
}

/** The directory a marked target really names (the marker does not change where furkad writes). */
export function unmark(p: string): string {
  return path.normalize(p.replace(MARKER, '/'));
}

/**
 * Splits an absolute path at its first './' marker. Without a marker only the file name is
 * replicated, as if the marker stood just before it.
 */
export function splitMarked(p: string): MarkedPath {
  const at = p.indexOf(MARKER);
  if (at < 0) return { root: path.dirname(p), rel: path.basename(p) };
  return { root: path.normalize(p.slice(0, at) || '/'), rel: path.normalize(p.slice(at + MARKER.length)) };
}

/** Where a marked source path is replicated below a storage target (G4). */
export function replicatedPath(storageTarget: string, rel: string): string {
  return path.join(storageTarget, rel);
}

/** The marked path of a file delivered below a marked target and usrdir (what grimseld replicates). */
export function deliveredPath(markedTarget: string, usrdir: string, rel: string): string {
  const t = markTarget(markedTarget);
  const at = t.indexOf(MARKER);
  const root = path.posix.normalize(t.slice(0, at) || '/').replace(/\/+$/, '');
  return `${root}${MARKER}${path.posix.join(t.slice(at + MARKER.length), usrdir, rel)}`;
}

/** A relative path is safe when it stays below its base: no '..', not absolute, not empty. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Whether a path (as text) holds a control character (a newline, a tab, …): grimseld takes no such name (its
 * FIFO is line-based, and logs and messages would be forged by one), so neither transport delivers one.
 */
export function hasControl(p: string): boolean {
  return CONTROL.test(p);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of `bytes` (a name, a path, a line), or undefined when they are not valid UTF-8. */
export function utf8Text(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

export function isSafeRelative(rel: string): boolean {
  if (rel === '' || path.isAbsolute(rel)) return false;
  return !path.normalize(rel).split('/').includes('..');
}

/** Expands `$UID` / `$GID` (also `${UID}` / `${GID}`) in a usrdir template (F4); '' means none. */
export function expandUsrdir(template: string, uid: number, gid: number): string {
  return template
    .replace(/\$\{UID\}|\$UID/g, String(uid))
    .replace(/\$\{GID\}|\$GID/g, String(gid));
}

/** Whether `inner` is `outer` or lies below it, as paths (no file system access: ppuctl checks files for other machines too). */
/** Where the shipped units (PrivateTmp=yes, ProtectHome=yes) give a daemon a directory of its own, or none. */
const HIDDEN_BY_UNITS = ['/tmp', '/var/tmp', '/home', '/root', '/run/user'];

/** Which of those `p` (absolute) lies at or below, if any: there a daemon does not see what an administrator's shell does. */
export function hiddenByUnits(p: string): string | undefined {
  return HIDDEN_BY_UNITS.find((d) => atOrBelow(p, d));
}

export function atOrBelow(inner: string, outer: string): boolean {
  const rel = path.posix.relative(path.posix.normalize(outer), path.posix.normalize(inner));
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
}

/**
 * With usrdir empty, a shift's directory is its target itself: a target at or below another detector's would
 * have files of one shift placed through the other's directory, its staging included (docs/threat-model.md).
 * The pairs of `targets` (id, marked or not) of which one is at or below the other.
 */
export function nestedTargets(targets: Array<[string, string]>): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  targets.forEach(([a, ta], i) => {
    for (const [b, tb] of targets.slice(i + 1)) if (atOrBelow(unmark(ta), unmark(tb)) || atOrBelow(unmark(tb), unmark(ta))) pairs.push([a, b]);
  });
  return pairs;
}

/** The directories (relative, as `rels` are) holding `rels`, and their parents: each once. */
export function dirsOf(rels: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const rel of rels) {
    for (let d = path.posix.dirname(rel); d !== '.' && d !== '/' && d !== '' && !dirs.has(d); d = path.posix.dirname(d)) dirs.add(d);
  }
  return dirs;
}

// A user shift as furkad serves it: who owns the files and which detectors go where (F4, F6, F7).
import type { DetectorConfig, FurkadConfig } from './config.js';
import { lstatSync, readdirSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { claimProblem } from './shift-dir-claim.js';
import { expandUsrdir, hasControl, isSafeRelative, markTarget, nestedTargets, splitMarked, STAGING_NAME, unmark } from '../common/paths.js';
import { NAME_MAX } from '../common/name-max.js';
import { sourcePatternProblem } from './rsync.js';

export interface Assignment {
  id: string;
  config: DetectorConfig;
  /** Directory below the rsync module. */
  source: string;
  /** Target with its './' marker. */
  target: string;
}

export interface Shift {
  /** Shift start, µs since the epoch: the shift's identity on the bus and in grimseld. */
  usertime: bigint;
  uid: number;
  gid: number;
  /** Expanded usrdir ('' = none). */
  usrdir: string;
  detectors: Assignment[];
  /** The StartShift request it was planned from ([] = every configured detector as configured): kept to resume it. */
  requested?: Array<[string, string, string]>;
}

/** A refused shift request; `reason` selects the D-Bus error name. */
export class ShiftRequestError extends Error {
  constructor(readonly reason: 'InvalidArgs' | 'UnknownDetector' | 'NotAllowed' | 'NotFound', message: string) {
    super(message);
  }
}

/** Highest uid and gid of a shift, as in the config schema: 2^32-1 is chown's "unchanged". */
export const MAX_ID = 4294967294;

/** Shift ids: µs since the epoch, strictly increasing so two shifts never share an id, nor sort before an earlier one. */
export class ShiftIds {
  #last = 0n;

  next(): bigint {
    const now = BigInt(Date.now()) * 1000n; // wall clock: the id is the shift's start time (usertime)
    this.#last = now > this.#last ? now : this.#last + 1n;
    return this.#last;
  }

  /** Ids from now on come after `usertime` (the last shift of an earlier furkad, shift-floor.ts). */
  after(usertime: bigint): void {
    if (usertime > this.#last) this.#last = usertime;
  }
}

/** The process's shift ids. */
export const shiftIds = new ShiftIds();

/**
 * Builds a shift from a StartShift request. An empty list means every configured detector
 * with its defaults; otherwise exactly the listed detectors are served, empty fields
 * falling back to the configured ones.
 */
export function planShift(
  config: FurkadConfig,
  uid: number,
  gid: number,
  requested: ReadonlyArray<readonly [string, string, string]> = [],
  usertimes: ShiftIds = shiftIds,
): Shift {
  const ids = Object.keys(config.detector);
  // The config schema's bounds: 4294967295 is (uid_t)-1, which chown(2) takes as "leave unchanged", so such a
  // shift would own nothing and its files would stay root's whatever allow_root_shift says.
  for (const [what, n] of [['uid', uid], ['gid', gid]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > MAX_ID) {
      throw new ShiftRequestError('InvalidArgs', `${what} ${n} is out of range (0 to ${MAX_ID}; ${MAX_ID + 1} means "no owner" to chown)`);
    }
  }
  if ((uid === 0 || gid === 0) && !config.allow_root_shift) {
    throw new ShiftRequestError('NotAllowed', `uid ${uid} gid ${gid}: a shift owned by root is refused (allow_root_shift = no)`);
  }
  const wanted = requested.length > 0 ? requested : ids.map((id) => [id, '', ''] as const);
  const seen = new Set<string>();
  const detectors = wanted.map(([id, source, target]): Assignment => {
    const cfg = config.detector[id];
    if (!cfg) throw new ShiftRequestError('UnknownDetector', `unknown detector '${id}', configured: ${ids.join(', ')}`);
    if (seen.has(id)) throw new ShiftRequestError('InvalidArgs', `detector '${id}' is listed twice`);
    seen.add(id);
    for (const [what, p] of [['target', target], ['source', source]] as const) {
      // grimseld takes no path with a control character: files placed there would leave the detector and never be copied.
      if (hasControl(p)) throw new ShiftRequestError('InvalidArgs', `${what} of detector '${id}' holds a control character: ${JSON.stringify(p)}`);
      const long = tooLong(p);
      if (long) throw new ShiftRequestError('InvalidArgs', `${what} of detector '${id}' ${long}`);
    }
    if (target && !target.startsWith('/')) {
      throw new ShiftRequestError('InvalidArgs', `target of detector '${id}' must be an absolute path, got '${target}'`);
    }
    if (target && target.split('/').includes('..')) {
      throw new ShiftRequestError('InvalidArgs', `target of detector '${id}' must not contain '..', got '${target}'`);
    }
    if (target && !isDirectory(existingPart(target))) {
      throw new ShiftRequestError('NotFound', `target of detector '${id}': ${existingPart(target)} is not an existing directory`);
    }
    if (target) checkConfined(id, target, cfg.target);
    if (source && source.split('/').includes('..')) {
      throw new ShiftRequestError('InvalidArgs', `source of detector '${id}' must not contain '..', got '${source}'`);
    }
    const pattern = source && cfg.transport === 'rsync' ? sourcePatternProblem(source) : undefined;
    if (pattern) throw new ShiftRequestError('InvalidArgs', `source of detector '${id}': ${pattern}`);
    return { id, config: cfg, source: source || cfg.source, target: markTarget(target || cfg.target) };
  });
  const usrdir = expandUsrdir(config.usrdir, uid, gid);
  if (usrdir !== '' && !isSafeRelative(usrdir)) {
    throw new ShiftRequestError('InvalidArgs', `usrdir '${config.usrdir}' expands to '${usrdir}', which leaves the target`);
  }
  for (const d of usrdir === '' ? [] : detectors) {
    // A shift's directory that is (or was) a target itself, or lies on the way to one (claimProblem): it would be
    // given to the user, with furkad's staging and other shifts' directories in it, for them to rename.
    const dir = path.join(unmark(d.target), usrdir);
    const st = lstatSync(dir, { throwIfNoEntry: false });
    const why = st?.isDirectory() ? claimProblem(st, uid, readdirOrNone(dir), (n) => lstatSync(path.join(dir, n), { throwIfNoEntry: false })) : undefined;
    if (why !== undefined) {
      throw new ShiftRequestError('NotAllowed', `detector '${d.id}': the shift's directory ${dir} ${why}, and is not given to a user; choose another target`);
    }
  }
  if (usrdir === '') {
    // Against the targets of this shift and those of the configured detectors it leaves out (their staging stays).
    const served = new Set(detectors.map((d) => d.id));
    const nested = nestedTargets([...detectors.map((d): [string, string] => [d.id, d.target]),
      ...ids.filter((id) => !served.has(id)).map((id): [string, string] => [id, config.detector[id]!.target])]);
    const [a, b] = nested[0] ?? [];
    if (a !== undefined && b !== undefined) {
      throw new ShiftRequestError('NotAllowed', `targets of detectors '${a}' and '${b}' lie one in the other; with usrdir empty each ` +
        "shift's files go straight into its target, so one detector's would be placed through the other's directory: choose targets side by side");
    }
  }
  return { usertime: usertimes.next(), uid, gid, usrdir, detectors, requested: requested.map(([id, source, target]) => [id, source, target]) };
}

/**
 * Longest target or source taken, in bytes: the files below it need room within PATH_MAX (4096). A longer one
 * would have furkad make its thousands of directories, and the detector would then retry "cannot create" until
 * the next shift, its files held on the detector.
 */
const MAX_PATH_BYTES = 1024;

/** Why `p` is too long for a target or source; undefined when it is not. */
function tooLong(p: string): string | undefined {
  const bytes = Buffer.byteLength(p);
  if (bytes > MAX_PATH_BYTES) return `is ${bytes} bytes long, at most ${MAX_PATH_BYTES} (the files below it need room within PATH_MAX, 4096)`;
  const name = p.split('/').find((n) => Buffer.byteLength(n) > NAME_MAX);
  return name === undefined ? undefined : `has a name of ${Buffer.byteLength(name)} bytes, at most ${NAME_MAX}: '${name.slice(0, 32)}…'`;
}

/**
 * What must already exist of a requested target: the part before its './', or its parent without one.
 * furkad creates the rest; a typo in the existing part (/ramdsik) must not create a tree somewhere.
 */
export function existingPart(target: string): string {
  if (target.includes('/./') || target.endsWith('/.')) return splitMarked(markTarget(target)).root;
  return path.dirname(target.replace(/\/+$/, '') || '/');
}

/**
 * Where an operator may point a detector (S2, README): at or below the directory its configured target is
 * replicated from, the part before its './' (without one, the configured target's parent, unless that is '/').
 * furkad runs as root and creates the missing part of a target, so a target anywhere would let an operator
 * make root create directories anywhere (/etc). Compared as real paths: a link on the way is followed here,
 * as mkdir would follow it.
 */
export function confinement(configuredTarget: string): string {
  if (configuredTarget.includes('/./') || configuredTarget.endsWith('/.')) return splitMarked(markTarget(configuredTarget)).root;
  const t = path.normalize(configuredTarget).replace(/\/+$/, '') || '/';
  const parent = path.dirname(t);
  return parent === '/' ? t : parent;
}

function checkConfined(id: string, target: string, configuredTarget: string): void {
  const allowed = confinement(configuredTarget);
  const wanted = unmark(markTarget(target)).replace(/\/+$/, '') || '/';
  const real = (p: string): string => { try { return realpathSync.native(p); } catch { return path.normalize(p); } };
  // The part that exists is resolved (a link in it counts where it leads); the rest is created below it.
  const existing = existingPart(target);
  const resolved = path.join(real(existing), path.relative(existing, wanted));
  const base = real(allowed);
  // Confined to '/' is not confined: root would create the operator's directories and give the shift's user
  // files anywhere (/etc/profile.d). The config check refuses such a target, furkad's start one that is a link
  // to '/'; a link made since is caught here.
  if (base === '/') {
    throw new ShiftRequestError('NotAllowed', `target of detector '${id}': '${target}' refused: its configured target ` +
      `'${configuredTarget}' is replicated from ${allowed === '/' ? '/' : `${allowed}, which leads to /`}, so a StartShift target ` +
      `would not be confined at all; leave the target empty, or have the administrator fix [detector.${id}] target`);
  }
  if (!isWithin(wanted, allowed) || !isWithin(resolved, base)) {
    throw new ShiftRequestError('NotAllowed', `target of detector '${id}': '${target}' is outside ${allowed}, ` +
      `where its configured target '${configuredTarget}' is replicated from; a StartShift target must lie at or below it`);
  }
  checkShared(id, target, base, resolved);
}

/**
 * A requested target's directories, those that exist from the allowed base down (the base itself when the
 * target is the base), must be ones furkad may keep as shared directories: root's and writable by no one else
 * (docs/threat-model.md). furkad gives a shared directory it finds otherwise back to root, 0755; done to a
 * directory an operator named, that would take a user's directory (another shift's usrdir) from its owner, or
 * make the ramdisk's mount point (1777) 0755 under every user. And never below furkad's own staging
 * directory, whose content furkad removes when a detector starts: a shift's files there would be deleted
 * before any copy of them was made.
 */
function checkShared(id: string, target: string, base: string, resolved: string): void {
  const parts = path.relative(base, resolved).split('/').filter((p) => p !== '');
  if (parts.includes(STAGING_NAME)) {
    throw new ShiftRequestError('NotAllowed', `target of detector '${id}': '${target}' lies in furkad's staging directory ${STAGING_NAME}, ` +
      'whose content furkad removes; choose a target outside it');
  }
  const dirs = parts.length === 0 ? [base] : parts.map((_, i) => path.join(base, ...parts.slice(0, i + 1)));
  for (const dir of dirs) {
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (!st) break; // furkad makes the rest, root's
    if (st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0) continue;
    const what = !st.isDirectory() ? 'is not a directory' : st.uid !== 0 ? `is owned by uid ${st.uid}`
      : `is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`;
    throw new ShiftRequestError('NotAllowed', `target of detector '${id}': '${target}': ${dir} ${what}; the directories of a target are ` +
      'shared by every shift and kept root\'s, writable by root alone, and furkad does not take one from its owner ' +
      'nor change one an operator named; choose a target below it, or outside users\' directories');
  }
}

/** `p` is `base` or below it (both absolute and normalised). */
function isWithin(p: string, base: string): boolean {
  const rel = path.relative(base, p);
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel));
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The names in `dir`; none if it went meanwhile (ShiftDir looks again when it opens it). */
function readdirOrNone(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

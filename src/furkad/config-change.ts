// What a furkad started with a changed furkad.conf finds of detectors it no longer serves as they were (renamed,
// target or transport changed, section replaced or removed): files owed to ended shifts, files set aside for them,
// files taken off the detector and left in staging. Each goes to the detector that now serves the same detector
// server or target, or is named in the log and in the Detectors status: never silently stranded, never placed in
// another shift than its own (A5, F2, F6). Runs once at start, before any transport reads its state.
import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync } from 'node:fs';
import * as path from 'node:path';
import { markTarget, STAGING_NAME, unmark } from '../common/paths.js';
import type { Logger } from '../common/logger.js';
import type { DetectorConfig } from './config.js';
import { originOf, sameAs, type DetectorPlace, type DetectorPlaces } from './detector-places.js';
import { removeStateFile } from './json-state.js';
import { inheritOwedFile, readOwedFile, rsyncOwedFile, rsyncOwedId } from './rsync-owed.js';
import type { AgentPlaced } from './agent-placed.js';
import { filesBelow } from './files-below.js';
import { settlingDir } from './rsync-settling.js';

/** What to do, said with every file furkad cannot take after such a change. */
export const CHANGE_ADVICE = 'rename a detector, or change its target or transport, only when ppuctl status shows nothing owed or held for it ' +
  '(README, "Changing detectors in furkad.conf"); to have furkad take these, restore its old section in furkad.conf and restart furkad';

/** Where stranded staging is moved when a detector now configured would clear that staging directory (an agent's). */
const STRANDED_NAME = '.stranded';

/** What a loop offers config-change: take up set-aside files, carry a note for its status. */
export interface ChangeLoop {
  readonly id: string;
  takeUp(p: DetectorPlace): void;
  takeStaged(dir: string, from: string): void;
  strand(note: string): void;
}

/**
 * Owed state of detectors furkad.conf no longer serves with the same transport: given to the one detector that
 * now serves the same detector server (rename), else said as an error naming the file, the count and the shifts.
 */
export function takeUpOwed(stateDir: string, detectors: Record<string, DetectorConfig>, places: DetectorPlaces, agentPlaced: AgentPlaced, log: Logger): void {
  const heirOf = (id: string, transport: 'rsync' | 'agent', origin: string | undefined): string | undefined => {
    if (origin === undefined) return undefined;
    const heirs = Object.entries(detectors).filter(([, d]) => d.transport === transport && originOf(d) === origin).map(([h]) => h);
    return heirs.length === 1 && heirs[0] !== id ? heirs[0] : undefined;
  };
  const originWas = (id: string, transport: 'rsync' | 'agent'): string | undefined => {
    const origins = new Set(places.all.filter((p) => p.id === id && p.transport === transport).map((p) => p.origin));
    return origins.size === 1 ? [...origins][0] : undefined;
  };
  for (const name of readdirSync(stateDir)) {
    const id = rsyncOwedId(name);
    if (id === undefined || detectors[id]?.transport === 'rsync') continue;
    const file = path.join(stateDir, name);
    try {
      const { owed, shifts } = readOwedFile(file);
      if (owed.length === 0) {
        removeStateFile(file);
        continue;
      }
      const heir = heirOf(id, 'rsync', originWas(id, 'rsync'));
      if (heir !== undefined) {
        const n = inheritOwedFile(file, rsyncOwedFile(stateDir, heir), heir);
        log.warn({ detector: heir, was: id, files: n }, `files owed to ended shifts by detector ${id}, no longer in furkad.conf, are detector ${heir}'s ` +
          "(the same rsync daemon and module): they stay those shifts', set aside for them when taken");
        continue;
      }
      log.error({ detector: id, file, files: owed.length, shifts: shifts.map((s) => `${s.uid}:${s.gid} (usertime ${s.usertime})`) },
        `${owed.length} ${owed.length === 1 ? 'file' : 'files'} on rsync detector ${id}, owed to ended shifts, cannot be taken for them: furkad.conf ` +
        `${detectors[id] ? 'changed its transport' : 'no longer has it (renamed or removed), and no other detector serves its rsync daemon and module'}; ` +
        `a detector serving them now takes them for its current shift; ${CHANGE_ADVICE}`);
    } catch (e) {
      log.error({ detector: id, file, err: (e as Error).message }, `cannot read the files owed to ended shifts by detector ${id}, no longer in furkad.conf as it was; ${CHANGE_ADVICE}`);
    }
  }
  for (const id of agentPlaced.detectors()) {
    if (detectors[id]?.transport === 'agent') continue;
    const heir = heirOf(id, 'agent', originWas(id, 'agent'));
    if (heir !== undefined) {
      agentPlaced.rename(id, heir);
      log.warn({ detector: heir, was: id }, `what detector ${id}, no longer in furkad.conf, had placed, set aside or owed to ended shifts is detector ${heir}'s ` +
        '(the same agent): files owed stay those shifts\'');
      continue;
    }
    const k = agentPlaced.kept(id);
    if (k.owed === 0 && k.open === 0) continue;
    log.error({ detector: id, file: agentPlaced.file, owed: k.owed, unacknowledged: k.open, shifts: k.shifts.map((s) => `${s.uid}:${s.gid} (usertime ${s.usertime})`) },
      `agent detector ${id} is no longer in furkad.conf as it was (${detectors[id] ? 'its transport changed' : 'renamed or removed, and no other detector serves its agent'}): ` +
      `${k.owed} ${k.owed === 1 ? 'file' : 'files'} owed to ended shifts cannot be taken for them (a detector serving them now takes them for its current shift), ` +
      `${k.open} placed ${k.open === 1 ? 'file is' : 'files are'} never acknowledged (they stay on the detector); ${CHANGE_ADVICE}`);
  }
}

/**
 * Set-aside and staged files at places (detector-places.ts) furkad.conf no longer serves as they were. Set-aside
 * files carry their shift.json: a loop takes them up for that shift whatever the configuration (the one with the
 * same target, else the same id, else the first). Staged files of an rsync detector (taken off it, their source
 * removed) move to the staging of the rsync detector now configured with the same target, placed by its next run
 * as any staged leftovers are (F6); without one they are said in the log and the Detectors status, and moved out
 * of the way of an agent detector that would clear that staging. An agent's staging holds nothing the agent does
 * not still have: cleared, as the agent transport clears its own.
 */
export async function takeUpPlaces(detectors: Record<string, DetectorConfig>, places: DetectorPlaces, loops: readonly ChangeLoop[], log: Logger): Promise<void> {
  if (loops.length === 0) return;
  const targetOf = (id: string): string | undefined => detectors[id] && unmark(markTarget(detectors[id]!.target));
  for (const p of places.earlier(detectors)) {
    const target = unmark(p.target);
    const top = path.join(target, STAGING_NAME);
    const held = namesIn(path.join(top, '.held')).filter((n) => n.endsWith(`-${p.id}`));
    const staging = path.join(top, p.id);
    const staged = await filesBelow(staging);
    const ownedNow = detectors[p.id] !== undefined && targetOf(p.id) === target;
    // Copies a first run made of files still settling (rsync-settling.ts) are copies only, their sources still on
    // the detector, which the detector serving it now copies again: kept, they took room on the PPU ramdisk until
    // this place was served again (found by tester h8). Those also in staging are complete there (a second link).
    const settling = settlingDir(staging);
    if (!ownedNow && p.transport === 'rsync') {
      const copies = await filesBelow(settling);
      rmSync(settling, { recursive: true, force: true });
      if (copies.length > 0) {
        log.info({ detector: p.id, dir: settling, files: copies.length, e_g: copies.slice(0, 3) },
          'copies of files still settling for a detector no longer in furkad.conf as it was dropped: their sources stay on the detector, copied again by a detector that serves it');
      }
    }
    if (held.length === 0 && staged.length === 0) {
      // Empty directories only: nothing to take, and no detector's staging now.
      if (!ownedNow) rmSync(staging, { recursive: true, force: true });
      places.forget(p);
      continue;
    }
    const sameTarget = loops.filter((l) => targetOf(l.id) === target);
    const taker = sameTarget.find((l) => detectors[l.id]!.transport === p.transport) ?? sameTarget[0] ?? loops.find((l) => l.id === p.id) ?? loops[0]!;
    if (held.length > 0) taker.takeUp(p);
    if (staged.length === 0) continue;
    // The detector now configured under this id and target has used this staging since (its place recorded): its own.
    if (ownedNow && places.all.some((q) => q !== p && q.id === p.id && sameAs(q, detectors[p.id]))) continue;
    if (p.transport === 'agent') {
      // The agent keeps a file until furkad acknowledges it placed: nothing here is the only copy, and a copy cut
      // short must never be placed as complete by an rsync detector now under this id and target.
      rmSync(staging, { recursive: true, force: true });
      continue;
    }
    // Placed, as staged leftovers are (F6), by the rsync detector now on this target, else by the same detector
    // under its new target (same file system only: a rename, never a copy), when it next prepares its staging.
    const stages = (l: ChangeLoop): boolean => detectors[l.id]!.transport === 'rsync' && detectors[l.id]!.remove_source;
    const heir = sameTarget.find((l) => stages(l) && l.id !== p.id) ?? (ownedNow ? undefined : loops.find((l) => l.id === p.id && stages(l)));
    if (heir) {
      heir.takeStaged(staging, p.id);
      continue;
    }
    // A detector now configured under this id and target clears this staging as its own (an agent's): moved aside first.
    let where = staging;
    if (ownedNow) {
      // Wall clock: only a name that tells the operator when, and differs from an earlier start's.
      where = path.join(top, STRANDED_NAME, `${p.id}-${Date.now()}`);
      mkdirSync(path.dirname(where), { recursive: true, mode: 0o700 });
      renameSync(staging, where);
    }
    // The same detector under another target: it takes them only in a shift that gives it this target again.
    const later = !ownedNow && detectors[p.id]?.transport === 'rsync' ? `detector ${p.id} takes them only in a shift that gives it this target again (StartShift); otherwise ` : 'no detector takes them; ';
    const note = `${staged.length} ${staged.length === 1 ? 'file' : 'files'} taken off detector ${p.id} (no longer in furkad.conf as it was) wait in ${where}: ` +
      `${later}move them into their shift's directory by hand, or ${CHANGE_ADVICE.slice(CHANGE_ADVICE.indexOf('restore'))}`;
    log.error({ detector: p.id, files: staged.length, staging: where, e_g: staged.slice(0, 3) }, note);
    taker.strand(note);
  }
}

/** The names in `dir`, none if it is missing. */
function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw e;
  }
}

/** Moves what is in `from` into `to` (made, 0700), merging directories; a name taken in `to` stays. Returns how many stayed. */
export function moveEntries(from: string, to: string): { left: number } {
  mkdirSync(to, { recursive: true, mode: 0o700 });
  let left = 0;
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    const there = lstatSync(dst, { throwIfNoEntry: false });
    if (!there) renameSync(src, dst);
    else if (e.isDirectory() && there.isDirectory()) {
      left += moveEntries(src, dst).left;
      if (readdirSync(src).length === 0) rmdirSync(src);
    } else left++;
  }
  return { left };
}

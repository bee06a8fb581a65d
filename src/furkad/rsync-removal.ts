// Sources the detector's rsync daemon cannot remove (F2, F10): what it said, what the operator is told, and the files
// furkad placed although their sources stayed on the detector, so that none of them is pulled or placed again.
//
// rsync's sender removes a source once the receiver has it whole and the sender found it unchanged. A module that
// runs as a user who may not delete the detector's files (a vendor's rsyncd.conf without `uid = root`: rsync's
// default user is nobody) says `sender failed to remove NAME: Permission denied` for each one, after that check:
// the copy is complete and is placed, but its source stays. A module that refuses --remove-source-files (`refuse
// options = delete*`, `read only = yes`) refuses the whole run, and nothing is taken. Either way the detector's
// ramdisk fills up: the detector shows `down` with the daemon's words and what to change, steadily, from the run
// that failed until one removes again, and is retried at the longest back-off (F10). The files placed whose sources
// stayed ("kept" here) are hidden from the runs while the daemon cannot remove them, so each is pulled, placed and
// counted once; once it can, they are pulled once more, their sources removed and the copies dropped. They are kept
// in state_dir, so that a furkad restarted meanwhile does not deliver them again (into another shift) either.
import { lstat, mkdir, rename, rm, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { sameSizeAndMtime } from '../common/file-times.js';
import { classifyExit, decodeName, NOT_ALL, type RsyncResult } from './rsync.js';
import { JsonStateFile } from './json-state.js';
import { filesBelow } from './files-below.js';

/** Where a detector's files delivered whose sources stayed on it are kept: in furkad's state_dir, one file per detector. */
export function rsyncKeptFile(stateDir: string, id: string): string {
  return path.join(stateDir, `rsync-kept-${encodeURIComponent(id)}.json`);
}

/**
 * Where the probe (probe(), probed()) receives the kept file it asks the daemon to remove: beside staging, never in
 * it, as rsync's temp files and settle mode's copies are. Staging holds only complete files to place; the probe's copy
 * is one to drop, made every retry while the daemon cannot remove. In staging it was there during each probe run, seen
 * there by anyone looking (furkad-removal.test.ts did, now and then). Its path is 7 bytes longer than in staging: a kept file within 7 bytes of PATH_MAX cannot be probed (the
 * run fails, nothing is lost; a new file's run tells furkad the daemon removes again all the same).
 */
export function probeDir(staging: string): string {
  return path.join(path.dirname(staging), '.probe', path.basename(staging));
}

/** The sender's line for a source it sent, found unchanged and could not unlink (the reason without its errno). */
const FAILED = /^rsync: (?:\[sender\] )?sender failed to remove (.*): ([^:]+?)(?: \(\d+\))?$/;
/** The daemon refusing --remove-source-files for the whole run: its line, and what to change in the module. */
const REFUSALS: Array<[RegExp, (module: string) => string]> = [
  // rsync takes `delete*` in `refuse options` to cover --remove-source-files, and then names --delete.
  [/(?:configured to refuse|on remote machine:) --(?:remove-source-files|delete)\b/, (m) => `take delete* and remove-source-files out of module ${m}'s refuse options`],
  [/--remove-source-files cannot be used with a read-only module/, (m) => `give module ${m} read only = no`],
];
/** A file the sender was asked for by name that is not there (a run limited to `only`). */
const GONE = /link_stat "(.*)" (?:\(in .*\) )?failed: No such file or directory/;

/** What to change for a file the module's user could not unlink, by the reason rsync gives. */
function adviceFor(reason: string, module: string): string {
  if (/Permission denied|Operation not permitted/.test(reason)) return `give module ${module} uid = root (README)`;
  if (/Read-only file system/.test(reason)) return "the detector's ramdisk is mounted read-only (README)";
  return `module ${module}'s user must be able to delete the detector's files (README)`;
}

/** A run's stderr without the sender's removal failures: what else went wrong, if anything (rsync.ts classifyExit). */
export function besidesRemoval(code: number, stderr: string): { code: number; stderr: string } {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const rest = lines.filter((l) => !FAILED.test(l.trim()));
  // Nothing but removal failures (and rsync's summary of them): the run itself went well.
  if (code === 23 && rest.length < lines.length && rest.every((l) => NOT_ALL.test(l))) return { code: 0, stderr: '' };
  return { code, stderr: rest.join('\n') };
}

/** Whether the run's stderr says that the daemon refuses --remove-source-files, and what to change then. */
function refusalIn(stderr: string, module: string): { said: string; advice: string } | undefined {
  for (const line of stderr.split('\n')) {
    for (const [re, advice] of REFUSALS) {
      if (re.test(line)) return { said: line.replace(/^rsync: /, '').trim(), advice: advice(module) };
    }
  }
  return undefined;
}

/** The sources the sender could not remove in a run, by name (as furkad names files), with rsync's reason. */
export function failuresIn(stderr: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    const m = FAILED.exec(line.trim());
    if (m) out.set(decodeName(m[1] ?? ''), m[2] ?? '');
  }
  return out;
}

/** A file placed from staging whose source stayed: its size and mtime as placed (a file of another is another file). */
interface Kept {
  size: number;
  mtimeMs: number;
}

/** What a run that asked the daemon to remove taught: it refused, it failed for some files, it removed, or nothing. */
export type RemovalNews = 'refused' | 'failed' | 'removed' | 'untold';

export class RsyncRemoval {
  /**
   * Why the daemon could not remove at its last try, whether it refused outright, and what to change (the message
   * stays while that does not, so lastError does not change with every file named); undefined: it removes.
   */
  #failing: { message: string; refused: boolean; advice: string } | undefined;
  /** Files placed whose sources the daemon could not remove, by path below the module (the source may change). */
  #kept = new Map<string, Kept>();
  /** Complete in staging, their sources not removed, not yet placed (could not be, so far): kept once placed. */
  #pending = new Map<string, Kept>();
  /** Where #kept is kept across a restart. */
  readonly #state: JsonStateFile;

  /** `file`: where the kept files are written (state_dir), and read from at start; none: in memory only. */
  constructor(private readonly id: string, private readonly log: Logger, file?: string) {
    this.#state = new JsonStateFile(file, id, 'the files kept on the detector', log);
    const saved = this.#state.read() as { kept?: unknown } | undefined;
    if (typeof saved !== 'object' || saved === null) return;
    for (const e of Array.isArray(saved.kept) ? saved.kept as unknown[] : []) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || typeof e[2] !== 'number') continue;
      this.#kept.set(e[0], { size: e[1], mtimeMs: e[2] });
    }
    if (this.#kept.size > 0) {
      this.log.warn({ detector: id, files: this.#kept.size, file }, 'files delivered whose sources the detector\'s rsync daemon could not remove: ' +
        'not delivered again when pulled to be removed');
    }
  }

  /**
   * Writes the kept files to `file` if they changed (after each run). One that cannot be written (a full state_dir)
   * is said once and tried again after the next run; meanwhile they are known in memory.
   */
  save(): void {
    this.#state.save(() => ({ detector: this.id, kept: [...this.#kept].map(([key, k]) => [key, k.size, k.mtimeMs]) }));
  }

  /** Resolves once what save() wrote is flushed to disk (json-state.ts). */
  flushed(): Promise<void> {
    return this.#state.flushed();
  }


  /** Why the daemon cannot remove sources, for lastError: undefined while it can. */
  get failing(): string | undefined {
    return this.#failing?.message;
  }

  /** The daemon refused --remove-source-files at its last try: runs only ask it again, copying nothing. */
  get refused(): boolean {
    return this.#failing?.refused ?? false;
  }

  /** Files below `source` the runs leave alone (--exclude-from, anchored): kept ones, while the daemon cannot remove them. */
  skipped(source: string): string[] {
    if (this.#failing === undefined) return [];
    return [...this.#kept.keys(), ...this.#pending.keys()].map((key) => below(source, key)).filter((rel): rel is string => rel !== undefined);
  }

  /** The kept file to ask the daemon to remove when a run has nothing else to take: the smallest, if any. */
  probe(source: string): string | undefined {
    let best: { rel: string; size: number } | undefined;
    for (const [key, k] of this.#kept) {
      const rel = below(source, key);
      if (rel !== undefined && (best === undefined || k.size < best.size)) best = { rel, size: k.size };
    }
    return best?.rel;
  }

  /**
   * Counts bytes of files placed before that a run about to start pulls again (not counted again: Detectors' bytes):
   * taken before the run, whose removals drop the records while it goes on.
   */
  pulledAgain(source: string): (sent: string[]) => number {
    const sizes = new Map([...this.#kept].map(([key, k]) => [key, k.size]));
    return (sent) => sent.reduce((sum, rel) => sum + (sizes.get(keyOf(source, rel)) ?? 0), 0);
  }

  /**
   * A run that asked the daemon to remove sources (`--remove-source-files`) ended: what it said of removing.
   * `module` names the module in the advice. The failing state changes here, and is logged when it does.
   */
  learn(result: Pick<RsyncResult, 'code' | 'stderr' | 'files' | 'changed'>, module: string): RemovalNews {
    const refusal = refusalIn(result.stderr, module);
    if (refusal) {
      this.#fail(`the detector's rsync daemon refuses to remove sources: ${refusal.said}; ${refusal.advice}; nothing is taken from it until then`, true, refusal.advice);
      return 'refused';
    }
    const failed = failuresIn(result.stderr);
    if (failed.size > 0) {
      const [name, reason] = [...failed][0] ?? ['', ''];
      const more = failed.size > 1 ? ` (and ${failed.size - 1} more)` : '';
      const advice = adviceFor(reason, module);
      this.#fail(`the detector's rsync daemon cannot remove sources: sender failed to remove ${name}: ${reason}${more}; ` +
        `${advice}; each file is delivered once, its source stays on the detector`, false, advice);
      return 'failed';
    }
    const rest = besidesRemoval(result.code, result.stderr);
    if (classifyExit(rest.code, rest.stderr) !== 'ok') return 'untold';
    // A refusal is of the run: one that was not refused tells. A failure is per file: a source removed tells.
    if (!this.#failing?.refused && !result.files.some((rel) => !result.changed.has(rel))) return 'untold';
    if (this.#failing) {
      this.log.info({ detector: this.id, kept: this.#kept.size }, "the detector's rsync daemon removes sources again" + (this.#kept.size === 0 ? ''
        : `: the sources of the ${this.#kept.size} files delivered while it could not are taken off the detector now, their copies not delivered again`));
    }
    this.#failing = undefined;
    return 'removed';
  }

  #fail(message: string, refused: boolean, advice: string): void {
    if (this.#failing?.refused === refused && this.#failing.advice === advice) return;
    // Logged by the loop, once, when the detector goes down (F10); here only a change of reason while it is.
    if (this.#failing) this.log.warn({ detector: this.id, err: message }, "the detector's rsync daemon still cannot remove sources, now for another reason");
    this.#failing = { message, refused, advice };
  }

  /**
   * Files about to be placed from `staging` (their sources removed, or in `failed`: the daemon could not remove
   * them): which to place. A kept file pulled again, as it was placed, is dropped from staging instead (its
   * source stays kept if in `failed`, else is gone now); another file of its name is placed. One in `failed`
   * not kept yet is noted (kept once placed: placed()).
   */
  async sortOut(staging: string, source: string, rels: string[], failed: ReadonlySet<string>): Promise<string[]> {
    if (this.#kept.size === 0 && failed.size === 0) return rels;
    const place: string[] = [];
    for (const rel of rels) {
      const key = keyOf(source, rel);
      const kept = this.#kept.get(key);
      const st = kept || failed.has(rel) ? await lstat(path.join(staging, rel)).catch(() => undefined) : undefined;
      if (kept && st && sameSizeAndMtime(kept, st)) {
        await unlink(path.join(staging, rel)).catch(() => undefined);
        if (!failed.has(rel)) this.#forgetKept(key);
        continue;
      }
      if (kept) this.#forgetKept(key);
      if (failed.has(rel) && st) this.#pending.set(key, { size: st.size, mtimeMs: st.mtimeMs });
      place.push(rel);
    }
    return place;
  }

  /** Files placed now: the ones whose sources stayed are kept from now on. */
  placed(source: string, rels: string[]): void {
    if (this.#pending.size === 0) return;
    for (const rel of rels) {
      const key = keyOf(source, rel);
      const p = this.#pending.get(key);
      if (!p) continue;
      this.#pending.delete(key);
      this.#kept.set(key, p);
      this.#state.changed();
    }
  }

  #forgetKept(key: string): void {
    if (this.#kept.delete(key)) this.#state.changed();
  }

  /**
   * A full listing of `source` that hid none of the kept files (the daemon removes): kept ones below it that it did
   * not list (nor left for their size) are gone from the detector, deleted there, and are forgotten.
   */
  listed(source: string, files: string[]): void {
    if (this.#failing !== undefined || this.#kept.size === 0) return;
    const there = new Set(files.map((rel) => keyOf(source, rel)));
    for (const key of [...this.#kept.keys()]) if (below(source, key) !== undefined && !there.has(key)) this.#forgetKept(key);
  }

  /** Files gone from staging before they were placed: nothing of theirs to keep. */
  gone(source: string, rels: string[]): void {
    for (const rel of rels) this.#pending.delete(keyOf(source, rel));
  }

  /** Files set aside for an ended shift (the loop places them for it): delivered as far as later runs go. */
  setAside(source: string, rels: string[]): void {
    this.placed(source, rels);
  }

  /**
   * What a run that asked for the kept file `rel` alone (probe()) brought into `dir` (probeDir(staging)): the copy is
   * dropped, and so is the record when its source is gone. Returns a file to place, moved into `staging`: one of that
   * name that is not the file placed (rewritten on the detector) and whose source the daemon removed.
   */
  async probed(dir: string, staging: string, source: string, rel: string, result: Pick<RsyncResult, 'files' | 'stderr'>, news: RemovalNews): Promise<string | undefined> {
    const key = keyOf(source, rel);
    const kept = this.#kept.get(key);
    if (!result.files.includes(rel)) {
      // No longer on the detector (deleted there): nothing to remove, nothing to keep hidden.
      if ([...result.stderr.matchAll(new RegExp(GONE, 'g'))].some((m) => m[1]?.endsWith(`/${rel}`) || m[1] === rel)) this.#forgetKept(key);
      // A run cut short (the daemon stopped) may have received the file all the same: the file placed is dropped
      // now, another version stays for returnCopies.
      await this.#dropIfKept(dir, source, rel);
      return undefined;
    }
    const st = await lstat(path.join(dir, rel)).catch(() => undefined);
    const same = kept !== undefined && st !== undefined && sameSizeAndMtime(kept, st);
    if (news === 'removed') this.#forgetKept(key);
    if (!same && news === 'removed' && st) {
      // Complete, its source gone: into staging, to be placed (as a removing run puts a file there).
      await mkdir(path.dirname(path.join(staging, rel)), { recursive: true, mode: 0o700 });
      await rename(path.join(dir, rel), path.join(staging, rel));
      return rel;
    }
    // Another file of that name still on the detector: no longer hidden, it settles and is taken like any other.
    if (!same) this.#forgetKept(key);
    await unlink(path.join(dir, rel)).catch(() => undefined);
    return undefined;
  }

  /**
   * What a probe that did not end (furkad killed between the daemon's removal and probed(), a run cut short) left in
   * its directory `dir` (probeDir), sorted out when staging is prepared: copies of files placed are dropped
   * (unplaced()), any other copy is moved into `staging`, where the files found are placed (its source may be gone:
   * rsync-transport.ts adoptLeftovers). Moved there as well, a copy of a file placed was placed a second time once a
   * probe meanwhile had the daemon remove its source and forgot the record (furkad-removal.test.ts, now and then: 7
   * files counted for 6). Returns the files moved.
   */
  async returnCopies(dir: string, staging: string, source: string): Promise<string[]> {
    const moved = await this.unplaced(dir, source, await filesBelow(dir));
    for (const rel of moved) {
      await mkdir(path.dirname(path.join(staging, rel)), { recursive: true, mode: 0o700 });
      await rename(path.join(dir, rel), path.join(staging, rel));
    }
    await rm(dir, { recursive: true, force: true });
    return moved;
  }

  /**
   * Of files `rels` found in `dir` (staging, or the probe's) that no run of this furkad is placing, those that are
   * not a kept file as placed (size, mtime). The others were delivered already: dropped, their records kept, since
   * whether their sources are gone a later listing or probe tells (listed(), probed()). A run killed after it
   * received one leaves it there, and sortOut() would forget it as pulled to be removed when it is not.
   */
  async unplaced(dir: string, source: string, rels: string[]): Promise<string[]> {
    const rest: string[] = [];
    for (const rel of rels) if (!(await this.#dropIfKept(dir, source, rel))) rest.push(rel);
    return rest;
  }

  /** Drops `rel` in `dir` if it is a kept file as placed (delivered already); whether it did. */
  async #dropIfKept(dir: string, source: string, rel: string): Promise<boolean> {
    const kept = this.#kept.get(keyOf(source, rel));
    const st = kept && await lstat(path.join(dir, rel)).catch(() => undefined);
    if (!kept || !st?.isFile() || !sameSizeAndMtime(kept, st)) return false;
    await unlink(path.join(dir, rel)).catch(() => undefined);
    return true;
  }
}

/** The source directory below the module, as RsyncRun takes it, without slashes at either end. */
function trimmed(source: string): string {
  return source.replace(/^\/+|\/+$/g, '');
}

/** A file's path below the module. */
export function keyOf(source: string, rel: string): string {
  const dir = trimmed(source);
  return dir === '' ? rel : `${dir}/${rel}`;
}

/** A path below the module as a path below `source`, if it is below it. */
export function below(source: string, key: string): string | undefined {
  const dir = trimmed(source);
  if (dir === '') return key;
  return key.startsWith(`${dir}/`) ? key.slice(dir.length + 1) : undefined;
}

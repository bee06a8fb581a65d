// Files an rsync detector's runs learned of and did not take, and the ended shifts they are owed to (A5, F6).
//
// A file belongs to the shift current when furkad learned that it was complete. Over rsync furkad learns of a file
// when a run lists it: one it takes at once is placed in that run's shift; one it lists but leaves on the detector
// (larger than the free space on the PPU ramdisk: --max-size, staging-room.ts; the file a run failed on for want of
// room) or, with settle_ms, copies to settle, is known from then on. At a shift change whatever the ending shift's
// runs (its drain's included: every one of those files was complete before StartShift returned) knew of and did not
// take is owed to that shift (owe()): a later run that takes it gives it that shift's owner and provenance and sets it
// aside for it (RunContext.setAside), never placing it in the new one. What is owed is written to state_dir at once,
// so that a furkad restarted or killed before the file is taken still sets it aside for its shift. What is known and
// not owed yet is written with it after each run that changed it, with the shift its runs ran in: a furkad killed
// and started again goes on with that shift (shift-resume.ts), and a StartShift that comes before its runs have
// listed the detector again owes those files to it too. A furkad that starts another shift (a clean stop before,
// F6) drops them: what a stop could not drain goes to the next default shift.
//
// Which file is owed is known by what the last listing before the change said of it (Listing: its size and mtime, as
// the detector has them), never by a clock: a file taken later under an owed name is the ended shift's only if it is
// the same (size and mtime as staged: rsync -t keeps the mtime; compared in whole seconds, as rsync lists them);
// else it was written since, in a later shift. The detector's clock is not the PPU's (stepped hourly by the time-sync
// timer, drifting between steps): compared with when the shift ended on the PPU, files written before the change
// with the detector ahead went to the new shift, and one written after it with the detector behind to the old one.
import { writeDurably } from '../common/durable-file.js';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import type { OwedShift } from './transport.js';
import type { Listing } from './rsync.js';
import { JsonStateFile, flushedCopy, readStateFile, removeStateFile } from './json-state.js';
import { below, keyOf } from './rsync-removal.js';

/** Where a detector's files left on the detector and owed to ended shifts are written: in furkad's state_dir, one file per detector. */
export function rsyncOwedFile(stateDir: string, id: string): string {
  return path.join(stateDir, `rsync-owed-${encodeURIComponent(id)}.json`);
}

/** The detector id a file name in state_dir is rsyncOwedFile() of, or undefined for any other name. */
export function rsyncOwedId(name: string): string | undefined {
  const m = /^rsync-owed-(.+)\.json$/.exec(name);
  try {
    return m ? decodeURIComponent(m[1]!) : undefined;
  } catch {
    return undefined;
  }
}

/** Files known and not taken that are remembered (by path below the module): far more than a detector ramdisk holds. */
const KNOWN_MAX = 200_000;

/** A file staged by a later run: its size and mtime there, as rsync -t kept it. */
export interface Staged {
  size: number;
  mtimeMs: number;
  /**
   * The mtime in whole seconds, exact (from the nanoseconds: a double's mtimeMs rounds an mtime within ~100 ns of the
   * next second up to it, and the file listed before the change was taken for another); from mtimeMs when not given.
   */
  mtimeS?: number;
}

/** An ended shift as written: its usertime as a decimal string. */
type OwedRecord = Omit<OwedShift, 'usertime'> & { usertime: string; endedMs?: number | undefined };

export class RsyncOwed {
  /** Paths below the module the runs learned of and have not taken (not owed to anyone yet, or owed: see #owed). */
  #known = new Set<string>();
  /** The shift the runs run in (runsIn()): the known files not owed yet were learned in it. */
  #runsIn: bigint | undefined;
  /**
   * Known and not owed when an earlier furkad wrote the file, and the shift its runs learned them in: this furkad's
   * until its first run or shift change says whether it goes on with that shift (then they are known) or not.
   */
  #inherited: { shift: bigint; keys: string[] } | undefined;
  /** What the last listing that left each known file said of it; frozen once the file is owed. */
  #listing = new Map<string, Listing>();
  /**
   * When each ended shift with files owed to it ended (PPU wall clock, ms), as a furkad before listings were kept
   * wrote it: an owed file of its state, with no listing, is judged by its mtime against it, as that furkad did. This
   * furkad writes none: a file it owes with no listing (the run that was to list it failed, or rsync printed its
   * mtime in a form furkad cannot read) is the ended shift's under its name, never judged by a clock.
   */
  #endedMs = new Map<bigint, number>();
  /** Paths below the module owed to an ended shift, with that shift. */
  #owed = new Map<string, OwedShift>();
  /** Where #owed is kept across a restart. */
  readonly #state: JsonStateFile;

  /** `file`: where the known and owed files are written (state_dir), and read from at start; none: in memory only. */
  constructor(private readonly id: string, private readonly log: Logger, file?: string) {
    this.#state = new JsonStateFile(file, id, 'the files left on the detector and those owed to ended shifts', log);
    const saved = this.#state.read() as { shifts?: unknown; owed?: unknown; known?: unknown; knownIn?: unknown; listed?: unknown } | undefined;
    if (typeof saved !== 'object' || saved === null) return;
    const shifts = new Map<string, OwedShift>();
    for (const r of Array.isArray(saved.shifts) ? saved.shifts as unknown[] : []) {
      if (!isRecord(r)) continue;
      const { endedMs, ...shift } = r;
      shifts.set(r.usertime, { ...shift, usertime: BigInt(r.usertime) });
      if (typeof endedMs === 'number' && Number.isFinite(endedMs)) this.#endedMs.set(BigInt(r.usertime), endedMs);
    }
    for (const e of Array.isArray(saved.owed) ? saved.owed as unknown[] : []) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') continue;
      const shift = shifts.get(e[1]);
      if (!shift) continue;
      this.#owed.set(e[0], shift);
      this.#known.add(e[0]);
    }
    if (this.#owed.size > 0) {
      this.log.warn({ detector: id, files: this.#owed.size, file }, 'files an earlier furkad knew of before a shift change and could not take: ' +
        "they stay that ended shift's, set aside for it when taken");
    }
    if (typeof saved.knownIn === 'string' && /^\d{1,19}$/.test(saved.knownIn) && Array.isArray(saved.known)) {
      const keys = (saved.known as unknown[]).filter((k): k is string => typeof k === 'string' && !this.#owed.has(k)).slice(-KNOWN_MAX);
      if (keys.length > 0) this.#inherited = { shift: BigInt(saved.knownIn), keys };
    }
    // What was listed of the owed and inherited files: [path, size, mtime s]; none in a file of a furkad before 2026-12.
    const kept = new Set(this.#inherited?.keys ?? []);
    for (const e of Array.isArray(saved.listed) ? saved.listed as unknown[] : []) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || !(this.#owed.has(e[0]) || kept.has(e[0]))) continue;
      const listed = { size: e[1] as unknown, mtimeS: e[2] as unknown };
      if (isListing(listed)) this.#listing.set(e[0], listed);
    }
  }

  /**
   * The runs from now on are shift `usertime`'s. The first call of a furkad settles what an earlier one knew and had
   * not owed: known still if this is the shift it ran (a furkad killed goes on with it), else dropped (F6).
   */
  runsIn(usertime: bigint): void {
    this.#runsIn = usertime;
    this.#inherit(usertime);
  }

  /**
   * A run learned of `rels` below `source` and left them on the detector (or settling): known from now on, as
   * `listing` says they are (the latest listing counts until the file is owed; one not listed keeps what was).
   */
  learned(source: string, rels: Iterable<string>, listing: (rel: string) => Listing | undefined = () => undefined): void {
    for (const rel of rels) {
      const key = keyOf(source, rel);
      const listed = listing(rel);
      if (listed && !this.#owed.has(key)) this.#listed(key, listed);
      this.#know(key);
    }
  }

  #listed(key: string, listed: Listing): void {
    const was = this.#listing.get(key);
    if (was?.size === listed.size && was.mtimeS === listed.mtimeS) return;
    this.#listing.set(key, listed);
    this.#state.changed();
  }

  /** Whether what a listing says of `rel` below `source` counts: not once it is owed (what was listed before the change counts). */
  listens(source: string, rel: string): boolean {
    return !this.#owed.has(keyOf(source, rel));
  }

  #know(key: string): void {
    if (this.#known.has(key)) return;
    this.#known.add(key);
    this.#state.changed();
    if (this.#known.size > KNOWN_MAX) this.#forget(this.#known.values().next().value as string);
  }

  /** See #inherited: what the earlier furkad knew in `shift` is known if `current` is that shift, else dropped. */
  #inherit(current: bigint): void {
    const inherited = this.#inherited;
    if (!inherited) return;
    this.#inherited = undefined;
    if (inherited.shift === current) {
      for (const key of inherited.keys) this.#know(key);
      this.log.info({ detector: this.id, files: inherited.keys.length, usertime: String(current) },
        'files the furkad before this one had listed and left on the detector in the shift that goes on: known as that shift\'s');
    } else {
      // Written without them at the next save: a later furkad going on with `current` must not take them up either.
      for (const key of inherited.keys) if (!this.#known.has(key)) this.#listing.delete(key);
      this.#state.changed();
    }
  }

  /** Taken (placed, set aside, gone from staging): known no more, owed no more. */
  taken(source: string, rels: Iterable<string>): void {
    for (const rel of rels) this.#forget(keyOf(source, rel));
  }

  /**
   * A full listing of `source`: what it knew of below it and the listing did not name is gone from the detector,
   * unless `taken` says it is in staging (its source removed by the run that took it, not yet set aside).
   */
  listed(source: string, files: string[], taken: (rel: string) => boolean): void {
    if (this.#known.size === 0) return;
    const there = new Set(files.map((rel) => keyOf(source, rel)));
    for (const key of [...this.#known]) {
      const rel = below(source, key);
      if (rel !== undefined && !there.has(key) && !taken(rel)) this.#forget(key);
    }
  }

  /** The files below `source` owed to ended shifts other than `current`, by shift. */
  owedBelow(source: string, current: bigint): Map<OwedShift, string[]> {
    const out = new Map<OwedShift, string[]>();
    for (const [key, shift] of this.#owed) {
      const rel = below(source, key);
      if (rel === undefined || shift.usertime === current) continue;
      const rels = out.get(shift);
      if (rels) rels.push(rel);
      else out.set(shift, [rel]);
    }
    return out;
  }

  /** Any file (below any source) is still owed to the ended shift `usertime`. */
  owes(usertime: bigint): boolean {
    for (const shift of this.#owed.values()) if (shift.usertime === usertime) return true;
    return false;
  }

  /**
   * The ended shift `rel` below `source` is owed to, unless it is `current`'s own, or the file taken under that name
   * (`staged`: as rsync -t kept it) is not the one listed before the change (another size or mtime): another file,
   * written since under the owed one's name (rewritten, or renamed over it), completed in a later shift and not the
   * ended one's (A5). Whatever the two servers' clocks say. Owed with no listing (an older furkad's state): the file's
   * mtime against when the shift ended, as that furkad judged it.
   */
  owedTo(source: string, rel: string, current: bigint, staged?: Staged): OwedShift | undefined {
    const key = keyOf(source, rel);
    const owed = this.#owed.get(key);
    if (!owed || owed.usertime === current) return undefined;
    // Gone from staging: whoever it was owed to, nothing is set aside.
    if (staged === undefined) return owed;
    const listed = this.#listing.get(key);
    const ended = this.#endedMs.get(owed.usertime);
    const same = listed ? staged.size === listed.size && (staged.mtimeS ?? Math.floor(staged.mtimeMs / 1000)) === listed.mtimeS
      : ended === undefined || staged.mtimeMs <= ended;
    if (same) return owed;
    this.#forget(key);
    return undefined;
  }

  /** A shift change is over for `shift`: every file known and not owed to an earlier shift is owed to it. Returns how many; written at once. */
  owe(shift: OwedShift): number {
    // A StartShift before this furkad's first run: an earlier furkad's known files are the ending shift's if it ran it.
    this.#inherit(shift.usertime);
    let n = 0;
    for (const key of this.#known) {
      if (this.#owed.has(key)) continue;
      this.#owed.set(key, shift);
      n++;
    }
    if (n > 0) this.#state.changed();
    this.save();
    return n;
  }

  /** Resolves once what save() wrote is flushed to disk (json-state.ts). */
  flushed(): Promise<void> {
    return this.#state.flushed();
  }

  #forget(key: string): void {
    const owed = this.#owed.delete(key);
    this.#listing.delete(key);
    if (this.#known.delete(key) || owed) this.#state.changed();
  }

  /**
   * Writes the owed files, and the known ones not owed yet with the shift they were learned in, to `file` if they
   * changed (at owe(), after each run). One that cannot be written (a full state_dir) is said once and tried again
   * after the next run; meanwhile they are known in memory.
   */
  save(): void {
    this.#state.save(() => {
      const shifts = new Map<bigint, OwedShift>();
      for (const s of this.#owed.values()) shifts.set(s.usertime, s);
      const known = [...this.#known].filter((key) => !this.#owed.has(key));
      // Not settled yet (no run nor change since the start): kept as read, for the furkad after this one to settle.
      const pending = this.#inherited;
      return {
        detector: this.id,
        shifts: [...shifts.values()].map((s): OwedRecord => ({ ...s, usertime: String(s.usertime), endedMs: this.#endedMs.get(s.usertime) })),
        owed: [...this.#owed].map(([key, s]) => [key, String(s.usertime)]),
        ...(pending ? { knownIn: String(pending.shift), known: pending.keys }
          : known.length > 0 && this.#runsIn !== undefined ? { knownIn: String(this.#runsIn), known } : {}),
        // What was listed of them (rsync-owed.ts's head): [path, size, mtime s].
        listed: [...this.#listing].map(([key, l]) => [key, l.size, l.mtimeS]),
      };
    });
  }

}

/** A listing as written by save(): anything else is none (the file is judged as an older furkad's). */
function isListing(o: unknown): o is Listing {
  const l = o as Listing | undefined;
  return typeof l === 'object' && l !== null && Number.isSafeInteger(l.size) && l.size >= 0 && Number.isSafeInteger(l.mtimeS);
}

/** A shift record as written by save(): anything else (a damaged file) is not taken. */
function isRecord(o: unknown): o is OwedRecord {
  const r = o as OwedRecord | undefined;
  return typeof r === 'object' && r !== null && typeof r.usertime === 'string' && /^\d+$/.test(r.usertime)
    && Number.isInteger(r.uid) && Number.isInteger(r.gid) && typeof r.usrdir === 'string'
    && typeof r.target === 'string' && typeof r.configuredTarget === 'string';
}

/** What an owed file (rsyncOwedFile) holds, as written: how many files, and the ended shifts they are owed to. */
export function readOwedFile(file: string): { owed: unknown[][]; shifts: OwedRecord[]; listed: unknown[][] } {
  const saved = readStateFile(file).content as { shifts?: unknown; owed?: unknown; listed?: unknown };
  const shifts = (Array.isArray(saved.shifts) ? saved.shifts as unknown[] : []).filter(isRecord);
  const owed = (Array.isArray(saved.owed) ? saved.owed as unknown[] : []).filter((e): e is unknown[] => Array.isArray(e) && typeof e[0] === 'string');
  const paths = new Set(owed.map((e) => e[0]));
  const listed = (Array.isArray(saved.listed) ? saved.listed as unknown[] : []).filter((e): e is unknown[] => Array.isArray(e) && paths.has(e[0]));
  return { owed, shifts: shifts.filter((s) => owed.some((e) => e[1] === s.usertime)), listed };
}

/**
 * The files owed in `from` are `to`'s detector's from now on (the same rsync daemon and module under another name
 * in furkad.conf): added to `to` (a file of its own wins for the same path), written whole, then `from` removed.
 * Called before the detector's RsyncOwed reads `to`. Returns how many were taken.
 */
export function inheritOwedFile(from: string, to: string, id: string): number {
  const old = readOwedFile(from);
  let mine: ReturnType<typeof readOwedFile> = { owed: [], shifts: [], listed: [] };
  try {
    mine = readOwedFile(to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const paths = new Set(mine.owed.map((e) => e[0]));
  const owed = [...mine.owed, ...old.owed.filter((e) => !paths.has(e[0]))];
  const shifts = [...mine.shifts, ...old.shifts.filter((s) => !mine.shifts.some((m) => m.usertime === s.usertime))];
  // What the listing before the change said of each owed file goes with it: by that alone it is told from one written since.
  const listed = [...mine.listed, ...old.listed.filter((e) => !paths.has(e[0]))];
  // The files known and not owed yet (known, knownIn) are not carried over: the renamed detector's first run
  // lists them again (only a StartShift before that run, after a SIGKILL and a furkad.conf change, misses them).
  const text = JSON.stringify({ detector: id, shifts, owed, listed });
  writeDurably(to, text, 0o600);
  writeDurably(flushedCopy(to), text, 0o600); // not an older copy of `to`'s own beside it (json-state.ts)
  removeStateFile(from);
  return owed.length - mine.owed.length;
}

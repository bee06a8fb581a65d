// Files an rsync detector's runs learned of and did not take, and the ended shifts they are owed to (A5, F6).
//
// A file belongs to the shift current when furkad learned that it was complete. Over rsync furkad learns of a file
// when a run lists it: one it takes at once is placed in that run's shift; one it lists but leaves on the detector
// (larger than the free space on the PPU ramdisk: --max-size, staging-room.ts; the file a run failed on for want of
// room) or, with settle_ms, copies to settle, is known from then on. At a shift change whatever the ending shift's
// runs (its drain's included: every one of those files was complete before StartShift returned) knew of and did not
// take is owed to that shift (owe()): a later run that takes it gives it that shift's owner and provenance and sets it
// aside for it (RunContext.setAside), never placing it in the new one. What is owed is written to state_dir at once,
// so that a furkad restarted or killed before the file is taken still sets it aside for its shift.
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import type { OwedShift } from './transport.js';
import { JsonStateFile } from './json-state.js';
import { below, keyOf } from './rsync-removal.js';

/** Where a detector's files owed to ended shifts are written: in furkad's state_dir, one file per detector. */
export function rsyncOwedFile(stateDir: string, id: string): string {
  return path.join(stateDir, `rsync-owed-${encodeURIComponent(id)}.json`);
}

/** Files known and not taken that are remembered (by path below the module): far more than a detector ramdisk holds. */
const KNOWN_MAX = 200_000;

/** An ended shift as written: its usertime as a decimal string. */
type OwedRecord = Omit<OwedShift, 'usertime'> & { usertime: string; endedMs?: number | undefined };

export class RsyncOwed {
  /** Paths below the module the runs learned of and have not taken (not owed to anyone yet, or owed: see #owed). */
  #known = new Set<string>();
  /** When each ended shift with files owed to it ended (wall clock, ms): a file written after that is not its. */
  #endedMs = new Map<bigint, number>();
  /** Paths below the module owed to an ended shift, with that shift. */
  #owed = new Map<string, OwedShift>();
  /** Where #owed is kept across a restart. */
  readonly #state: JsonStateFile;

  /** `file`: where the owed files are written (state_dir), and read from at start; none: in memory only. */
  constructor(private readonly id: string, private readonly log: Logger, file?: string) {
    this.#state = new JsonStateFile(file, id, 'the files owed to ended shifts', log);
    const saved = this.#state.read() as { shifts?: unknown; owed?: unknown } | undefined;
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
  }

  /** A run learned of `rels` below `source` and left them on the detector (or settling): known from now on. */
  learned(source: string, rels: Iterable<string>): void {
    for (const rel of rels) {
      const key = keyOf(source, rel);
      if (this.#known.has(key)) continue;
      this.#known.add(key);
      if (this.#known.size > KNOWN_MAX) this.#forget(this.#known.values().next().value as string);
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
   * was last written (`mtimeMs`, as rsync kept it) after that shift ended: another file, written since under the
   * owed one's name (rewritten, or renamed over it), completed in a later shift and not the ended one's (A5).
   */
  owedTo(source: string, rel: string, current: bigint, mtimeMs?: number): OwedShift | undefined {
    const key = keyOf(source, rel);
    const owed = this.#owed.get(key);
    if (!owed || owed.usertime === current) return undefined;
    const ended = this.#endedMs.get(owed.usertime);
    if (mtimeMs !== undefined && ended !== undefined && mtimeMs > ended) {
      this.#forget(key);
      return undefined;
    }
    return owed;
  }

  /** A shift change is over for `shift`: every file known and not owed to an earlier shift is owed to it. Returns how many; written at once. */
  // endedMs, wall clock: compared with the mtimes the detector's clock gave its files (kept in step by the time-sync timer).
  owe(shift: OwedShift, endedMs = Date.now()): number {
    if (!this.#endedMs.has(shift.usertime)) this.#endedMs.set(shift.usertime, endedMs);
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

  #forget(key: string): void {
    this.#known.delete(key);
    if (this.#owed.delete(key)) this.#state.changed();
  }

  /**
   * Writes the owed files to `file` if they changed (at owe(), after each run). One that cannot be written (a full
   * state_dir) is said once and tried again after the next run; meanwhile they are known in memory.
   */
  save(): void {
    this.#state.save(() => {
      const shifts = new Map<bigint, OwedShift>();
      for (const s of this.#owed.values()) shifts.set(s.usertime, s);
      return {
        detector: this.id,
        shifts: [...shifts.values()].map((s): OwedRecord => ({ ...s, usertime: String(s.usertime), endedMs: this.#endedMs.get(s.usertime) })),
        owed: [...this.#owed].map(([key, s]) => [key, String(s.usertime)]),
      };
    });
  }

}

/** A shift record as written by save(): anything else (a damaged file) is not taken. */
function isRecord(o: unknown): o is OwedRecord {
  const r = o as OwedRecord | undefined;
  return typeof r === 'object' && r !== null && typeof r.usertime === 'string' && /^\d+$/.test(r.usertime)
    && Number.isInteger(r.uid) && Number.isInteger(r.gid) && typeof r.usrdir === 'string'
    && typeof r.target === 'string' && typeof r.configuredTarget === 'string';
}

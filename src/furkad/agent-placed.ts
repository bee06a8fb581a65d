// Which agent files furkad has placed but not yet seen acknowledged (A4): after a crash or a lost
// connection the agent announces them again, and furkad acknowledges them instead of placing them twice.
// One file for all detectors; no fsync, like the outbox: it must outlive the process, and the PPU ramdisk it
// describes does not outlive the machine; only the records of files owed to ended shifts (on the detector) are flushed. Records are taken in memory first: one the full state_dir refused is
// written with the next write that fits (RewritableLog), which rewrites the file from what is still open.
import { readFileSync } from 'node:fs';
import { readAppendLog, RewritableLog } from '../common/append-log.js';
import { isBareChecksum } from '../common/checksum.js';

/**
 * The kernel's id of this boot ('' if it cannot be read). A placement record written in another boot describes a
 * file on the PPU ramdisk (a tmpfs) that went with that boot: a power cut or a reboot of the PPU.
 */
export function currentBootId(file = '/proc/sys/kernel/random/boot_id'): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * 'i': about to be placed (intend); 'p': placed (as `rel`; lines of an older furkad have none); 'a':
 * acknowledgement answered (for the placement as `rel` only, if it has one); 'di': intent dropped; 's': set
 * aside for an ended shift as `rel` (setAside), until placed; 'ds': set-aside dropped. An older furkad wrote
 * 'a' without `rel` for all of the last three: such a line ends everything of its id, as it did then. 'os': an
 * ended shift files are owed to (`u` its usertime, `o` whose and where); 'o': the file `id` is owed to shift `u`
 * (owe); 'do': no longer (gone from the detector). A set-aside or placement of the id ends it too. 'b': the lines
 * after it were written in the PPU's boot `id` (a furkad before it wrote none); one of another boot than the line
 * before it ends every placement before it (their files were on the ramdisk of a boot that is over).
 */
type Line = { t: 'p' | 'a' | 'i' | 's' | 'di' | 'ds' | 'o' | 'os' | 'do' | 'b'; d: string; id: string; dir?: string; rel?: string; u?: string; sum?: string; o?: OwedRecord };

/** An ended shift that files are owed to (Transport.owe), as kept: its usertime as a decimal string. */
export interface OwedRecord {
  usertime: string;
  uid: number;
  gid: number;
  usrdir: string;
  /** The marked target the shift's detector delivered below, and the detector's configured target. */
  target: string;
  configuredTarget: string;
}

/** A file set aside for an ended shift: its id, its path, and that shift's usertime (decimal). */
export interface SetAside {
  id: string;
  rel: string;
  usertime: string;
  /** The checksum of what was placed (left behind for its shift), sent with its acknowledgement. */
  sum?: string;
}

/** A file placed: its id and the path below the shift's directory it was placed as. */
export interface Placed {
  id: string;
  rel: string;
  /** The checksum (hex) of what was placed, if known: the agent compares the file with it before deleting it. */
  sum?: string;
}

/** `o` with the checksum `sum` where it is known (never an undefined `sum` property). */
export function withSum<T extends object>(o: T, sum: string | undefined): T & { sum?: string } {
  return sum === undefined ? o : { ...o, sum };
}

/** A placement whose acknowledgement is unanswered (`rel` null: a line of an older furkad, by id alone). */
type Open = { id: string; rel: string | null; sum?: string };

/** Where a file was about to be placed: the shift's directory and the path below it. */
export interface Intent {
  dir: string;
  rel: string;
  /** The checksum (hex) of what was about to be placed; none in lines of an older furkad. */
  sum?: string;
}

/** Rewrite the file from what is still open once it has grown past this. */
const COMPACT_BYTES = 1 << 20;

export class AgentPlaced {
  readonly #log: RewritableLog;
  /**
   * Per detector: files placed, acknowledgement not yet answered, by placement (placement: id and the path it was
   * placed as; a placement by a furkad that did not note the path is under its id alone, rel null). One file
   * may be announced under two names (renamed or hard-linked after it was complete, the id the same): each name
   * is its own placement.
   */
  #open: Map<string, Map<string, Open>>;
  /**
   * Per detector: files about to be placed, and where, by placement. Written before the file gets its name:
   * furkad killed between that and placed() leaves the file placed in a shift's directory; after a restart (a
   * new shift, F6) it must be recognised there, not placed a second time into the new shift's directory.
   */
  #intents: Map<string, Map<string, Intent>>;
  /**
   * Per detector: files the loop set aside for a shift that ended (kept below the target, retried for that
   * shift), by placement. A furkad restarted meanwhile must neither fetch them again into the new shift nor
   * forget to acknowledge them once they are placed for theirs (A4, A5, F6).
   */
  #aside: Map<string, Map<string, SetAside>>;
  /**
   * Per detector: files (by id) learned of before a shift change that its drain did not take, with the usertime
   * of the ended shift they belong to (A5), and those shifts by usertime. A furkad restarted meanwhile still
   * fetches them for that shift, not its own.
   */
  #owed: Map<string, Map<string, string>>;
  #owedShifts: Map<string, Map<string, OwedRecord>>;

  /**
   * Per detector: the names each id has open placements under (#open, by id): a file announced under a new name
   * is looked up here at every take (AgentTransport), which must not walk every placement.
   */
  #openNames = new Map<string, Map<string, Set<string>>>();

  /** The PPU's boot the records are written in ('' unknown). */
  readonly #boot: string;
  /**
   * Placements whose acknowledgement was unanswered when the PPU went down (a power cut, a reboot), per detector:
   * dropped at this start, since their files went with the PPU ramdisk; the agent still has them and sends them
   * again. Empty when the records are of this boot (a furkad restarted without the PPU) or no boot is known.
   */
  readonly droppedAtBoot = new Map<string, number>();

  private constructor(file: string, open: Map<string, Map<string, Open>>, intents: Map<string, Map<string, Intent>>, aside: Map<string, Map<string, SetAside>>,
    owed: Map<string, Map<string, string>>, owedShifts: Map<string, Map<string, OwedRecord>>, boot: string) {
    this.#boot = boot;
    // Owed files are on the detector, which a power cut of the PPU does not empty: their records are flushed.
    this.#log = new RewritableLog(file, () => this.#live().map((l) => `${JSON.stringify(l)}\n`).join(''),
      () => [...this.#owed.values()].some((owes) => owes.size > 0));
    this.#open = open;
    this.#intents = intents;
    this.#aside = aside;
    this.#owed = owed;
    this.#owedShifts = owedShifts;
    for (const [d, ids] of open) for (const p of ids.values()) if (p.rel !== null) this.#named(d, p.id, p.rel, true);
  }

  /** `boot`: the PPU's boot now (currentBootId(); a test gives its own). */
  static open(dir: string, boot = currentBootId()): AgentPlaced {
    const { file, lines } = readAppendLog(dir, 'agent-placed.jsonl');
    /** The boot of the lines read so far (undefined: none said, a furkad before 'b' lines, or an empty file). */
    let linesBoot: string | undefined;
    const open = new Map<string, Map<string, Open>>();
    const intents = new Map<string, Map<string, Intent>>();
    const aside = new Map<string, Map<string, SetAside>>();
    const owed = new Map<string, Map<string, string>>();
    const owedShifts = new Map<string, Map<string, OwedRecord>>();
    const of = <V>(m: Map<string, Map<string, V>>, d: string): Map<string, V> => {
      const inner = m.get(d) ?? new Map<string, V>();
      m.set(d, inner);
      return inner;
    };
    for (const raw of lines) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue; // a damaged line: at worst one file is placed a second time under its name (same bytes)
      }
      if (line.t === 'b') {
        // Written at a start in a boot other than the lines before it: their placements went with that boot's ramdisk.
        if (linesBoot !== undefined && typeof line.id === 'string' && line.id !== linesBoot) open.clear();
        if (typeof line.id === 'string') linesBoot = line.id;
        continue;
      }
      const ids = of(open, line.d);
      const meant = of(intents, line.d);
      const kept = of(aside, line.d);
      const owes = of(owed, line.d);
      const rel = typeof line.rel === 'string' ? line.rel : undefined;
      // A checksum that is not one (a damaged line) is not sent: the agent would refuse the acknowledgement.
      if (line.sum !== undefined && (typeof line.sum !== 'string' || !isBareChecksum(line.sum))) delete line.sum;
      const key = rel === undefined ? undefined : placement(line.id, rel);
      switch (line.t) {
        case 'i':
          if (key !== undefined && typeof line.dir === 'string') meant.set(key, withSum({ dir: line.dir, rel: rel! }, line.sum));
          break;
        case 's':
          if (key !== undefined) {
            kept.set(key, withSum({ id: line.id, rel: rel!, usertime: line.u ?? '' }, line.sum));
            meant.delete(key);
            owes.delete(line.id);
          }
          break;
        case 'os':
          if (typeof line.u === 'string' && isOwedRecord(line.o)) of(owedShifts, line.d).set(line.u, line.o);
          break;
        case 'o':
          if (typeof line.u === 'string') owes.set(line.id, line.u);
          break;
        case 'do':
          owes.delete(line.id);
          break;
        case 'p':
          owes.delete(line.id);
          if (key !== undefined) {
            ids.set(key, withSum({ id: line.id, rel: rel! }, line.sum));
            meant.delete(key);
            kept.delete(key);
          } else {
            ids.set(line.id, { id: line.id, rel: null });
            dropId(meant, line.id);
            dropId(kept, line.id);
          }
          break;
        case 'di':
          if (key !== undefined) meant.delete(key);
          else dropId(meant, line.id);
          break;
        case 'ds':
          if (key !== undefined) kept.delete(key);
          else dropId(kept, line.id);
          break;
        default:
          // 'a': an answer for one placement; without a path (an older furkad's line, which also ended intents
          // and set-asides) everything of its id.
          if (key !== undefined) {
            if (!ids.delete(key)) ids.delete(line.id);
          } else {
            dropId(ids, line.id);
            dropId(meant, line.id);
            dropId(kept, line.id);
          }
      }
    }
    const dropped = new Map<string, number>();
    if (boot !== '' && linesBoot !== undefined && linesBoot !== boot) {
      for (const [d, ids] of open) if (ids.size > 0) dropped.set(d, ids.size);
      open.clear();
    }
    const store = new AgentPlaced(file, open, intents, aside, owed, owedShifts, boot);
    for (const [d, n] of dropped) store.droppedAtBoot.set(d, n);
    // Said in the file before any record of this boot: a later start replays the drop above at this line.
    if (boot !== '' && linesBoot !== boot) store.#write([{ t: 'b', d: '', id: boot }]);
    return store;
  }

  /** Notes files (id, path) the loop set aside for an ended shift (see #aside); their intents are over, and they are owed no more. */
  setAside(detector: string, files: SetAside[]): void {
    if (files.length === 0) return;
    const kept = this.#aside.get(detector) ?? new Map<string, SetAside>();
    this.#aside.set(detector, kept);
    for (const f of files) {
      kept.set(placement(f.id, f.rel), f);
      this.#intents.get(detector)?.delete(placement(f.id, f.rel));
      this.#owed.get(detector)?.delete(f.id);
    }
    this.#write(files.map((f) => withSum({ t: 's', d: detector, id: f.id, rel: f.rel, u: f.usertime }, f.sum)));
  }

  /** Set-aside files that will never be placed (their kept copy is gone) or acknowledged (their source is gone). */
  dropSetAside(detector: string, files: Placed[]): void {
    const kept = this.#aside.get(detector);
    const known = files.filter((f) => kept?.delete(placement(f.id, f.rel)));
    if (known.length) this.#write(known.map((f) => ({ t: 'ds', d: detector, id: f.id, rel: f.rel })));
  }

  /** The files of `detector` set aside and not yet placed, as noted by setAside. */
  setAsideFiles(detector: string): SetAside[] {
    return [...(this.#aside.get(detector)?.values() ?? [])];
  }

  /** The checksum of what was placed as `id` under `rel`, if noted. */
  sumOf(detector: string, id: string, rel: string): string | undefined {
    return this.#open.get(detector)?.get(placement(id, rel))?.sum;
  }

  /** Whether `id` was placed as `rel` (or under a name not noted) and its acknowledgement is unanswered. */
  has(detector: string, id: string, rel: string): boolean {
    const open = this.#open.get(detector);
    return open !== undefined && (open.has(placement(id, rel)) || open.has(id));
  }

  /**
   * The placements (acknowledgement unanswered) and intents of `id` under names other than `rel`: the same file
   * placed, or about to be, under the name it had before a rename (or another hard link of it).
   */
  otherNames(detector: string, id: string, rel: string): { placed: Placed[]; meant: Intent[] } {
    const open = this.#open.get(detector);
    const placed: Placed[] = [];
    for (const name of this.#openNames.get(detector)?.get(id) ?? []) {
      const p = name === rel ? undefined : open?.get(placement(id, name));
      if (p) placed.push(withSum({ id, rel: name }, p.sum));
    }
    const meant: Intent[] = [];
    // Intents last only while their file is placed (or until a restart has looked for it): a few at most.
    for (const [key, i] of this.#intents.get(detector) ?? []) if (i.rel !== rel && key === placement(id, i.rel)) meant.push(i);
    return { placed, meant };
  }

  /** Keeps #openNames in step with #open: `id` has (`on`) or no longer has an open placement as `rel`. */
  #named(detector: string, id: string, rel: string, on: boolean): void {
    let ids = this.#openNames.get(detector);
    if (!ids) this.#openNames.set(detector, (ids = new Map()));
    const names = ids.get(id);
    if (on) {
      if (names) names.add(rel);
      else ids.set(id, new Set([rel]));
    } else if (names?.delete(rel) && names.size === 0) {
      ids.delete(id);
    }
  }

  /** Notes that `id` is about to be placed as `rel` below the shift's directory `dir` (see #intents). */
  intend(detector: string, id: string, dir: string, rel: string, sum?: string): void {
    const meant = this.#intents.get(detector) ?? new Map<string, Intent>();
    this.#intents.set(detector, meant);
    meant.set(placement(id, rel), withSum({ dir, rel }, sum));
    try {
      this.#write([withSum({ t: 'i', d: detector, id, dir, rel }, sum)]);
    } catch (e) {
      // Not noted: the file is not placed now, and its intent is not to be kept.
      meant.delete(placement(id, rel));
      throw e;
    }
  }

  /** Notes `ids` as owed to the ended shift `shift` (see #owed). */
  owe(detector: string, shift: OwedRecord, ids: string[]): void {
    if (ids.length === 0) return;
    const shifts = this.#owedShifts.get(detector) ?? new Map<string, OwedRecord>();
    this.#owedShifts.set(detector, shifts);
    const owes = this.#owed.get(detector) ?? new Map<string, string>();
    this.#owed.set(detector, owes);
    const lines: Line[] = [];
    if (!shifts.has(shift.usertime)) lines.push({ t: 'os', d: detector, id: '', u: shift.usertime, o: shift });
    shifts.set(shift.usertime, shift);
    for (const id of ids) {
      owes.set(id, shift.usertime);
      lines.push({ t: 'o', d: detector, id, u: shift.usertime });
    }
    this.#write(lines);
    // Unlike the placements (their files are on the PPU ramdisk, gone with a power cut as well), these files stay
    // on the detector: a record lost with a power cut would give them to the next shift's user (A5).
    this.#log.sync();
  }

  /** Files owed to ended shifts (see #owed), each with its shift. */
  owedFiles(detector: string): Array<{ id: string; shift: OwedRecord }> {
    const shifts = this.#owedShifts.get(detector);
    const out: Array<{ id: string; shift: OwedRecord }> = [];
    for (const [id, u] of this.#owed.get(detector) ?? []) {
      const shift = shifts?.get(u);
      if (shift) out.push({ id, shift });
    }
    return out;
  }

  /** Files owed no more (gone from the detector). */
  dropOwed(detector: string, ids: string[]): void {
    const owes = this.#owed.get(detector);
    const gone = ids.filter((id) => owes?.delete(id));
    if (gone.length > 0) this.#write(gone.map((id) => ({ t: 'do', d: detector, id })));
  }

  /** Where `id` was about to be placed as `rel` when furkad last stopped, if it never got further. */
  intent(detector: string, id: string, rel: string): Intent | undefined {
    return this.#intents.get(detector)?.get(placement(id, rel));
  }

  /** The intent of `id` as `rel` came to nothing (not placed, checked): forgotten. */
  dropIntent(detector: string, id: string, rel: string): void {
    if (this.#intents.get(detector)?.delete(placement(id, rel))) this.#write([{ t: 'di', d: detector, id, rel }]);
  }

  /** Notes files as placed, before their acknowledgement is sent. */
  placed(detector: string, files: Placed[]): void {
    if (files.length === 0) return;
    const open = this.#open.get(detector) ?? new Map<string, Open>();
    this.#open.set(detector, open);
    const meant = this.#intents.get(detector);
    const kept = this.#aside.get(detector);
    const owes = this.#owed.get(detector);
    for (const { id, rel, sum } of files) {
      open.set(placement(id, rel), withSum({ id, rel }, sum));
      this.#named(detector, id, rel, true);
      meant?.delete(placement(id, rel));
      kept?.delete(placement(id, rel));
      owes?.delete(id);
    }
    this.#write(files.map(({ id, rel, sum }) => withSum({ t: 'p', d: detector, id, rel }, sum)));
  }

  /**
   * The agent answered the acknowledgement of these ids (deleted, or kept because changed or gone); with `rels`
   * (one per id), of each only its placement under that name (a placement not noted with a name, if there is
   * none); without, every placement of each id (a listing without it: the agent no longer has it).
   */
  answered(detector: string, ids: string[], rels?: string[]): void {
    const open = this.#open.get(detector);
    if (!open) return;
    const known: Line[] = [];
    const end = (key: string): void => {
      const p = open.get(key);
      if (!p || !open.delete(key)) return;
      if (p.rel !== null) this.#named(detector, p.id, p.rel, false);
      known.push(p.rel === null ? { t: 'a', d: detector, id: p.id } : { t: 'a', d: detector, id: p.id, rel: p.rel });
    };
    if (rels) {
      ids.forEach((id, i) => end(open.has(placement(id, rels[i]!)) ? placement(id, rels[i]!) : id));
    } else {
      const gone = new Set(ids);
      for (const [key, p] of open) if (gone.has(p.id)) end(key);
    }
    if (known.length === 0) return;
    if (this.#log.grown(COMPACT_BYTES)) {
      this.#log.rewrite();
      return;
    }
    this.#write(known);
  }

  /** Where it is kept (state_dir). */
  get file(): string {
    return this.#log.file;
  }

  /** Detectors anything is kept for: placements unanswered, intents, set-asides, owed files. */
  detectors(): string[] {
    const ids = new Set<string>();
    for (const m of [this.#open, this.#intents, this.#aside, this.#owed] as Array<Map<string, Map<string, unknown>>>) {
      for (const [d, inner] of m) if (inner.size > 0) ids.add(d);
    }
    return [...ids];
  }

  /** How much is kept for `detector`, and the ended shifts its owed files belong to (config-change.ts says it). */
  kept(detector: string): { open: number; aside: number; owed: number; shifts: OwedRecord[] } {
    const owes = this.#owed.get(detector) ?? new Map<string, string>();
    const named = new Set(owes.values());
    const shifts = [...(this.#owedShifts.get(detector) ?? new Map<string, OwedRecord>())].filter(([u]) => named.has(u)).map(([, o]) => o);
    return { open: this.#open.get(detector)?.size ?? 0, aside: this.#aside.get(detector)?.size ?? 0, owed: owes.size, shifts };
  }

  /**
   * Everything kept for detector `from` is `to`'s from now on: the same agent under another name in furkad.conf
   * (config-change.ts), whose files keep their ids. Called before any transport reads it; the file is rewritten.
   */
  rename(from: string, to: string): void {
    for (const m of [this.#open, this.#intents, this.#aside, this.#owed, this.#owedShifts, this.#openNames] as Array<Map<string, Map<string, unknown>>>) {
      const old = m.get(from);
      if (!old) continue;
      const into = m.get(to) ?? new Map<string, unknown>();
      for (const [k, v] of old) if (!into.has(k)) into.set(k, v);
      m.set(to, into);
      m.delete(from);
    }
    this.#log.rewrite();
  }

  /** The placements of `detector` whose acknowledgement is not yet answered (rel null: placed by id alone). */
  placements(detector: string): Array<{ id: string; rel: string | null }> {
    return [...(this.#open.get(detector)?.values() ?? [])];
  }

  #write(lines: Line[]): void {
    this.#log.append(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  /**
   * Every record still open, as lines that replay (open()) to the same maps: placements first (a placement line
   * ends the intents and set-asides of its key), then set-asides (which end intents), then intents.
   */
  #live(): Line[] {
    const lines: Line[] = this.#boot === '' ? [] : [{ t: 'b', d: '', id: this.#boot }];
    for (const [d, ids] of this.#open) {
      for (const p of ids.values()) lines.push(p.rel === null ? { t: 'p', d, id: p.id } : withSum({ t: 'p', d, id: p.id, rel: p.rel }, p.sum));
    }
    for (const [d, kept] of this.#aside) for (const f of kept.values()) lines.push(withSum({ t: 's', d, id: f.id, rel: f.rel, u: f.usertime }, f.sum));
    for (const [d, meant] of this.#intents) {
      for (const [key, i] of meant) lines.push(withSum({ t: 'i', d, id: key.slice(0, key.indexOf('\n')), dir: i.dir, rel: i.rel }, i.sum));
    }
    // Owed files last (a placement or set-aside line ends them), each shift they name before them.
    for (const [d, owes] of this.#owed) {
      const shifts = this.#owedShifts.get(d);
      const named = new Set(owes.values());
      for (const u of named) {
        const o = shifts?.get(u);
        if (o) lines.push({ t: 'os', d, id: '', u, o });
      }
      for (const [id, u] of owes) if (shifts?.has(u)) lines.push({ t: 'o', d, id, u });
    }
    return lines;
  }

  close(): void {
    this.#log.close();
  }
}

/**
 * A placement as a key: a file's id and the path it was (or is to be) placed as. Ids have no newline. One name
 * of a file (a file renamed or linked after it was complete has two, one id).
 */
export function placement(id: string, rel: string): string {
  return `${id}\n${rel}`;
}

/** A shift record as written by owe(): anything else (a damaged line) is not taken. */
function isOwedRecord(o: unknown): o is OwedRecord {
  const r = o as OwedRecord | undefined;
  return typeof r === 'object' && r !== null && typeof r.usertime === 'string' && /^\d+$/.test(r.usertime) && Number.isInteger(r.uid) && Number.isInteger(r.gid)
    && typeof r.usrdir === 'string' && typeof r.target === 'string' && typeof r.configuredTarget === 'string';
}

/** Removes every placement of `id` from `m` (its named placements, and the id alone: a placement without a name). */
function dropId<V>(m: Map<string, V>, id: string): void {
  m.delete(id);
  for (const key of [...m.keys()]) if (key.startsWith(`${id}\n`)) m.delete(key);
}


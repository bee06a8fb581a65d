// Which agent files furkad has placed but not yet seen acknowledged (A4): after a crash or a lost
// connection the agent announces them again, and furkad acknowledges them instead of placing them twice.
// One file for all detectors; no fsync, like the outbox: it must outlive the process, and the PPU ramdisk it
// describes does not outlive the machine.
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { readAppendLog } from '../common/append-log.js';

/**
 * 'i': about to be placed (intend); 'p': placed (as `rel`; lines of an older furkad have none); 'a':
 * acknowledgement answered (for the placement as `rel` only, if it has one); 'di': intent dropped; 's': set
 * aside for an ended shift as `rel` (setAside), until placed; 'ds': set-aside dropped. An older furkad wrote
 * 'a' without `rel` for all of the last three: such a line ends everything of its id, as it did then.
 */
type Line = { t: 'p' | 'a' | 'i' | 's' | 'di' | 'ds'; d: string; id: string; dir?: string; rel?: string; u?: string };

/** A file set aside for an ended shift: its id, its path, and that shift's usertime (decimal). */
export interface SetAside {
  id: string;
  rel: string;
  usertime: string;
}

/** A file placed: its id and the path below the shift's directory it was placed as. */
export interface Placed {
  id: string;
  rel: string;
}

/** Where a file was about to be placed: the shift's directory and the path below it. */
export interface Intent {
  dir: string;
  rel: string;
}

/** Truncate the file once nothing is open and it has grown past this. */
const COMPACT_BYTES = 1 << 20;

export class AgentPlaced {
  #fd: number;
  /**
   * Per detector: ids placed, acknowledgement not yet answered, with the path each was placed as (null: placed
   * by a furkad that did not note it). One id may be announced under two names (a file renamed or linked after
   * it was complete): placed under one, it is not placed under the other.
   */
  #open: Map<string, Map<string, string | null>>;
  /**
   * Per detector: ids about to be placed, and where. Written before the file gets its name: furkad killed
   * between that and placed() leaves the file placed in a shift's directory; after a restart (a new shift,
   * F6) it must be recognised there, not placed a second time into the new shift's directory.
   */
  #intents: Map<string, Map<string, Intent>>;
  /**
   * Per detector: ids of files the loop set aside for a shift that ended (kept below the target, retried for
   * that shift), by id, with their paths. A furkad restarted meanwhile must neither fetch them again into the
   * new shift nor forget to acknowledge them once they are placed for theirs (A4, A5, F6).
   */
  #aside: Map<string, Map<string, SetAside>>;

  private constructor(fd: number, open: Map<string, Map<string, string | null>>, intents: Map<string, Map<string, Intent>>, aside: Map<string, Map<string, SetAside>>) {
    this.#fd = fd;
    this.#open = open;
    this.#intents = intents;
    this.#aside = aside;
  }

  static open(dir: string): AgentPlaced {
    const { file, lines } = readAppendLog(dir, 'agent-placed.jsonl');
    const open = new Map<string, Map<string, string | null>>();
    const intents = new Map<string, Map<string, Intent>>();
    const aside = new Map<string, Map<string, SetAside>>();
    for (const raw of lines) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue; // a damaged line: at worst one file is placed a second time under its name (same bytes)
      }
      const ids = open.get(line.d) ?? new Map<string, string | null>();
      open.set(line.d, ids);
      const meant = intents.get(line.d) ?? new Map<string, Intent>();
      intents.set(line.d, meant);
      const kept = aside.get(line.d) ?? new Map<string, SetAside>();
      aside.set(line.d, kept);
      if (line.t === 'i' && typeof line.dir === 'string' && typeof line.rel === 'string') {
        meant.set(line.id, { dir: line.dir, rel: line.rel });
        continue;
      }
      if (line.t === 'a' && typeof line.rel === 'string') {
        // An answer for one name of the file: it touches that placement only.
        if (ids.has(line.id) && sameName(ids.get(line.id)!, line.rel)) ids.delete(line.id);
        continue;
      }
      if (line.t === 'di' || line.t === 'ds') {
        (line.t === 'di' ? meant : kept).delete(line.id);
        continue;
      }
      meant.delete(line.id);
      if (line.t === 's') {
        if (typeof line.rel === 'string') kept.set(line.id, { id: line.id, rel: line.rel, usertime: line.u ?? '' });
        continue;
      }
      kept.delete(line.id);
      if (line.t === 'p') ids.set(line.id, typeof line.rel === 'string' ? line.rel : null);
      else ids.delete(line.id);
    }
    return new AgentPlaced(openSync(file, 'a'), open, intents, aside);
  }

  /** Notes files (id, path) the loop set aside for an ended shift (see #aside); their intents are over. */
  setAside(detector: string, files: SetAside[]): void {
    if (files.length === 0) return;
    const kept = this.#aside.get(detector) ?? new Map<string, SetAside>();
    this.#aside.set(detector, kept);
    for (const f of files) {
      kept.set(f.id, f);
      this.#intents.get(detector)?.delete(f.id);
    }
    this.#write(files.map((f) => ({ t: 's', d: detector, id: f.id, rel: f.rel, u: f.usertime })));
  }

  /** Set-aside ids that will never be placed (their kept copy is gone) or acknowledged (their source is gone). */
  dropSetAside(detector: string, ids: string[]): void {
    const kept = this.#aside.get(detector);
    const known = ids.filter((id) => kept?.delete(id));
    if (known.length) this.#write(known.map((id) => ({ t: 'ds', d: detector, id })));
  }

  /** The files of `detector` set aside and not yet placed, as noted by setAside. */
  setAsideFiles(detector: string): SetAside[] {
    return [...(this.#aside.get(detector)?.values() ?? [])];
  }

  /** Whether `id` was placed as `rel` (or under a name not noted) and its acknowledgement is unanswered. */
  has(detector: string, id: string, rel: string): boolean {
    const as = this.#open.get(detector)?.get(id);
    return as !== undefined && (as === null || as === rel);
  }

  /** Notes that `id` is about to be placed as `rel` below the shift's directory `dir` (see #intents). */
  intend(detector: string, id: string, dir: string, rel: string): void {
    const meant = this.#intents.get(detector) ?? new Map<string, Intent>();
    this.#intents.set(detector, meant);
    meant.set(id, { dir, rel });
    this.#write([{ t: 'i', d: detector, id, dir, rel }]);
  }

  /** Where `id` was about to be placed when furkad last stopped, if it never got further. */
  intent(detector: string, id: string): Intent | undefined {
    return this.#intents.get(detector)?.get(id);
  }

  /** The intent of `id` came to nothing (not placed, checked): forgotten. */
  dropIntent(detector: string, id: string): void {
    if (this.#intents.get(detector)?.delete(id)) this.#write([{ t: 'di', d: detector, id }]);
  }

  /** Notes files as placed, before their acknowledgement is sent. */
  placed(detector: string, files: Placed[]): void {
    if (files.length === 0) return;
    const set = this.#open.get(detector) ?? new Map<string, string | null>();
    this.#open.set(detector, set);
    const meant = this.#intents.get(detector);
    const kept = this.#aside.get(detector);
    for (const { id, rel } of files) {
      set.set(id, rel);
      meant?.delete(id);
      kept?.delete(id);
    }
    this.#write(files.map(({ id, rel }) => ({ t: 'p', d: detector, id, rel })));
  }

  /**
   * The agent answered the acknowledgement of these ids (deleted, or kept because changed or gone); with `rels`
   * (one per id), of each only as placed under that name: the same id placed since under another name of the
   * file waits for its own answer.
   */
  answered(detector: string, ids: string[], rels?: string[]): void {
    const set = this.#open.get(detector);
    const known: Line[] = [];
    ids.forEach((id, i) => {
      const rel = rels?.[i];
      if (!set?.has(id) || !sameName(set.get(id)!, rel)) return;
      // The name it was placed as, also for an answer given by id alone: the line ends that placement only.
      const as = set.get(id) ?? undefined;
      set.delete(id);
      known.push(as === undefined ? { t: 'a', d: detector, id } : { t: 'a', d: detector, id, rel: as });
    });
    if (known.length === 0) return;
    if ([...this.#open.values(), ...this.#intents.values(), ...this.#aside.values()].every((s) => s.size === 0) && fstatSync(this.#fd).size > COMPACT_BYTES) {
      ftruncateSync(this.#fd, 0);
      return;
    }
    this.#write(known);
  }

  /** Ids of `detector` placed whose acknowledgement is not yet answered. */
  unanswered(detector: string): string[] {
    return [...(this.#open.get(detector)?.keys() ?? [])];
  }

  #write(lines: Line[]): void {
    writeSync(this.#fd, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Whether an answer for name `answered` (undefined: any) is for a file placed as `placed` (null: name not noted). */
function sameName(placed: string | null, answered: string | undefined): boolean {
  return placed === null || answered === undefined || placed === answered;
}

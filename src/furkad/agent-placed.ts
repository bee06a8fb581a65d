// Which agent files furkad has placed but not yet seen acknowledged (A4): after a crash or a lost
// connection the agent announces them again, and furkad acknowledges them instead of placing them twice.
// One file for all detectors; no fsync, like the outbox: it must outlive the process, and the PPU ramdisk it
// describes does not outlive the machine.
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { readAppendLog } from '../common/append-log.js';

/**
 * 'i': about to be placed (intend); 'p': placed; 'a': acknowledgement answered, or intent dropped;
 * 's': set aside for an ended shift as `rel` (setAside), until placed.
 */
type Line = { t: 'p' | 'a' | 'i' | 's'; d: string; id: string; dir?: string; rel?: string; u?: string };

/** A file set aside for an ended shift: its id, its path, and that shift's usertime (decimal). */
export interface SetAside {
  id: string;
  rel: string;
  usertime: string;
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
  /** Per detector: ids placed, acknowledgement not yet answered. */
  #open: Map<string, Set<string>>;
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

  private constructor(fd: number, open: Map<string, Set<string>>, intents: Map<string, Map<string, Intent>>, aside: Map<string, Map<string, SetAside>>) {
    this.#fd = fd;
    this.#open = open;
    this.#intents = intents;
    this.#aside = aside;
  }

  static open(dir: string): AgentPlaced {
    const { file, lines } = readAppendLog(dir, 'agent-placed.jsonl');
    const open = new Map<string, Set<string>>();
    const intents = new Map<string, Map<string, Intent>>();
    const aside = new Map<string, Map<string, SetAside>>();
    for (const raw of lines) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue; // a damaged line: at worst one file is placed a second time under its name (same bytes)
      }
      const ids = open.get(line.d) ?? new Set<string>();
      open.set(line.d, ids);
      const meant = intents.get(line.d) ?? new Map<string, Intent>();
      intents.set(line.d, meant);
      const kept = aside.get(line.d) ?? new Map<string, SetAside>();
      aside.set(line.d, kept);
      if (line.t === 'i' && typeof line.dir === 'string' && typeof line.rel === 'string') {
        meant.set(line.id, { dir: line.dir, rel: line.rel });
        continue;
      }
      meant.delete(line.id);
      if (line.t === 's') {
        if (typeof line.rel === 'string') kept.set(line.id, { id: line.id, rel: line.rel, usertime: line.u ?? '' });
        continue;
      }
      kept.delete(line.id);
      if (line.t === 'p') ids.add(line.id);
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
    if (known.length) this.#write(known.map((id) => ({ t: 'a', d: detector, id })));
  }

  /** The files of `detector` set aside and not yet placed, as noted by setAside. */
  setAsideFiles(detector: string): SetAside[] {
    return [...(this.#aside.get(detector)?.values() ?? [])];
  }

  has(detector: string, id: string): boolean {
    return this.#open.get(detector)?.has(id) ?? false;
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
    if (this.#intents.get(detector)?.delete(id)) this.#write([{ t: 'a', d: detector, id }]);
  }

  /** Notes ids as placed, before their acknowledgement is sent. */
  placed(detector: string, ids: string[]): void {
    if (ids.length === 0) return;
    const set = this.#open.get(detector) ?? new Set<string>();
    this.#open.set(detector, set);
    const meant = this.#intents.get(detector);
    const kept = this.#aside.get(detector);
    for (const id of ids) {
      set.add(id);
      meant?.delete(id);
      kept?.delete(id);
    }
    this.#write(ids.map((id) => ({ t: 'p', d: detector, id })));
  }

  /** The agent answered the acknowledgement of these ids (deleted, or kept because changed or gone). */
  answered(detector: string, ids: string[]): void {
    const set = this.#open.get(detector);
    const known = ids.filter((id) => set?.delete(id));
    if (known.length === 0) return;
    if ([...this.#open.values(), ...this.#intents.values(), ...this.#aside.values()].every((s) => s.size === 0) && fstatSync(this.#fd).size > COMPACT_BYTES) {
      ftruncateSync(this.#fd, 0);
      return;
    }
    this.#write(known.map((id) => ({ t: 'a', d: detector, id })));
  }

  /** Ids of `detector` placed whose acknowledgement is not yet answered. */
  unanswered(detector: string): string[] {
    return [...(this.#open.get(detector) ?? [])];
  }

  #write(lines: Line[]): void {
    writeSync(this.#fd, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  close(): void {
    closeSync(this.#fd);
  }
}

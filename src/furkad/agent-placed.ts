// Which agent files furkad has placed but not yet seen acknowledged (SPEC A4): after a crash or a lost
// connection the agent announces them again, and furkad acknowledges them instead of placing them twice.
// One file for all detectors; no fsync, like the outbox: it must outlive the process, and the PPU ramdisk it
// describes does not outlive the machine.
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { readAppendLog } from '../common/append-log.js';

type Line = { t: 'p' | 'a'; d: string; id: string };

/** Truncate the file once nothing is open and it has grown past this. */
const COMPACT_BYTES = 1 << 20;

export class AgentPlaced {
  #fd: number;
  /** Per detector: ids placed, acknowledgement not yet answered. */
  #open: Map<string, Set<string>>;

  private constructor(fd: number, open: Map<string, Set<string>>) {
    this.#fd = fd;
    this.#open = open;
  }

  static open(dir: string): AgentPlaced {
    const { file, lines } = readAppendLog(dir, 'agent-placed.jsonl');
    const open = new Map<string, Set<string>>();
    for (const raw of lines) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue; // a damaged line: at worst one file is placed a second time under its name (same bytes)
      }
      const ids = open.get(line.d) ?? new Set<string>();
      open.set(line.d, ids);
      if (line.t === 'p') ids.add(line.id);
      else ids.delete(line.id);
    }
    return new AgentPlaced(openSync(file, 'a'), open);
  }

  has(detector: string, id: string): boolean {
    return this.#open.get(detector)?.has(id) ?? false;
  }

  /** Notes ids as placed, before their acknowledgement is sent. */
  placed(detector: string, ids: string[]): void {
    if (ids.length === 0) return;
    const set = this.#open.get(detector) ?? new Set<string>();
    this.#open.set(detector, set);
    for (const id of ids) set.add(id);
    this.#write(ids.map((id) => ({ t: 'p', d: detector, id })));
  }

  /** The agent answered the acknowledgement of these ids (deleted, or kept because changed or gone). */
  settled(detector: string, ids: string[]): void {
    const set = this.#open.get(detector);
    const known = ids.filter((id) => set?.delete(id));
    if (known.length === 0) return;
    if ([...this.#open.values()].every((s) => s.size === 0) && fstatSync(this.#fd).size > COMPACT_BYTES) {
      ftruncateSync(this.#fd, 0);
      return;
    }
    this.#write(known.map((id) => ({ t: 'a', d: detector, id })));
  }

  /** Ids of `detector` placed and not yet settled. */
  unsettled(detector: string): string[] {
    return [...(this.#open.get(detector) ?? [])];
  }

  #write(lines: Line[]): void {
    writeSync(this.#fd, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  close(): void {
    closeSync(this.#fd);
  }
}

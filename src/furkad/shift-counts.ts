// What furkad counted for the running shift per detector (files and bytes, the Detectors property and the
// furkad_shift_files metric), kept in state_dir, so that a furkad going on with that shift after a crash
// (shift-resume.ts) goes on counting from there, not from 0. Written when it changed, at most once a second:
// after a SIGKILL the count misses at most the last second's files (README, "Restarts").
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';
import { writeDurably } from '../common/durable-file.js';

const FILE = 'running-shift-counts.json';

export interface DetectorCounts {
  files: number;
  bytes: number;
}

export class ShiftCounts {
  #written = '';
  #failed = '';

  constructor(private readonly stateDir: string, private readonly log: Logger) {}

  /** Keeps the counts of shift `usertime` when they changed since the last call; a failure is said once per cause. */
  keep(usertime: bigint, counts: Array<[string, DetectorCounts]>): void {
    const text = `${JSON.stringify({ usertime: String(usertime), detectors: Object.fromEntries(counts) })}\n`;
    if (text === this.#written) return;
    try {
      writeDurably(path.join(this.stateDir, FILE), text);
      this.#written = text;
      this.#failed = '';
    } catch (e) {
      const why = (e as Error).message;
      if (why !== this.#failed) this.log.warn({ err: why, state_dir: this.stateDir }, 'cannot keep the shift\'s counts: after a crash they would start again from what was kept last');
      this.#failed = why;
    }
  }

  /** The counts kept for shift `usertime` (none: another shift's, or nothing readable). */
  read(usertime: bigint): Map<string, DetectorCounts> {
    const found = new Map<string, DetectorCounts>();
    try {
      const j = JSON.parse(readFileSync(path.join(this.stateDir, FILE), 'utf8')) as { usertime?: unknown; detectors?: Record<string, Partial<DetectorCounts>> };
      if (j.usertime !== String(usertime) || typeof j.detectors !== 'object' || j.detectors === null) return found;
      for (const [id, c] of Object.entries(j.detectors)) {
        if (Number.isSafeInteger(c?.files) && Number.isSafeInteger(c?.bytes) && c.files! >= 0 && c.bytes! >= 0) found.set(id, { files: c.files!, bytes: c.bytes! });
      }
    } catch { /* none kept, or not readable: counted from 0, as before there was a file */ }
    return found;
  }
}

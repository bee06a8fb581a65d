// Where furkad's detectors keep files on the PPU (staging, files set aside for ended shifts) and which detector
// server they came from, recorded in state_dir (root's) so that a furkad started with a changed furkad.conf (a
// detector renamed, its target or transport changed, its section replaced) still finds them (A5, F2, F6).
import { readFileSync } from 'node:fs';
import { writeDurably } from '../common/durable-file.js';
import * as path from 'node:path';
import { markTarget, unmark } from '../common/paths.js';
import type { Logger } from '../common/logger.js';
import type { DetectorConfig, TransportName } from './config.js';

/** One detector's use of one target. */
export interface DetectorPlace {
  id: string;
  transport: TransportName;
  /** The marked target it delivered below (its staging and set-aside files are under it). */
  target: string;
  /** The configured target then: what files placed below `target` were confined to (shift.ts confinement). */
  configuredTarget: string;
  /** The detector server it took files from (originOf). */
  origin: string;
}

/** The detector server a detector takes files from: the same one under another name keeps what it owes. */
export function originOf(d: Pick<DetectorConfig, 'transport' | 'remoteIP' | 'port' | 'module'>): string {
  return d.transport === 'agent' ? `agent://${d.remoteIP}:${d.port}` : `rsync://${d.remoteIP}:${d.port}/${d.module}`;
}

/** `p` is what the configured detector `d` of the same id does now (same transport, same target). */
export function sameAs(p: DetectorPlace, d: DetectorConfig | undefined): boolean {
  return d !== undefined && d.transport === p.transport && unmark(markTarget(d.target)) === unmark(p.target);
}

export class DetectorPlaces {
  #places: DetectorPlace[] = [];
  #saidUnwritable = false;

  private constructor(readonly file: string, private readonly log: Logger) {
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { places?: unknown };
      for (const p of Array.isArray(saved.places) ? saved.places as unknown[] : []) if (isPlace(p)) this.#places.push(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ file, err: (e as Error).message }, 'cannot read where detectors kept files; ignored');
    }
  }

  static open(stateDir: string, log: Logger): DetectorPlaces {
    return new DetectorPlaces(path.join(stateDir, 'detector-places.json'), log);
  }

  get all(): readonly DetectorPlace[] {
    return this.#places;
  }

  /** Recorded (written at once) before the detector keeps anything below the target. */
  note(p: DetectorPlace): void {
    if (this.#places.some((q) => q.id === p.id && q.transport === p.transport && unmark(q.target) === unmark(p.target) && q.origin === p.origin)) return;
    this.#places.push({ id: p.id, transport: p.transport, target: p.target, configuredTarget: p.configuredTarget, origin: p.origin });
    this.#save();
  }

  /** Nothing is kept there any more. */
  forget(p: DetectorPlace): void {
    const before = this.#places.length;
    this.#places = this.#places.filter((q) => q !== p);
    if (this.#places.length !== before) this.#save();
  }

  /** Places the configuration no longer serves as they were: another detector's now, another target, another transport, or none. */
  earlier(detectors: Record<string, DetectorConfig>): DetectorPlace[] {
    return this.#places.filter((p) => !sameAs(p, detectors[p.id]));
  }

  #save(): void {
    try {
      writeDurably(this.file, JSON.stringify({ places: this.#places }), 0o600);
      this.#saidUnwritable = false;
    } catch (e) {
      // Not fatal: only a later furkad with a changed furkad.conf needs it, and then says what it cannot find.
      if (!this.#saidUnwritable) this.log.warn({ file: this.file, err: (e as Error).message }, 'cannot record where a detector keeps files; tried again at the next');
      this.#saidUnwritable = true;
    }
  }
}

function isPlace(o: unknown): o is DetectorPlace {
  const p = o as DetectorPlace | undefined;
  return typeof p === 'object' && p !== null && typeof p.id === 'string' && (p.transport === 'rsync' || p.transport === 'agent')
    && typeof p.target === 'string' && path.isAbsolute(unmark(p.target)) && typeof p.configuredTarget === 'string' && typeof p.origin === 'string';
}

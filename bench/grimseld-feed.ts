// Hands files to a running grimseld through its operator FIFO (G8), the way `echo path > fifo` would, in bulk.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Ppu } from '../test/fixtures/ppu.js';

/** Announces `names` in `dir` (a directory directly below the PPU ramdisk; it is what gets replicated). */
export function feedFifo(ppu: Ppu, dir: string, names: string[]): number {
  const t = performance.now();
  const lines = names.map((n) => `${ppu.ppuRamdisk}/./${dir}/${n}\n`).join('');
  writeFileSync(path.join(ppu.work, 'run', 'files'), lines); // blocks while grimseld reads: fine, it is another process
  return t;
}

// Hands files to a running grimseld: through its operator FIFO (G8), the way `echo path > fifo` would, in bulk;
// or on the bus as furkad does, with their checksums (I1).
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Ppu } from '../test/fixtures/ppu.js';
import { callMethod } from '../src/dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../src/dbus/names.js';
import type { DeliveredFile } from '../src/dbus/intake-interface.js';

/** Announces `names` in `dir` (a directory directly below the PPU ramdisk; it is what gets replicated). */
export function feedFifo(ppu: Ppu, dir: string, names: string[]): number {
  const t = performance.now();
  const lines = names.map((n) => `${ppu.ppuRamdisk}/./${dir}/${n}\n`).join('');
  writeFileSync(path.join(ppu.work, 'run', 'files'), lines); // blocks while grimseld reads: fine, it is another process
  return t;
}

/** Files per Delivered call: furkad hands over a detector's batch at a time; this keeps each message small. */
const DELIVERED_BATCH = 500;

/**
 * Hands `names` in `dir` (below the PPU ramdisk) to grimseld the way furkad does: `Delivered` calls on the bus,
 * into the current shift, each file with its checksum (`checksum`, tagged, as the agent or furkad computed it:
 * files of one set have the same bytes) and its detector. Returns when the first call was made (ms).
 */
export async function feedDelivered(ppu: Ppu, dir: string, names: string[], checksum: string): Promise<number> {
  const [shift] = await ppu.queryStatus(1);
  if (!shift) throw new Error('grimseld has no shift to deliver into');
  const [usertime, uid, gid] = shift;
  const intake = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
  const t = performance.now();
  for (let i = 0; i < names.length; i += DELIVERED_BATCH) {
    const files: DeliveredFile[] = names.slice(i, i + DELIVERED_BATCH).map((n) => [`${ppu.ppuRamdisk}/./${dir}/${n}`, checksum, 'BENCH']);
    await callMethod(intake, 'Delivered', usertime, uid, gid, files);
  }
  return t;
}

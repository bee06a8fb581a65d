// grimseld's memory with many files pending: its only storage is not mounted, so nothing can be copied (G13).
import * as path from 'node:path';
import { licensedPpu } from './licensed-ppu.js';
import { eventually } from '../test/fixtures/files.js';
import { writeSet } from './file-sets.js';
import { feedFifo } from './grimseld-feed.js';
import { usage } from './proc-usage.js';
import { round } from './latency.js';
import type { Mode } from './modes.js';

export interface PendingResult {
  files: number;
  rssIdleMb: number;
  rssPendingMb: number;
  peakRssMb: number;
  /** Seconds from the first FIFO line to all files counted as pending. */
  intakeS: number;
}

export async function pendingSuite(mode: Mode): Promise<PendingResult> {
  const ppu = licensedPpu({ prefix: 'bench-pending', ramdiskBytes: 2 * 2 ** 30 });
  // A directory that is no mount point: grimseld keeps every file pending for it.
  ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), mountpoint: ppu.storageRoot, n_copy_processes: 8 } };
  await ppu.start();
  try {
    const set = writeSet(path.join(ppu.ppuRamdisk, 'pending'), mode.pendingFiles, 16);
    const pid = ppu.grimseld!.proc.child.pid!;
    const idle = usage(pid);
    const t0 = feedFifo(ppu, 'pending', set.names);
    const pendingNow = async (): Promise<number> => (await ppu.queryStatus(-1)).reduce((s, row) => s + Number(row[4]), 0);
    await eventually(async () => (await pendingNow()) >= mode.pendingFiles, 600_000, `grimseld to hold ${mode.pendingFiles} pending files`);
    const intakeS = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 2000)); // let a collection settle: resident memory, not garbage
    const u = usage(pid);
    return { files: mode.pendingFiles, rssIdleMb: round(idle.rssMb), rssPendingMb: round(u.rssMb), peakRssMb: round(u.peakRssMb), intakeS: round(intakeS) };
  } finally {
    await ppu.stop();
  }
}

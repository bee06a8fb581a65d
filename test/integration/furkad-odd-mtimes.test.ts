// A detector file whose mtime rsync prints in an odd form (F1, F2, A5): rsync formats `%M` in a buffer of its own, so
// a year of other than four digits (10000: a detector user's `touch -d`, a broken clock; 999) comes out longer or cut
// short. Found by a reviewer: furkad read such a token as part of the file's name; from a daemon that does not report
// removals (names come only from the itemize lines) the file was taken off the detector and left in staging, unplaced
// and unsaid, and placed into the next furkad's default shift after a restart.
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

const MB = 1024 * 1024;

describe('furkad over rsync: files whose mtime rsync prints longer or cut short (F1, F2)', function () {
  this.timeout(120_000);

  for (const { settleMs, daemon } of [{ settleMs: 0, daemon: 'from a daemon that does not report removals' }, { settleMs: 1000, daemon: 'with settle_ms = 1000' }]) it(`places them in the running shift's directory like any other, ${daemon}`, async () => {
    // Both ramdisks tmpfs, as on the beamline: ext4 cannot keep such an mtime (it clamps it to 1901 or 2446), and a copy
    // settling there would never match its source (settle_ms compares them: known, not mended, README).
    const ppu = new Ppu({ prefix: 'ppu-odd-mtime', transport: 'rsync', detectorRamdiskBytes: 50 * MB, ramdiskBytes: 50 * MB,
      ...(settleMs ? { detectorConf: { '1MF': { settle_ms: settleMs } } } : { rsyncd: { '1MF': { reportRemovals: false } } }) });
    await ppu.start();
    try {
      await ppu.startShift(500, 501, []);
      const root = ppu.detectorRamdisks['1MF']!;
      const files = [
        writeImage(root, 'run1/y10000.cbf', 1024, new Date(Date.UTC(10000, 0, 1))),
        writeImage(root, 'run1/y999.cbf', 1024, new Date(Date.UTC(999, 5, 1))),
        writeImage(root, 'run1/normal.cbf', 1024),
      ];
      const at = (rel: string): string => path.join(ppu.ppuRamdisk, '1mf/500_501', rel);
      await eventually(() => files.every((f) => existsSync(at(f.rel))), 30_000, 'every file placed in the shift directory');
      await eventually(() => listFiles(root).length === 0, 20_000, 'every source taken off the detector');
      assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')), [], 'nothing left in staging');
    } finally {
      await ppu.stop();
    }
  });
});

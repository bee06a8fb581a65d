// A PPU ramdisk out of inodes, with bytes to spare, is said as such (F10, S4): before 2026-12-06 furkad said a file
// "does not fit in the 500000000 bytes free", and `df -h` showed plenty of room (hostile tester h15).
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { fillInodes, mountTmpfs } from '../fixtures/tmpfs.js';

for (const transport of ['agent', 'rsync'] as const) {
  describe(`furkad over ${transport} and a PPU ramdisk out of inodes (F10)`, function () {
    this.timeout(180_000);
    let ppu: Ppu;
    before(async () => {
      ppu = new Ppu({ prefix: `ppu-inodes-${transport}`, transport });
      mountTmpfs(ppu.ppuRamdisk, 64 << 20, { inodes: 400 });
      await ppu.start();
    });
    after(async () => ppu?.stop());

    it('says that the ramdisk is out of inodes, keeps the file on the detector, and delivers it once inodes are free', async () => {
      const detector = ppu.detectorRamdisks['1MF']!;
      const warm = writeImage(detector, 'warm/w.cbf', 1000);
      const placed = (rel: string): string => path.join(ppu.ppuRamdisk, '1mf', '1000_1000', rel);
      await eventually(() => existsSync(placed(warm.rel)), 30_000, 'delivering');
      const fill = path.join(ppu.ppuRamdisk, '.fill');
      mkdirSync(fill);
      fillInodes(fill);
      const f = writeImage(detector, 'later/f.cbf', 2000);
      let shown = '';
      await eventually(async () => {
        const r = (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((x) => x[0] === '1MF')!;
        shown = r[2];
        return /the PPU ramdisk is out of inodes \(0 of \d+ free, see df -i; \d+ bytes are free\)/.test(shown);
      }, 60_000, 'the reason shown in Detectors').catch((e: Error) => { throw new Error(`${e.message}: ${shown}`); });
      assert.doesNotMatch(shown, /does not fit in the \d+ bytes free/);
      assert.ok(existsSync(path.join(detector, f.rel)), 'the file stays on the detector');
      rmSync(fill, { recursive: true });
      await eventually(() => existsSync(placed(f.rel)), 60_000, 'delivered once inodes are free');
    });
  });
}

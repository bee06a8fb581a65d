// Staging keeps no empty copy of the source directories pulled (F1, F2): found by a long-run tester, 106 empty
// run_NNNN directories in `.furkad-staging/1MF/` after 30 minutes, surviving restarts.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

/** Every directory below `root`, relative to it. */
function dirsBelow(root: string, under = ''): string[] {
  const here = path.join(root, under);
  if (!existsSync(here)) return [];
  return readdirSync(here, { withFileTypes: true }).filter((e) => e.isDirectory())
    .flatMap((e) => [path.join(under, e.name), ...dirsBelow(root, path.join(under, e.name))]);
}

for (const settleMs of [0, 500]) {
  describe(`furkad over rsync, settle_ms = ${settleMs}: staging after placing (F1, F2)`, function () {
    this.timeout(120_000);
    let ppu: Ppu;

    before(async () => {
      ppu = await new Ppu({ prefix: `ppu-stgdirs${settleMs}`, ...(settleMs > 0 ? { detectorConf: { '1MF': { settle_ms: settleMs } } } : {}) }).start();
    });
    after(async () => {
      await ppu?.stop();
    });

    it('removes the directories placing emptied in staging, and the empty ones an earlier furkad left, but no file', async () => {
      await ppu.startShift(560, 561);
      const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF');
      // With settle_ms the first runs copy beside staging: their directories go once the copies are taken, too.
      const settling = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '.settling', '1MF');
      const usr = path.join(ppu.ppuRamdisk, '1mf', '560_561');
      const det = ppu.detectorRamdisks['1MF']!;
      const names: string[] = [];
      for (let run = 1; run <= 6; run++) {
        for (let i = 0; i < 3; i++) {
          const rel = `run_${String(run).padStart(4, '0')}/sub/img_${i}.cbf`;
          writeImage(det, rel, 20_000);
          names.push(rel);
        }
        await eventually(() => names.every((rel) => existsSync(path.join(usr, rel))), 20_000, `run ${run}'s files placed`);
      }
      await ppu.quiescent();
      assert.deepEqual(listFiles(staging), [], 'every file placed');
      assert.deepEqual(dirsBelow(staging), [], 'no directory left in staging');
      assert.deepEqual(dirsBelow(settling), [], 'none left among the copies settling');
      assert.ok(existsSync(staging), 'staging itself stays');
      assert.deepEqual(listFiles(det), [], 'every source removed');

      // What an earlier furkad left (empty run directories), and a file of staging's: the empty ones go at the
      // restart, the file's directory stays until it is placed.
      await ppu.killFurkad();
      for (let run = 7; run <= 9; run++) mkdirSync(path.join(staging, `run_${String(run).padStart(4, '0')}`, 'a', 'b'), { recursive: true });
      if (settleMs > 0) mkdirSync(path.join(settling, 'run_0011', 'a'), { recursive: true });
      mkdirSync(path.join(staging, 'kept'), { recursive: true });
      writeFileSync(path.join(staging, 'kept', 'left.cbf'), 'x');
      // Killed, furkad goes on with the shift it ran (F6).
      await ppu.startFurkad();
      await eventually(() => existsSync(path.join(usr, 'kept', 'left.cbf')), 20_000, 'the leftover placed');
      writeImage(det, 'run_0010/img.cbf', 20_000);
      await eventually(() => existsSync(path.join(usr, 'run_0010', 'img.cbf')), 20_000, 'a new file placed');
      await ppu.quiescent();
      assert.deepEqual(dirsBelow(staging), [], 'no directory left in staging after the restart either');
      assert.deepEqual(dirsBelow(settling), [], 'nor among the copies settling');
    });
  });
}

// furkad's state_dir full, with real furka-agents and rsync daemons (F2, F10, A4): furkad stays up, says which
// directory is full, and loses no file; once there is room again it resumes by itself, without a restart. Found by a
// hostile tester: over the agent the placement record's ENOSPC escaped a run and ended furkad, at every restart; and
// after room was freed nothing more moved until furkad was restarted.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';

for (const transport of ['agent', 'rsync'] as const) {
  describe(`furkad with a full state_dir (${transport}; F2, F10, A4)`, function () {
    this.timeout(180_000);

    it('stays up, names its state_dir, loses no file, and resumes by itself once there is room again (F10, F2, A4)', async () => {
      const ppu = new Ppu({ prefix: `ppu-fstate-${transport}`, transport });
      const state = path.join(ppu.work, 'furkad-state-disk');
      mountTmpfs(state, 32 * 1024);
      ppu.opts.furkad = { state_dir: state };
      await ppu.start();
      try {
        await ppu.startShift(4300, 4301, []);
        const det = ppu.detectorRamdisks['1MF']!;
        // Fill the state_dir's file system with a file of ours, leaving a few records' room.
        const filler = path.join(state, 'filler');
        try {
          execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1024', 'count=64'], { stdio: 'ignore' });
        } catch {
          // dd ends with ENOSPC once it is full: that is the point
        }
        const names = Array.from({ length: 300 }, (_, i) => `full/f${String(i).padStart(3, '0')}.img`);
        for (const [i, rel] of names.entries()) {
          const p = path.join(det, rel);
          mkdirSync(path.dirname(p), { recursive: true });
          writeFileSync(p, `image ${i}\n`);
        }
        await ppu.furkad!.proc.said(/state_dir/, 30_000);
        await new Promise((r) => setTimeout(r, 3000)); // several runs against the full state_dir
        assert.equal(ppu.furkad!.proc.child.exitCode, null, `furkad still runs:\n${ppu.furkad!.proc.output().slice(-3000)}`);
        assert.doesNotMatch(ppu.furkad!.proc.output(), /^Error: ENOSPC/m, 'no uncaught error');
        // On the detector, placed, or held in furkad's staging (rsync removed its source) until it can be noted.
        const onPpu = listFiles(ppu.ppuRamdisk);
        const lost = names.filter((rel) => !existsSync(path.join(det, rel)) && !onPpu.some((f) => f.endsWith(`/${rel}`)));
        assert.deepEqual(lost, [], 'no file lost');

        // Room again: furkad resumes by itself, no restart. Every file placed once under its name, its source
        // removed from the detector, nothing left in staging, handed over to grimseld, the error cleared.
        execFileSync('rm', ['-f', filler]);
        const usr = path.join(ppu.ppuRamdisk, '1mf', '4300_4301');
        await eventually(() => names.every((rel) => existsSync(path.join(usr, rel))), 60_000,
          `every file placed after room was freed:\n${ppu.furkad!.proc.output().slice(-3000)}`);
        await eventually(() => listFiles(det).length === 0, 60_000, 'every source removed from the detector');
        assert.deepEqual(listFiles(usr), [...names].sort(), 'each file placed once');
        await eventually(() => listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')).length === 0, 30_000, 'nothing left in staging');
        await eventually(async () => (await ppu.queryStatus(-1)).some((r) => r[1] === 4300 && r[5] === 300n && r[4] === 0n), 60_000,
          'grimseld to have copied all 300, nothing pending');
        await eventually(async () => (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((r) => r[0] === '1MF')![2] === '', 30_000,
          'lastError cleared');
        // What was full is named as furkad's own state_dir, never blamed on grimseld.
        assert.doesNotMatch(ppu.furkad!.proc.output(), /keeping files until it answers/, 'grimseld not blamed for a full state_dir');
        assert.equal(ppu.furkad!.proc.child.exitCode, null, 'furkad still runs');
      } finally {
        await ppu.stop();
      }
    });
  });
}

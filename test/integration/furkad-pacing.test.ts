// furkad's pacing (F5): runs counted in the real rsync daemons' logs, compared between detectors as ratios.
import { strict as assert } from 'node:assert';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { overlaps, testIssuer, timedRsync } from '../fixtures/license.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('furkad pacing: minpause and interrun_pause (F5)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let keyDir: string;
  let timed: ReturnType<typeof timedRsync>;

  /** Connections the detector's rsync daemon has logged: one per furkad run. */
  const runs = (id: string): number =>
    readFileSync(path.join(ppu.work, `rsyncd-${ppu.rsyncd[id]!.port}.log`), 'utf8').split('\n').filter((l) => /connect from/.test(l)).length;

  before(async () => {
    keyDir = tempDir('furkad-license');
    const issuer = testIssuer(keyDir);
    timed = timedRsync(keyDir);
    // Licensed: detectors run in parallel, so one detector's pace does not shape another's.
    ppu = await new Ppu({
      prefix: 'ppu-pacing', detectors: ['1MF', '2MF', '3MF'], furkadEnv: issuer.env,
      furkad: { licensekey: issuer.issue(path.join(keyDir, 'license.key')), rsync_path: timed.path },
      detectorConf: { '2MF': { minpause: 500 }, '3MF': { interrun_pause: 1500 } },
    }).start();
  });
  after(async () => {
    await ppu?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('waits minpause between runs, and interrun_pause on top only after a run that moved files', async () => {
    const ids = ['1MF', '2MF', '3MF'];
    const before = ids.map(runs);
    await sleep(3000);
    const idle = ids.map((id, i) => runs(id) - before[i]!);
    assert.ok(idle[0]! >= 3 * idle[1]!, `minpause 10 ms runs far more often than minpause 500 ms: ${idle.join(' ')}`);
    assert.ok(idle[1]! >= 2 && idle[1]! <= 8, `minpause 500 ms: about 6 runs in 3 s: ${idle[1]}`);
    assert.ok(3 * idle[2]! >= idle[0]!, `interrun_pause does not slow idle runs: ${idle.join(' ')}`);

    const start = ids.map(runs);
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      const rel = `paced/f_${String(i).padStart(3, '0')}.cbf`;
      writeImage(ppu.detectorRamdisks['1MF']!, rel, 1000);
      writeImage(ppu.detectorRamdisks['3MF']!, rel, 1000);
      names.push(rel);
      await sleep(100);
    }
    const busy = ids.map((id, i) => runs(id) - start[i]!);
    assert.ok(4 * busy[2]! <= busy[0]!, `interrun_pause 1500 ms spaces runs that move files: ${busy.join(' ')}`);
    const usr = (id: string) => path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
    await eventually(() => listFiles(usr('3MF')).length === names.length && listFiles(usr('1MF')).length === names.length,
      20_000, 'every file of both detectors, the paced one in fewer, larger runs');
    assert.ok(overlaps(timed.intervals()) > 0, 'licensed: runs of different detectors overlap (F8)');
  });
});

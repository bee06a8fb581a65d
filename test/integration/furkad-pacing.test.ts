// furkad's pacing (F5): the pauses between runs of the real rsync client (timed by a wrapper), per detector.
import { strict as assert } from 'node:assert';
import { rmSync } from 'node:fs';
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
    // Pauses, not counts of runs: a loaded machine makes every run longer, never a pause shorter.
    const pauses = (id: string, from: bigint): number[] => {
      const runs = timed.intervals(ppu.rsyncd[id]!.port).filter(([start]) => start >= from).sort((a, b) => (a[0] < b[0] ? -1 : 1));
      return runs.slice(1).map(([start], i) => Number(start - runs[i]![1]) / 1e6);
    };
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const now = (): bigint => BigInt(Date.now()) * 1_000_000n;
    const ids = ['1MF', '2MF', '3MF'];
    const idleFrom = now();
    await eventually(() => ids.every((id) => pauses(id, idleFrom).length >= 3), 30_000, 'four idle runs of each detector');
    const [fast, slow, paced] = ids.map((id) => pauses(id, idleFrom));
    assert.ok(Math.min(...slow!) >= 495, `minpause 500 ms: never less between two runs: ${slow!.map(Math.round).join(' ')}`);
    assert.ok(median(slow!) < 1500, `minpause 500 ms: not more when idle (no interrun_pause there): ${slow!.map(Math.round).join(' ')}`);
    assert.ok(fast!.length >= 2 && median(fast!) < 400, `minpause 10 ms: runs follow each other closely: ${fast!.map(Math.round).join(' ')}`);
    assert.ok(paced!.length >= 2 && median(paced!) < 400, `interrun_pause does not slow idle runs: ${paced!.map(Math.round).join(' ')}`);

    const names: string[] = [];
    let busyFrom = 0n;
    for (let i = 0; i < 30; i++) {
      const rel = `paced/f_${String(i).padStart(3, '0')}.cbf`;
      writeImage(ppu.detectorRamdisks['1MF']!, rel, 1000);
      writeImage(ppu.detectorRamdisks['3MF']!, rel, 1000);
      names.push(rel);
      // From the first file on, every run of 3MF has files to move.
      if (i === 0) busyFrom = now();
      await sleep(100);
    }
    // A file every 100 ms: each run of 3MF moves some, so each is followed by interrun_pause; 1MF's are not paced so.
    await eventually(() => pauses('3MF', busyFrom).length >= 1, 20_000, 'two runs of 3MF while files come');
    const busy = pauses('3MF', busyFrom);
    assert.ok(busy.length >= 1 && median(busy) >= 1495, `interrun_pause 1500 ms spaces runs that move files: ${busy.map(Math.round).join(' ')}`);
    const unpaced = pauses('1MF', busyFrom);
    assert.ok(unpaced.length >= 2 && median(unpaced) < 1000, `minpause alone between 1MF's runs that move files: ${unpaced.map(Math.round).join(' ')}`);
    const usr = (id: string) => path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
    await eventually(() => listFiles(usr('3MF')).length === names.length && listFiles(usr('1MF')).length === names.length,
      20_000, 'every file of both detectors, the paced one in fewer, larger runs');
    assert.ok(overlaps(timed.intervals()) > 0, 'licensed: runs of different detectors overlap (F8)');
  });
});

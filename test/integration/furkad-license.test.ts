// furkad with a tampered license key: single-thread mode, its reason on the bus and in the log, and every
// detector still served (F8); one detector with remove_source = no (F2).
import { strict as assert } from 'node:assert';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { overlaps, testIssuer, timedRsync, type timedRsync as TimedRsync } from '../fixtures/license.js';

describe('furkad with an invalid license key (F8)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let keyDir: string;
  let rsync: ReturnType<typeof TimedRsync>;

  before(async () => {
    keyDir = tempDir('furkad-license');
    const issuer = testIssuer(keyDir);
    const key = issuer.issue(path.join(keyDir, 'license.key'));
    // Someone moved the key to another holder by hand: the signature no longer matches.
    writeFileSync(key, readFileSync(key, 'utf8').replace('holder = Test Beamline', 'holder = Another Beamline'));
    rsync = timedRsync(keyDir);
    ppu = await new Ppu({ prefix: 'ppu-license', detectors: ['1MF', '2MF'], furkadEnv: issuer.env,
      furkad: { licensekey: key, rsync_path: rsync.path }, detectorConf: { '2MF': { remove_source: 'no' } } }).start();
  });
  after(async () => {
    await ppu?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('says why on the bus and in the log, and serves both detectors one transfer at a time', async () => {
    const [licensed, reason] = await ppu.furkaProperty<[boolean, string]>('License');
    assert.equal(licensed, false);
    assert.match(reason, /license\.key has a bad signature/);
    await ppu.furkad!.proc.said(/no valid license: single-thread mode.*bad signature|bad signature.*no valid license: single-thread mode/);
    for (let i = 0; i < 10; i++) {
      writeImage(ppu.detectorRamdisks['1MF']!, `s/a_${i}.cbf`, 50_000);
      writeImage(ppu.detectorRamdisks['2MF']!, `s/b_${i}.cbf`, 50_000);
    }
    await eventually(() => listFiles(path.join(ppu.ppuRamdisk, '1mf', '1000_1000')).length === 10 &&
      listFiles(path.join(ppu.ppuRamdisk, '2mf', '1000_1000')).length === 10, 20_000, 'both detectors served');
    await eventually(() => rsync.intervals().length > 40, 20_000, 'a few dozen idle runs of both detectors');
    const runs = rsync.intervals();
    assert.equal(overlaps(runs), 0, 'never two rsync runs at the same time');

    // 2MF keeps its sources (remove_source = no): each run lists them again, but only new files are handed over.
    assert.equal(listFiles(ppu.detectorRamdisks['2MF']!).length, 10, '2MF sources kept');
    const rows = await ppu.furkaProperty<Array<[string, string, string, bigint, bigint, bigint]>>('Detectors');
    assert.deepEqual(rows.map((r) => [r[0], r[3]]), [['1MF', 10n], ['2MF', 10n]], 'each file counted once, after dozens of runs');
  });
});

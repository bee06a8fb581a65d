// furkad without a license (one transfer at a time) and a detector whose link goes silent in the middle of a
// file: the run is ended, said, and the other detector goes on; a run's failure names rsync's cause (F1, F8, F10).
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';
import { SilentProxy } from '../fixtures/silent-proxy.js';

type Row = [string, string, string, bigint, bigint, bigint];

describe('furkad and a detector link gone silent mid-file (F1, F8, F10)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let proxy: SilentProxy;

  before(async () => {
    // 2MF reaches its rsync daemon through a link that can go silent. rsync_timeout_s = 5: a silent run ends soon (at 2, rsync's own timeout races its keep-alives and may fire).
    proxy = await SilentProxy.start(() => ppu.rsyncd['2MF']!.port);
    ppu = new Ppu({ prefix: 'ppu-stall', detectors: ['1MF', '2MF', '3MF', '4MF'], transport: { '1MF': 'agent' },
      furkad: { rsync_timeout_s: 5 },
      detectorConf: { '2MF': { port: proxy.port }, '3MF': { module: 'nosuchmodule' }, '4MF': { remoteIP: 'no-such-detector.invalid' } } });
    await ppu.start();
  });
  after(async () => {
    proxy?.release();
    await ppu?.stop();
    await proxy?.close();
  });

  const detectors = (): Promise<Row[]> => ppu.furkaProperty<Row[]>('Detectors');

  it('ends the silent run, says so, keeps serving the other detector, and takes the file once the link is back (F1, F8, F10)', async () => {
    const [licensed] = await ppu.furkaProperty<[boolean, string]>('License');
    assert.equal(licensed, false, 'single-thread mode: one transfer at a time across detectors');
    proxy.silenceAfter = 1 << 20;
    const big = writeImage(ppu.detectorRamdisks['2MF']!, 'run/big.bin', 16 << 20);
    await eventually(() => proxy.silenced > 0, 30_000, "2MF's link to go silent in the middle of the file");
    await eventually(async () => (await detectors()).some((r) => r[0] === '2MF' && r[1] === 'retrying' &&
      /^rsync exit 30: nothing received from the detector's rsync daemon for 5 s \(rsync_timeout_s\), run ended by furkad/.test(r[2])), 30_000, '2MF retrying, saying why');
    await ppu.furkad!.proc.said(/"detector":"2MF".*detector unreachable or failing, retrying with back-off: rsync exit 30: nothing received from the detector's rsync daemon/);

    // The link stays silent (each retry goes silent again); the healthy detector is served meanwhile.
    const names: string[] = [];
    for (let i = 0; i < 20; i++) names.push(writeImage(ppu.detectorRamdisks['1MF']!, `run/img_${String(i).padStart(2, '0')}.cbf`, 20_000).rel);
    const usr1 = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    await eventually(() => listFiles(usr1).length === names.length, 60_000, "1MF's files while 2MF's link is silent");
    assert.deepEqual(listFiles(usr1), names);
    assert.deepEqual(listFiles(ppu.detectorRamdisks['2MF']!), ['run/big.bin'], 'the file being received stays on the detector');

    proxy.release();
    const usr2 = path.join(ppu.ppuRamdisk, '2mf', '1000_1000');
    await eventually(() => listFiles(usr2).length === 1, 60_000, "2MF's file once the link is back");
    assert.deepEqual(listFiles(usr2), ['run/big.bin'], 'placed once');
    assert.equal(sha256File(readFileSync(path.join(usr2, 'run/big.bin'))), big.sha256, 'intact');
    assert.deepEqual(listFiles(ppu.detectorRamdisks['2MF']!), [], 'its source removed once it arrived');
    await eventually(async () => (await detectors()).some((r) => r[0] === '2MF' && r[1] === 'idle' && r[2] === '' && r[3] === 1n), 30_000, '2MF idle again');
    const temp = path.join(ppu.ppuRamdisk, '2mf', '.furkad-staging', '.rsync-temp');
    assert.deepEqual(readdirSync(temp).flatMap((d) => readdirSync(path.join(temp, d))), [], 'no partial copy left in the temp directory');
  });

  it("names the cause of a failed run (rsync's, or a name that does not resolve), not only rsync's closing line (F10)", async () => {
    await eventually(async () => (await detectors()).some((r) => r[0] === '3MF' && r[1] === 'retrying'), 30_000, '3MF failing');
    await eventually(async () => (await detectors()).some((r) => r[0] === '4MF' && r[1] === 'retrying'), 30_000, '4MF failing');
    const rows = await detectors();
    assert.match(rows.find((r) => r[0] === '3MF')![2], /^rsync exit 5: @ERROR: Unknown module 'nosuchmodule' \(error starting client-server protocol\)$/);
    // Without a license the name is looked up before the run would take the one transfer slot (host-lookup.ts).
    assert.match(rows.find((r) => r[0] === '4MF')![2],
      /^the name 'no-such-detector\.invalid' does not resolve \(getent ahosts no-such-detector\.invalid: no address\): no such host, or its DNS servers failed; retrying, without taking the single transfer slot meanwhile$/);
  });
});

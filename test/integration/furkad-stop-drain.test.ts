// furkad stopped while a large file is in flight on a slow link, as an upgrade's %pre common, a reboot or
// `systemctl stop furkad` do (S1, S6, A5, F10): the stop's drain ends that run at its bound, which is furkad's
// doing, not the detector's failure. Before, each such stop logged an error saying the detector was unreachable or
// failing (rsync's "received SIGUSR1"), found by a hostile tester upgrading the RPMs during a transfer.
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';

describe('furkad stopped with a large file in flight (S1, S6, A5, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  /** rsync slowed down to 1 MB/s: a 40 MB file is still in flight when a 10 s drain ends. */
  let slow: string;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-stop-drain' }).start();
    slow = path.join(ppu.work, 'slow-rsync');
    writeFileSync(slow, '#!/bin/sh\nexec rsync --bwlimit=1000 "$@"\n');
    chmodSync(slow, 0o755);
  });
  after(async () => ppu?.stop());

  it('ends the run at the drain bound without logging the detector unreachable, and the next furkad delivers the file once', async () => {
    await ppu.restartFurkadWith({ rsync_path: slow });
    const detector = ppu.detectorRamdisks['1MF']!;
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
    const big = writeImage(detector, 'slow/big.img', 40_000_000);
    await eventually(() => listFiles(staging).some((f) => /(^|\/)\.?big\.img\.[A-Za-z0-9]{6}$/.test(f)), 30_000,
      'an rsync temp file of big.img (the transfer in flight)');
    // SIGTERM to furkad alone, as systemd's KillMode=mixed sends it.
    const furkad = ppu.furkad!;
    const code = await furkad.proc.stop(60_000, 'leader');
    ppu.furkad = undefined;
    const out = furkad.proc.output();
    assert.equal(code, 0, out.slice(-3000));
    assert.match(out, /the drain ran out of time \(10 s\) at the stop/);
    assert.doesNotMatch(out, /detector unreachable or failing/, 'no detector failure logged for the run the stop ended');
    assert.ok(existsSync(path.join(detector, big.rel)), 'the file stays on the detector');

    ppu.opts.furkad = { ...ppu.opts.furkad, rsync_path: 'rsync' };
    ppu.writeConfigs();
    await ppu.startFurkad();
    const placed = path.join(ppu.ppuRamdisk, '1mf', '1000_1000', big.rel);
    await eventually(() => existsSync(placed), 60_000, 'big.img delivered by the next furkad');
    assert.equal(sha256File(readFileSync(placed)), big.sha256);
    await eventually(() => !existsSync(path.join(detector, big.rel)), 30_000, 'its source removed from the detector');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '1000_1000')).filter((f) => f.includes('big.img')), [big.rel], 'delivered once');
  });

  it("ends the run at a shift change's drain bound without logging the detector unreachable, and delivers the file once, to the ending shift", async () => {
    // The same slow link at a shift change: the change's drain ends the run after 10 s. That is furkad's doing too,
    // so no error saying the detector is unreachable, and no back-off (found by a hostile tester, session 35 h1).
    await ppu.restartFurkadWith({ rsync_path: slow });
    const detector = ppu.detectorRamdisks['1MF']!;
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
    const big = writeImage(detector, 'slow/big-at-change.img', 40_000_000);
    await eventually(() => listFiles(staging).some((f) => /(^|\/)\.?big-at-change\.img\.[A-Za-z0-9]{6}$/.test(f)), 30_000,
      'an rsync temp file of big-at-change.img (the transfer in flight)');
    // Small files completed before the call, behind the large one in rsync's list (sorted by name): the drain's run
    // lists them, but its bound ends it in the large file (found by a hostile tester: they went to the new shift).
    const small = Array.from({ length: 5 }, (_, i) => writeImage(detector, `slow/zz-small-${i}.img`, 10_000));
    const mark = ppu.furkad!.proc.output().length;
    await ppu.startShift(1700, 1701);
    const out = (): string => ppu.furkad!.proc.output().slice(mark);
    // Up to 10 s: a change's steps keep within 20 s of its call (less if its run in flight took over 7 s to end).
    assert.match(out(), /the drain ran out of time \((10|[5-9](\.\d)?) s\) at the shift change/);
    // Placed into the ended shift's directory, each file is deleted from the ramdisk once copied (G5): look in both.
    const ended = (rel: string): string | undefined => ppu.deliveredAt(path.join('1mf', '1000_1000', rel));
    const onPpu = (): string => `PPU ramdisk: ${listFiles(path.join(ppu.ppuRamdisk, '1mf')).join(' ')}; internal storage: ${listFiles(path.join(ppu.storageRoot, 'internal')).join(' ')}`;
    await eventually(() => ended(big.rel) !== undefined, 120_000, "big-at-change.img delivered into the ending shift's directory")
      .catch((e: Error) => { throw new Error(`${e.message}; ${onPpu()}; furkad said:\n${out().slice(-6000)}`); });
    assert.equal(sha256File(ppu.readDelivered(path.join('1mf', '1000_1000', big.rel))), big.sha256);
    await eventually(() => !existsSync(path.join(detector, big.rel)), 30_000, 'its source removed from the detector');
    assert.doesNotMatch(out(), /detector unreachable or failing/, 'no detector failure logged for the run the change ended');
    for (const f of small) {
      await eventually(() => ended(f.rel) !== undefined, 30_000, `${f.rel}, completed before the call, in the ending shift's directory`)
        .catch((e: Error) => { throw new Error(`${e.message}; ${onPpu()}; furkad said:\n${out().slice(-6000)}`); });
      assert.equal(ppu.statDelivered(path.join('1mf', '1000_1000', f.rel)).uid, 1000, `${f.rel} owned by the ending shift`);
    }
    const inNewShift = [path.join(ppu.ppuRamdisk, '1mf'), path.join(ppu.storageRoot, 'internal', '1mf')].flatMap((d) => listFiles(d))
      .filter((f) => f.includes('1700_1701') && /zz-small|big-at-change/.test(f));
    assert.deepEqual(inNewShift, [], 'none in the new shift, on the ramdisk or the storage');
  });

  it('gives StartShift calls in quick succession shorter drains, each from its call, and keeps the files of before the first call the ending shift\'s (h5 F-2)', async () => {
    // Three calls at once while a large file is in flight on a slow link: each waited a full drain after the one
    // before it (17.5, 33 and 50 s: busctl gives up after 25 s). A change is now timed from its call: one that
    // waited its turn cuts its run and ends its drain sooner, and what that leaves stays the ending shift's (A5).
    await ppu.restartFurkadWith({ rsync_path: slow });
    await ppu.startShift(1710, 1711);
    const detector = ppu.detectorRamdisks['1MF']!;
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
    const big = writeImage(detector, 'queue/big-queued.img', 40_000_000);
    await eventually(() => listFiles(staging).some((f) => /(^|\/)\.?big-queued\.img\.[A-Za-z0-9]{6}$/.test(f)), 30_000,
      'an rsync temp file of big-queued.img (the transfer in flight)');
    const small = Array.from({ length: 3 }, (_, i) => writeImage(detector, `queue/zz-before-${i}.img`, 10_000));
    const mark = ppu.furkad!.proc.output().length;
    await Promise.all([ppu.startShift(1712, 1713), ppu.startShift(1714, 1715), ppu.startShift(1716, 1717)]);
    const out = ppu.furkad!.proc.output().slice(mark);
    const bounds = [...out.matchAll(/the drain ran out of time \(([0-9.]+) s\) at the shift change/g)].map((m) => Number(m[1]));
    assert.equal(bounds.length, 3, `a drain out of time at each change:\n${out.slice(-6000)}`);
    // The first, not queued, drains for up to 10 s (less only if its run in flight took over 7 s to end).
    assert.ok(bounds[0]! >= 5 && bounds[1]! < bounds[0]! && bounds[2]! < bounds[0]!, `the queued changes drain for less: ${bounds.join(', ')} s`);
    assert.match(out, /waiting for the shift change before it \d+\.\d s/, 'the warning names the wait for the change before');
    assert.doesNotMatch(out, /detector unreachable or failing/);
    // Every file completed before the first call is shift 1710's, whichever of the three changes fetched it.
    const ended = (rel: string): string | undefined => ppu.deliveredAt(path.join('1mf', '1710_1711', rel));
    for (const f of [big, ...small]) {
      await eventually(() => ended(f.rel) !== undefined, 120_000, `${f.rel}, completed before the calls, in shift 1710's directory`)
        .catch((e: Error) => { throw new Error(`${e.message}; PPU ramdisk: ${listFiles(path.join(ppu.ppuRamdisk, '1mf')).join(' ')}; internal: ${listFiles(path.join(ppu.storageRoot, 'internal', '1mf')).join(' ')}`); });
      assert.equal(ppu.statDelivered(path.join('1mf', '1710_1711', f.rel)).uid, 1710, `${f.rel} owned by shift 1710`);
    }
    assert.equal(sha256File(ppu.readDelivered(path.join('1mf', '1710_1711', big.rel))), big.sha256);
    const elsewhere = [path.join(ppu.ppuRamdisk, '1mf'), path.join(ppu.storageRoot, 'internal', '1mf')].flatMap((d) => listFiles(d))
      .filter((f) => /big-queued|zz-before/.test(f) && !f.includes('1710_1711'));
    assert.deepEqual(elsewhere, [], 'none in a later shift');
  });
});

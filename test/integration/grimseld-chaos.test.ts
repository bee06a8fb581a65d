// G12: grimseld SIGKILLed at random moments while files stream in, 20+ times; afterwards every
// storage holds every delivered file byte for byte, nothing partial under a final name, counts add up.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';

describe('grimseld chaos: SIGKILL during a stream (G12)', function () {
  this.timeout(600_000);
  let ppu: Ppu;
  const storages = ['internal', 'extra'];

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-chaos' });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 4 },
      'storage.extra': { type: 'OPTIONAL', target: path.join(ppu.storageRoot, 'extra'), n_copy_processes: 2 },
    };
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('loses nothing and counts right after 20 kills at random moments', async () => {
    const uid = 700;
    const gid = 701;
    await ppu.startShift(uid, gid, []);
    const detector = ppu.detectorRamdisks['1MF']!;
    const written: WrittenFile[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 400; i++) {
        written.push(writeImage(detector, `run${i % 4}/img_${String(i).padStart(5, '0')}.cbf`, 20_000 + ((i * 7919) % 300_000)));
        await new Promise((r) => setTimeout(r, 15));
      }
      writing = false;
    })();

    let kills = 0;
    while (kills < 20 || writing) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 400));
      await ppu.killGrimseld();
      kills++;
      // Sometimes stay down a while: furkad must hold its hand-over and resend.
      if (kills % 5 === 0) await new Promise((r) => setTimeout(r, 1000));
      await ppu.startGrimseld();
    }
    await writer;

    const usr = `1mf/${uid}_${gid}`;
    await eventually(async () => {
      const rows = (await ppu.queryStatus(1)).filter((r) => r[1] === uid);
      return rows.length === storages.length && rows.every((r) => r[4] === 0n && r[5] === BigInt(written.length));
    }, 180_000, `every storage to report ${written.length} copied and 0 pending`);

    const rows = (await ppu.queryStatus(1)).filter((r) => r[1] === uid);
    for (const r of rows) {
      assert.deepEqual([r[3], r[4], r[5], r[6]], [r[3], 0n, BigInt(written.length), 0n], `counts of ${r[3]}: pending 0, copied all once, failed 0`);
    }
    for (const s of storages) {
      const root = path.join(ppu.storageRoot, s, usr);
      const onDisk = listFiles(root);
      assert.deepEqual(onDisk.filter((f) => !f.endsWith('.cbf')), [], `no temp file left on ${s}`);
      assert.equal(onDisk.length, written.length, `${s} holds exactly the delivered files`);
      for (const f of written) {
        assert.equal(sha256File(readFileSync(path.join(root, f.rel))), f.sha256, `${s}/${f.rel} byte-identical`);
      }
    }
    assert.deepEqual(listFiles(detector), [], 'the detector ramdisk is drained');
  });
});

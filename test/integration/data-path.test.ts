// End to end with the real parts: rsync daemon → furkad → PPU ramdisk → grimseld → INTERNAL storage.
// F1, F2, F3, F4, F6, F7, G3, G4, G9, S2.
import { strict as assert } from 'node:assert';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';

describe('data path: detector → furkad → grimseld → internal storage', function () {
  this.timeout(120_000);
  let ppu: Ppu;

  before(async () => {
    ppu = await new Ppu().start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('delivers 60 nested files of several sizes byte-identical, owned by the shift, with source mtimes, and copies each (F1-F4, G3, G4, G9)', async () => {
    const uid = 500;
    const gid = 501;
    await ppu.startShift(uid, gid, []);
    const detector = ppu.detectorRamdisks['1MF']!;
    const sizes = [0, 1, 4096, 100_000, 1_000_000, 2_500_000];
    const written: WrittenFile[] = [];
    for (let i = 0; i < 60; i++) {
      const rel = `scan${i % 3}/run_${i % 5}/img_${String(i).padStart(5, '0')}.cbf`;
      written.push(writeImage(detector, rel, sizes[i % sizes.length]!));
    }
    const usrRoot = path.join(ppu.ppuRamdisk, '1mf', `${uid}_${gid}`);
    const internal = path.join(ppu.storageRoot, 'internal');

    await eventually(() => listFiles(usrRoot).length === written.length, 30_000, 'all files on the PPU ramdisk');
    await eventually(async () => {
      const rows = await ppu.queryStatus(1);
      return rows.some((r) => r[3] === 'internal' && r[5] === BigInt(written.length));
    }, 30_000, 'grimseld to report every file copied');

    for (const f of written) {
      const onPpu = path.join(usrRoot, f.rel);
      const st = lstatSync(onPpu);
      assert.ok(st.isFile(), `${f.rel} is a regular file on the PPU`);
      assert.equal(sha256File(readFileSync(onPpu)), f.sha256, `${f.rel} is byte-identical on the PPU`);
      assert.equal(st.uid, uid, `${f.rel} owned by the shift uid`);
      assert.equal(st.gid, gid, `${f.rel} owned by the shift gid`);
      assert.equal(Math.floor(st.mtimeMs), Math.floor(f.mtimeMs), `${f.rel} keeps the source mtime`);
      assert.ok(!existsSync(path.join(detector, f.rel)), `${f.rel} removed from the detector ramdisk`);

      // G4: target /ppu-ramdisk/./1mf → storage/internal/1mf/500_501/<rel>
      const copy = path.join(internal, '1mf', `${uid}_${gid}`, f.rel);
      const cst = lstatSync(copy);
      assert.equal(sha256File(readFileSync(copy)), f.sha256, `${f.rel} copied byte-identical`);
      assert.equal(cst.uid, uid);
      assert.equal(cst.gid, gid);
      assert.equal(Math.floor(cst.mtimeMs), Math.floor(f.mtimeMs), `${f.rel} copy keeps the mtime`);
    }
    // Directories created for the shift belong to it (F3, F4).
    const usrSt = lstatSync(usrRoot);
    assert.deepEqual([usrSt.uid, usrSt.gid], [uid, gid], 'usrdir owned by the shift');
    const sub = lstatSync(path.join(usrRoot, 'scan0', 'run_0'));
    assert.deepEqual([sub.uid, sub.gid], [uid, gid], 'created directories owned by the shift');
    // No temp files left anywhere on the storage.
    assert.deepEqual(listFiles(internal).filter((f) => path.basename(f).startsWith('.')), []);

    const rows = await ppu.queryStatus(1);
    const row = rows.find((r) => r[3] === 'internal');
    assert.ok(row, 'a status row for the internal storage');
    assert.equal(row[1], uid);
    assert.equal(row[2], gid);
    assert.equal(row[4], 0n, 'nothing pending');
    assert.equal(row[5], BigInt(written.length), 'all copied');
    assert.equal(row[6], 0n, 'nothing failed');
  });
});

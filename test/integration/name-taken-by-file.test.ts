// A directory whose name a file holds: the detector wrote a file Y, then a directory Y/ holding g.img. The file Y
// is delivered and stays; g.img goes into a numbered directory beside it (Y.~1~/g.img), at once, on the ramdisk and
// on every storage that holds a file Y, never retried for ever, and the shift changes clean both up (F1, F2, G3, G5).
import { strict as assert } from 'node:assert';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, messagesAfterGrimseldKilled, Ppu } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';

/** sha256 of a regular file, or '' when there is none (a directory there, or nothing). */
const shaOf = (file: string): string => (existsSync(file) && lstatSync(file).isFile() ? sha256File(readFileSync(file)) : '');

describe('a directory whose name a file holds is numbered, never waited for (F1, F2, G3, G5)', function () {
  this.timeout(240_000);
  const ids = ['1MF', '2MF'];
  let ppu: Ppu;
  /** Where detector `id`'s files of 500:501 are on the ramdisk, internal or external storage. */
  const on = (where: 'ramdisk' | 'internal' | 'external', id: string, rel: string): string =>
    path.join(where === 'ramdisk' ? ppu.ppuRamdisk : path.join(ppu.storageRoot, where), id.toLowerCase(), '500_501', rel);
  /** `pending/copied/failed` per storage of the newest shift of 500:501 (or the one `back` shifts before it). */
  const counts = async (back = 0): Promise<string> => {
    const rows = (await ppu.queryStatus(-1)).filter((r) => r[1] === 500);
    const times = [...new Set(rows.map((r) => r[0]))].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    return rows.filter((r) => r[0] === times[back]).map((r) => `${r[3]} ${r[4]}/${r[5]}/${r[6]}`).sort().join(', ');
  };

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-name-taken', uid: 500, gid: 501, detectors: ids, transport: { '1MF': 'agent', '2MF': 'rsync' } });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.external': { type: 'EXTERNAL', target: path.join(ppu.storageRoot, 'external'), n_copy_processes: 2 },
    };
    await ppu.start();
  });
  after(async () => {
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
  });

  it('F2, G3: a file Y, then a directory Y/ in the same shift: Y.~1~/g.img placed at once (agent and rsync) and copied so to every storage; G5 cleans both up', async () => {
    const ys = ids.map((id) => writeImage(ppu.detectorRamdisks[id]!, 'same/Y', 3000));
    for (const [i, id] of ids.entries()) {
      await eventually(() => shaOf(on('external', id, 'same/Y')) === ys[i]!.sha256 && shaOf(on('internal', id, 'same/Y')) === ys[i]!.sha256 &&
        !existsSync(path.join(ppu.detectorRamdisks[id]!, 'same/Y')), 30_000, `${id}: the file Y delivered and copied`);
    }
    const gs = ids.map((id) => writeImage(ppu.detectorRamdisks[id]!, 'same/Y/g.img', 4000));
    for (const [i, id] of ids.entries()) {
      await eventually(() => shaOf(on('ramdisk', id, 'same/Y.~1~/g.img')) === gs[i]!.sha256, 30_000, `${id}: g.img placed on the ramdisk as Y.~1~/g.img`);
      await eventually(() => ['internal', 'external'].every((s) => shaOf(on(s as 'internal', id, 'same/Y.~1~/g.img')) === gs[i]!.sha256), 30_000,
        `${id}: g.img copied as Y.~1~/g.img to both storages`);
      for (const where of ['ramdisk', 'internal', 'external'] as const) {
        assert.equal(shaOf(on(where, id, 'same/Y')), ys[i]!.sha256, `${id}: the file Y stays on the ${where}`);
      }
      assert.ok(!existsSync(path.join(ppu.detectorRamdisks[id]!, 'same/Y/g.img')), `${id}: g.img's source removed once placed`);
    }
    await eventually(async () => (await counts()) === 'external 0/4/0, internal 0/4/0', 20_000, 'every file copied, none failed');
    await ppu.furkad!.proc.said(/same\/Y is a file, not a directory: it is kept, and .*same\/Y\/g\.img is placed as .*same\/Y\.~1~\/g\.img/);
    for (const id of ids) {
      const status = await ppu.furkaProperty<Array<[string, string, string, bigint]>>('Detectors');
      assert.ok(!JSON.stringify(status, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes('cannot move'), `${id}: nothing waits to be placed`);
    }

    // G5 with an EXTERNAL storage: the ramdisk originals go once copied to internal, the internal copies once copied to external.
    await ppu.startShift(600, 601);
    for (const id of ids) {
      await eventually(() => ['same/Y', 'same/Y.~1~/g.img'].every((rel) => !existsSync(on('ramdisk', id, rel)) && !existsSync(on('internal', id, rel))),
        30_000, `${id}: the earlier shift cleaned up from the ramdisk and the internal storage`);
      assert.ok(shaOf(on('external', id, 'same/Y')) !== '' && shaOf(on('external', id, 'same/Y.~1~/g.img')) !== '', `${id}: both kept on the external storage`);
    }
  });

  it('G3, G5: a storage that still holds the file Y (its ramdisk and internal copies cleaned up) takes Y/g.img as Y.~1~/g.img, says so, and the internal copy is cleaned up after it', async () => {
    await ppu.startShift(500, 501);
    const ys = ids.map((id) => writeImage(ppu.detectorRamdisks[id]!, 'late/Y', 3000));
    for (const [i, id] of ids.entries()) {
      await eventually(() => shaOf(on('external', id, 'late/Y')) === ys[i]!.sha256, 30_000, `${id}: the file Y copied to the external storage`);
    }
    // A new shift of the same uid:gid: the same directory, and G5 removes Y from the ramdisk and the internal storage.
    await ppu.startShift(500, 501);
    for (const id of ids) {
      await eventually(() => !existsSync(on('ramdisk', id, 'late/Y')) && !existsSync(on('internal', id, 'late/Y')), 30_000, `${id}: Y cleaned up`);
    }
    const msgs = await collectMessages(ppu);
    const gs = ids.map((id) => writeImage(ppu.detectorRamdisks[id]!, 'late/Y/g.img', 4000));
    try {
      for (const [i, id] of ids.entries()) {
        // The ramdisk and the internal storage hold no Y any more: g.img keeps its name there.
        await eventually(() => shaOf(on('internal', id, 'late/Y/g.img')) === gs[i]!.sha256, 30_000, `${id}: g.img on the internal storage`);
        await eventually(() => shaOf(on('external', id, 'late/Y.~1~/g.img')) === gs[i]!.sha256, 30_000, `${id}: g.img on the external storage beside its file Y`);
        assert.equal(shaOf(on('external', id, 'late/Y')), ys[i]!.sha256, `${id}: the external file Y is kept`);
      }
      await eventually(async () => (await counts()) === 'external 0/2/0, internal 0/2/0', 20_000, 'copied, not failed');
      await eventually(() => msgs.messages.length >= 2, 10_000, 'one message per file');
      for (const id of ids) {
        const said = msgs.messages.filter(([, short]) => short.endsWith(on('external', id, 'late/Y.~1~/g.img')));
        assert.equal(said.length, 1, JSON.stringify(msgs.messages));
        assert.equal(said[0]![0], 'COPY_ERROR');
        assert.match(said[0]![2], /late\/Y on storage external is a file, not a directory .*the file counts as copied/);
      }
      assert.equal(msgs.messages.length, 2, JSON.stringify(msgs.messages));
    } finally {
      msgs.stop();
    }

    // Where each copy went is journaled: after a SIGKILL the next shift change finds the external copy in
    // Y.~1~ and cleans the internal one up (G5), no DEL_ERROR.
    const after = await messagesAfterGrimseldKilled(ppu);
    try {
      await ppu.startShift(500, 501);
      for (const id of ids) {
        await eventually(() => !existsSync(on('ramdisk', id, 'late/Y/g.img')) && !existsSync(on('internal', id, 'late/Y/g.img')), 30_000,
          `${id}: g.img cleaned up from the ramdisk and the internal storage`);
        assert.equal(shaOf(on('external', id, 'late/Y.~1~/g.img')), gs[ids.indexOf(id)]!.sha256);
      }
      assert.deepEqual(after.messages, []);
    } finally {
      after.stop();
    }
  });
});

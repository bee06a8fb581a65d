// G9: the last history_max_entries shifts, with their counts, survive a restart of grimseld.
import { strict as assert } from 'node:assert';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';

describe('status history across restarts (G9)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-history', grimseld: { history_max_entries: 3 } }).start();
  });
  after(async () => ppu?.stop());

  it('keeps the newest shifts and their counts through a restart, dropping the oldest beyond the limit', async () => {
    for (const [uid, n] of [[2001, 2], [2002, 3], [2003, 4]] as const) {
      await ppu.startShift(uid, uid, []);
      for (let i = 0; i < n; i++) writeImage(ppu.detectorRamdisks['1MF']!, `h${uid}/f${i}.cbf`, 1000 + i);
      await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === uid && r[5] === BigInt(n)), 30_000, `shift ${uid} copied`);
    }
    const before = await ppu.queryStatus(-1);
    assert.deepEqual(before.map((r) => r[1]), [2003, 2002, 2001], 'newest first; the limit of 3 dropped the start-up shift');
    assert.deepEqual(before.map((r) => Number(r[5])), [4, 3, 2]);

    await ppu.grimseld!.stop();
    await ppu.startGrimseld();
    assert.deepEqual(await ppu.queryStatus(-1), before, 'the same rows after a restart');

    await ppu.killGrimseld();
    await ppu.startGrimseld();
    assert.deepEqual(await ppu.queryStatus(-1), before, 'and after a SIGKILL');
  });
});

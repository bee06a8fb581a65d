// Copies gone from the internal disk while it stays the same disk (G3, G5, G9): the shift's user moved them away
// (the shift's directory there is theirs). Found by a hostile tester: the status kept counting them copied, nothing
// copied them again, and the shift-change clean-up left their ramdisk originals for good, with a DEL_ERROR for each
// at every try; the oldest files of the ramdisk, which its fill guard could not free either.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';

describe('copies gone from the internal disk (G3, G5, G9)', function () {
  this.timeout(180_000);
  let ppu: Ppu;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-lost-copy' }).start();
  });
  after(async () => ppu?.stop());

  it('copies them again from their originals, which the clean-up deletes only then, and says so once', async () => {
    const internal = path.join(ppu.storageRoot, 'internal', '1mf', '1500_1501');
    const ramdisk = path.join(ppu.ppuRamdisk, '1mf', '1500_1501');
    await ppu.startShift(1500, 1501, []);
    const files = Array.from({ length: 6 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `a/f${i}.cbf`, 30_000));
    const row = async (uid: number) => (await ppu.queryStatus(-1)).find((r) => r[1] === uid && r[3] === 'internal');
    await eventually(async () => (await row(1500))?.[5] === 6n, 60_000, 'six files copied to internal');
    const msgs = await collectMessages(ppu);
    // The user moves the run's directory away from the storage, then the next shift starts (its clean-up is due).
    renameSync(path.join(internal, 'a'), path.join(ppu.work, 'moved-a'));
    await ppu.startShift(1600, 1601, []);
    await eventually(() => files.every((f) => !existsSync(path.join(ramdisk, f.rel))), 60_000, "the ended shift's originals deleted");
    for (const f of files) {
      assert.equal(sha256File(readFileSync(path.join(internal, f.rel))), f.sha256, `${f.rel} copied again before its original went`);
    }
    const r = await row(1500);
    assert.deepEqual([r?.[4], r?.[5], r?.[6]], [0n, 6n, 0n], 'pending 0, copied 6, failed 0');
    const said = msgs.messages;
    msgs.stop();
    assert.deepEqual(said.filter(([code]) => code === 'DEL_ERROR' || code === 'LINK_ERROR'), [], 'no DEL_ERROR or LINK_ERROR');
    const gone = said.filter(([code, , long]) => code === 'COPY_ERROR' && /not there any more/.test(long));
    assert.equal(gone.length, 1, `said once: ${JSON.stringify(said)}`);
    assert.match(gone[0]![2], /^storage internal: (the copy \S+ is|\d+ copies \(\S+ among them\) are) not there any more .*copied to it again from the original/);
  });
});

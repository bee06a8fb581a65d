// Copies gone from the internal disk while it stays the same disk (G3, G5, G9): the shift's user moved them away
// (the shift's directory there is theirs). Found by a hostile tester: the status kept counting them copied, nothing
// copied them again, and the shift-change clean-up left their ramdisk originals for good, with a DEL_ERROR for each
// at every try; the oldest files of the ramdisk, which its fill guard could not free either.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
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

  it("a storage added after the internal storage's target changed: the copies read from internal copies that are not there are said once for the storage, not each as 'retried until it succeeds' (tester h8)", async () => {
    const ramdisk = path.join(ppu.ppuRamdisk, '1mf', '1700_1701');
    await ppu.startShift(1700, 1701, []);
    const files = Array.from({ length: 4 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `k/k${i}.raw`, 20_000));
    const row = async (uid: number, s: string) => (await ppu.queryStatus(-1)).find((r) => r[1] === uid && r[3] === s);
    await eventually(async () => (await row(1700, 'internal'))?.[5] === 4n, 60_000, 'four files copied to internal');
    await ppu.startShift(1800, 1801, []);
    await eventually(() => files.every((f) => !existsSync(path.join(ramdisk, f.rel))), 60_000, "the ended shift's originals deleted (G5)");
    // The administrator moves the internal storage's target and adds a storage: its history is read from internal copies.
    await ppu.killGrimseld();
    const internal = { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal', 'v2'), n_copy_processes: 4 };
    ppu.opts.storages = { 'storage.internal': internal, 'storage.bl': { type: 'OPTIONAL', target: path.join(ppu.storageRoot, 'bl'), n_copy_processes: 1 } };
    ppu.writeConfigs();
    await ppu.startGrimseld();
    const msgs = await collectMessages(ppu);
    await eventually(async () => (await row(1700, 'bl'))?.[6] === 4n, 60_000, 'the four counted failed on bl');
    await new Promise((r) => setTimeout(r, 3000)); // retries of the first seconds
    const said = msgs.messages.filter(([code]) => code === 'COPY_ERROR');
    assert.equal(said.length, 1, `said once for the storage, no retry promised per file: ${JSON.stringify(said)}`);
    assert.equal(said[0]![1], `${internal.target}:${path.join(ppu.storageRoot, 'bl')}`);
    assert.match(said[0]![2], new RegExp(`^storage bl: copies of files whose ramdisk original is gone are made from their internal copy, and ` +
      `${internal.target}/1mf/\\S+ .* is not in the internal storage's target ${internal.target}: .*target changed in grimseld\\.conf`));
    // What it says is so: the internal copies moved into the new target, the copies are made by the retries.
    mkdirSync(internal.target, { recursive: true });
    renameSync(path.join(ppu.storageRoot, 'internal', '1mf'), path.join(internal.target, '1mf'));
    await eventually(async () => (await row(1700, 'bl'))?.[5] === 4n, 90_000, 'the four copied to bl once their internal copies are there');
    msgs.stop();
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(ppu.storageRoot, 'bl', '1mf/1700_1701', f.rel))), f.sha256);
  });
});

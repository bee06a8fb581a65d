// A storage's disk swapped for an empty one while grimseld runs (G3, G5, G9, G13), on real loop-mounted ext4 disks:
// found by a hostile tester, the status kept saying the files were copied to EXTERNAL, nothing was copied to the new
// disk, the internal copies waiting for their external copy were never cleaned up, and each of them was a DEL_ERROR
// at every try of the clean-up (2 520 in a session).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, messagesAfterGrimseldKilled, Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountImage, unmount } from '../fixtures/tmpfs.js';

const row = async (ppu: Ppu, uid: number, storage: string) =>
  (await ppu.queryStatus(-1)).find((r) => r[1] === uid && r[3] === storage);

async function copiedAll(ppu: Ppu, uid: number, n: number, storages: number): Promise<void> {
  await eventually(async () => {
    const rows = (await ppu.queryStatus(-1)).filter((r) => r[1] === uid);
    return rows.length === storages && rows.every((r) => r[5] === BigInt(n) && r[4] === 0n);
  }, 60_000, `${n} files of shift ${uid} copied to ${storages} storages`);
}

function stream(ppu: Ppu, prefix: string, n: number, size: number): WrittenFile[] {
  return Array.from({ length: n }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `${prefix}/f${String(i).padStart(3, '0')}.cbf`, size));
}

/** An empty ext4 disk image of 64 MB, as a new USB disk comes. */
function newDisk(file: string): string {
  writeFileSync(file, '');
  execFileSync('truncate', ['-s', '64M', file]);
  execFileSync('mkfs.ext4', ['-q', '-F', file]);
  return file;
}

describe('an EXTERNAL disk swapped for an empty one while grimseld runs (G3, G5, G9, G13)', function () {
  this.timeout(240_000);
  let ppu: Ppu;
  let mnt: string;

  beforeEach(async () => {
    ppu = new Ppu({ prefix: 'ppu-swap' });
    mnt = path.join(ppu.work, 'mnt', 'usb');
    mountImage(newDisk(path.join(ppu.work, 'first.img')), mnt);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.external': { type: 'EXTERNAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 2 },
    };
    await ppu.start();
  });
  afterEach(async () => ppu?.stop()); // unmounts the disks too

  /** The swap messages said so far: COPY_ERRORs naming the storage (its mount point and target), not a file, about its disk. */
  const swapSaid = (messages: Array<[string, string, string]>) => messages.filter(([code, short, long]) => code === 'COPY_ERROR' &&
    short === `${mnt}:${mnt}/data` && /is not the one grimseld copied to/.test(long));

  /** Shift `uid` (gid uid + 1) streams `n` files into `dir`, each copied to both storages; then the user's disk is swapped for an empty one. */
  const streamThenSwap = async (uid: number, dir: string, n: number) => {
    await ppu.startShift(uid, uid + 1, []);
    const files = stream(ppu, dir, n, 40_000);
    await copiedAll(ppu, uid, n, 2);
    const msgs = await collectMessages(ppu);
    unmount(mnt);
    mountImage(newDisk(path.join(ppu.work, 'second.img')), mnt);
    return { files, msgs };
  };

  it('says once that the disk is another, counts the shift\'s files pending there again and copies them to it; a restart says nothing new', async () => {
    // The user takes their disk away and puts an empty one in its place.
    const { files, msgs } = await streamThenSwap(2100, 'a', 10);
    await eventually(() => files.every((f) => existsSync(path.join(mnt, 'data/1mf/2100_2101', f.rel))), 60_000, 'the shift\'s files copied to the new disk');
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(mnt, 'data/1mf/2100_2101', f.rel))), f.sha256, `${f.rel} on the new disk`);
    await copiedAll(ppu, 2100, 10, 2);
    assert.equal((await row(ppu, 2100, 'external'))?.[6], 0n, 'none failed');
    const said = swapSaid(msgs.messages);
    assert.equal(said.length, 1, `said once: ${JSON.stringify(msgs.messages)}`);
    assert.match(said[0]![2], new RegExp(`storage external: the disk at ${mnt} is not the one grimseld copied to \\(it has no mark .*\\): ` +
      '10 of the 10 copies .* are not there; all are copied to it again'));
    msgs.stop();
    // The new disk is marked now: a grimseld killed and started again finds the disk it copied to, and says nothing.
    const after = await messagesAfterGrimseldKilled(ppu);
    writeImage(ppu.detectorRamdisks['1MF']!, 'a/later.cbf', 40_000);
    await copiedAll(ppu, 2100, 11, 2);
    after.stop();
    assert.deepEqual(swapSaid(after.messages), [], 'the new disk is not taken for another after a restart');
    assert.equal(listFiles(path.join(mnt, 'data/1mf/2100_2101')).length, 11, 'each file once on the new disk');
  });

  it('its target changed in grimseld.conf, the disk the same: said as that, not as another disk, and the copies made in the new target (G9)', async () => {
    // Found by tester h8: /mnt/usb/data -> /mnt/usb/data/v2 was said as a disk without a mark, of "copies made in" v2, where none was.
    await ppu.startShift(2500, 2501, []);
    const files = stream(ppu, 'a', 4, 40_000);
    await copiedAll(ppu, 2500, 4, 2);
    await ppu.killGrimseld();
    ppu.opts.storages!['storage.external']!['target'] = path.join(mnt, 'data/v2');
    ppu.writeConfigs();
    await ppu.startGrimseld();
    await eventually(() => files.every((f) => existsSync(path.join(mnt, 'data/v2/1mf/2500_2501', f.rel))), 60_000, 'the files copied into the new target');
    await copiedAll(ppu, 2500, 4, 2);
    const said = ppu.grimseld!.proc.output();
    assert.ok(said.includes(`storage external: its target changed in grimseld.conf: the disk at ${mnt} is the one grimseld copied to (its mark is in ` +
      `${mnt}/data, the target its copies were made in), and ${mnt}/data/v2 is new to it: 4 of the 4 copies grimseld made in ${mnt}/data and ` +
      `still holds the originals of are not in ${mnt}/data/v2; all are copied to it again`), said);
    assert.doesNotMatch(said, /is not the one grimseld copied to/);
    assert.ok(existsSync(path.join(mnt, 'data/v2/.grimsel-storage')), 'the new target marked');
  });

  it('swapped just before a shift change: the earlier shift\'s internal copies go only once copied to the new disk, with no DEL_ERROR (G5)', async () => {
    const { files: old, msgs } = await streamThenSwap(2300, 'a', 12);
    await ppu.startShift(2400, 2401, []);
    const fresh = stream(ppu, 'b', 3, 40_000);
    await copiedAll(ppu, 2400, 3, 2);
    await copiedAll(ppu, 2300, 12, 2);
    await eventually(() => listFiles(path.join(ppu.storageRoot, 'internal/1mf/2300_2301')).length === 0 &&
      listFiles(path.join(ppu.ppuRamdisk, '1mf/2300_2301')).length === 0, 30_000, 'the earlier shift gone from the ramdisk and the internal disk');
    for (const f of old) assert.equal(sha256File(readFileSync(path.join(mnt, 'data/1mf/2300_2301', f.rel))), f.sha256, `${f.rel}: its only copy left, on the new disk`);
    for (const f of fresh) assert.ok(existsSync(path.join(ppu.storageRoot, 'internal/1mf/2400_2401', f.rel)), 'the current shift kept');
    msgs.stop();
    assert.deepEqual(msgs.messages.filter(([code]) => code === 'DEL_ERROR' || code === 'LINK_ERROR'), [], 'no deletion tried on the strength of a copy that went');
    assert.equal(swapSaid(msgs.messages).length, 1, `said once: ${JSON.stringify(msgs.messages)}`);
  });
});

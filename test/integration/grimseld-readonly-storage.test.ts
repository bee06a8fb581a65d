// A storage whose file system turns read-only while grimseld runs (G5, G8, G10, G12, G13): `mount -o remount,ro`, as
// ext4 does by itself after an error (errors=remount-ro). Found by a hostile tester: one DEL_ERROR per internal copy
// at every try of the shift-change clean-up (and a COPY_ERROR per file) instead of one message for the storage.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';

const MB = 1024 * 1024;

const row = async (ppu: Ppu, uid: number, storage: string) =>
  (await ppu.queryStatus(-1)).find((r) => r[1] === uid && r[3] === storage);

async function copiedAll(ppu: Ppu, uid: number, n: number, storages: number): Promise<void> {
  await eventually(async () => {
    const rows = (await ppu.queryStatus(-1)).filter((r) => r[1] === uid);
    return rows.length === storages && rows.every((r) => r[5] === BigInt(n) && r[4] === 0n && r[6] === 0n);
  }, 60_000, `${n} files of shift ${uid} copied to ${storages} storages`);
}

function stream(ppu: Ppu, prefix: string, n: number, size: number): WrittenFile[] {
  return Array.from({ length: n }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `${prefix}/f${String(i).padStart(3, '0')}.cbf`, size));
}

describe('an INTERNAL disk remounted read-only while grimseld runs (G5, G10, G13)', function () {
  this.timeout(180_000);

  it('says so once per storage and cause, naming its mount point; keeps the files pending, not failed; goes on by itself once writable', async () => {
    const ppu = new Ppu({ prefix: 'ppu-ro' });
    const internalMnt = mountTmpfs(path.join(ppu.work, 'internal-disk'), 64 * MB);
    const target = path.join(internalMnt, 'data');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target, mountpoint: internalMnt, n_copy_processes: 2 },
      'storage.external': { type: 'EXTERNAL', target: path.join(ppu.storageRoot, 'external'), n_copy_processes: 2 },
    };
    await ppu.start();
    try {
      await ppu.startShift(3100, 3101, []);
      const old = stream(ppu, 'a', 20, 20_000);
      await copiedAll(ppu, 3100, 20, 2);
      const msgs = await collectMessages(ppu);
      execFileSync('mount', ['-o', 'remount,ro', internalMnt]);
      // The shift change deletes the earlier shift's internal copies (G5 with EXTERNAL): each would fail with EROFS.
      await ppu.startShift(3200, 3201, []);
      const fresh = stream(ppu, 'b', 5, 20_000);
      await eventually(() => msgs.messages.some(([code, short]) => code === 'DEL_ERROR' && short === internalMnt) &&
        msgs.messages.some(([code, short]) => code === 'COPY_ERROR' && short === `${internalMnt}:${target}`), 20_000, 'the read-only storage said');
      await eventually(async () => (await row(ppu, 3200, 'external'))?.[5] === 5n, 20_000, 'the other storage goes on');
      await new Promise((r) => setTimeout(r, 3000)); // twelve rounds of the reclaimer, three mount checks: 20 DEL_ERRORs and 5 COPY_ERRORs before the fix
      const errors = msgs.messages.filter(([code]) => code === 'DEL_ERROR' || code === 'COPY_ERROR' || code === 'LINK_ERROR');
      // Each for the storage, never for a file; the COPY_ERROR repeated every 10 s at most while files wait.
      const storageLevel = ([code, short]: [string, string, string]) => (code === 'DEL_ERROR' && short === internalMnt) ||
        (code === 'COPY_ERROR' && short === `${internalMnt}:${target}`);
      assert.deepEqual(errors.filter((m) => !storageLevel(m)), [], 'nothing said for a file');
      assert.equal(errors.filter(([code]) => code === 'DEL_ERROR').length, 1, `one DEL_ERROR for the storage: ${JSON.stringify(errors.slice(0, 4))}`);
      const del = errors.find(([code]) => code === 'DEL_ERROR')!;
      // All 20 of the ended shift's internal copies counted, however many slices the clean-up took (the 20 ramdisk deletions before them).
      assert.match(del[2], new RegExp(`^storage internal: ${internalMnt} is read-only .*; 20 originals of ended shifts which lie on it are not deleted until it is writable again`));
      const copy = errors.find(([code]) => code === 'COPY_ERROR')!;
      assert.match(copy[2], new RegExp(`^storage internal: ${internalMnt} is read-only .*; nothing is written to ${target} and its \\d+ files stay pending until it is writable again`));
      const r = await row(ppu, 3200, 'internal');
      assert.deepEqual([r?.[4], r?.[5], r?.[6]], [5n, 0n, 0n], 'pending, not failed');
      assert.equal(listFiles(path.join(target, '1mf/3100_3101')).length, 20, 'nothing deleted');
      for (const f of fresh) assert.ok(existsSync(path.join(ppu.ppuRamdisk, '1mf/3200_3201', f.rel)), 'the new files wait on the ramdisk');

      execFileSync('mount', ['-o', 'remount,rw', internalMnt]);
      await copiedAll(ppu, 3200, 5, 2);
      await eventually(() => listFiles(path.join(target, '1mf/3100_3101')).length === 0 && listFiles(path.join(ppu.ppuRamdisk, '1mf/3100_3101')).length === 0,
        30_000, 'the earlier shift cleaned up once the disk is writable');
      for (const f of old) assert.equal(sha256File(readFileSync(path.join(ppu.storageRoot, 'external/1mf/3100_3101', f.rel))), f.sha256);
      for (const f of fresh) assert.equal(sha256File(readFileSync(path.join(target, '1mf/3200_3201', f.rel))), f.sha256);
      assert.equal((await row(ppu, 3100, 'internal'))?.[6], 0n, 'none counted failed');
      msgs.stop();
      const all = msgs.messages.filter(([code]) => code === 'DEL_ERROR' || code === 'COPY_ERROR' || code === 'LINK_ERROR');
      assert.deepEqual(all.filter((m) => !storageLevel(m)), [], 'nothing said for a file, then or after');
      assert.equal(all.filter(([code]) => code === 'DEL_ERROR').length, 1, 'the DEL_ERROR not said again');
    } finally {
      await ppu.stop();
    }
  });

  // Found by a hostile tester: files counted failed (ENOSPC) before the disk went read-only were said to "stay
  // pending" while QueryStatus counted them failed for as long as it stayed so. They are said as QueryStatus counts them.
  it('says the files counted failed on a full disk, then remounted read-only, as counted failed, as QueryStatus shows them, and copies them once writable (G9, G13)', async () => {
    const ppu = new Ppu({ prefix: 'ppu-ro-full' });
    const internalMnt = mountTmpfs(path.join(ppu.work, 'internal-disk'), 1 * MB);
    const target = path.join(internalMnt, 'data');
    ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target, mountpoint: internalMnt, n_copy_processes: 1 } };
    await ppu.start();
    try {
      await ppu.startShift(3300, 3301, []);
      const msgs = await collectMessages(ppu);
      const files = stream(ppu, 'c', 3, 400_000); // 1.2 MB for a 1 MB disk: two fit
      await eventually(async () => {
        const r = await row(ppu, 3300, 'internal');
        return r?.[4] === 0n && r[5] === 2n && r[6] === 1n;
      }, 30_000, 'two copied, one counted failed: the disk is full');
      execFileSync('mount', ['-o', 'remount,ro', internalMnt]);
      const isStorage = ([code, short]: [string, string, string]): boolean => code === 'COPY_ERROR' && short === `${internalMnt}:${target}`;
      await eventually(() => msgs.messages.some(isStorage), 30_000, 'the read-only storage said');
      const said = msgs.messages.find(isStorage)!;
      const r = await row(ppu, 3300, 'internal');
      assert.deepEqual([r?.[4], r?.[6]], [0n, 1n], 'QueryStatus: none pending, one failed');
      assert.match(said[2], new RegExp(`^storage internal: ${internalMnt} is read-only .*; nothing is written to ${target} and its 1 files wait until it is ` +
        'writable again: 0 pending, and 1 counted failed \\(an earlier copy of them failed, as QueryStatus shows; each is tried again then\\)$'));
      msgs.stop();
      execFileSync('mount', ['-o', 'remount,rw,size=8m', internalMnt]);
      await copiedAll(ppu, 3300, 3, 1);
      for (const f of files) assert.equal(sha256File(readFileSync(path.join(target, '1mf/3300_3301', f.rel))), f.sha256);
    } finally {
      await ppu.stop();
    }
  });
});

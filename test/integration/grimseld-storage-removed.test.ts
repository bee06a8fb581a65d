// A storage section removed from grimseld.conf while files wait to be copied there: its rows leave the status, so
// grimseld says at start which storage its journal knows that the configuration no longer has, and how many of the
// files it holds have no copy there; restored while it still holds them, they are copied there (tester h8).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { mountTmpfs, unmount, unmountAll } from '../fixtures/tmpfs.js';

describe('a storage removed from the configuration with files pending there (G9, G12)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let mnt: string;
  let disk: string;
  // The USB disk: a tmpfs of its own, bound at the mount point; unbound, it is away (its copies and mark kept).
  const plugIn = (): void => {
    execFileSync('mount', ['--bind', disk, mnt]);
  };

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-storage-removed' });
    mnt = path.join(ppu.work, 'mnt', 'usb');
    mkdirSync(mnt, { recursive: true });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.usb': { type: 'OPTIONAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 1 },
    };
    disk = path.join(ppu.work, 'usb-disk');
    mkdirSync(disk);
    mountTmpfs(disk, 64 << 20);
    plugIn();
    await ppu.start();
  });
  after(async () => {
    try { unmount(mnt); } catch { /* unbound when the test failed */ }
    unmountAll();
    await ppu?.stop();
  });

  it('names it at start with the files held that have no copy there, and copies them there once it is restored', async () => {
    const usbSection = ppu.opts.storages!['storage.usb']!;
    await ppu.startShift(1700, 1701, []);
    const row = async (s: string) => (await ppu.queryStatus(-1)).find((r) => r[1] === 1700 && r[3] === s);
    const first = writeImage(ppu.detectorRamdisks['1MF']!, 'r/a0.cbf', 20_000);
    await eventually(async () => (await row('usb'))?.[5] === 1n, 60_000, 'the first file copied to usb');
    // The disk is taken away: the next three wait for it.
    unmount(mnt);
    const later = Array.from({ length: 3 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `r/b${i}.cbf`, 20_000));
    await eventually(async () => (await row('internal'))?.[5] === 4n && (await row('usb'))?.[4] === 3n, 60_000, 'three pending on usb');
    // The administrator removes its section and restarts grimseld.
    await ppu.killGrimseld();
    ppu.opts.storages = { 'storage.internal': ppu.opts.storages!['storage.internal']! };
    ppu.writeConfigs();
    const g = await ppu.startGrimseld();
    await g.proc.said(/"storage":"usb","uncopied":3\b.*storage 'usb' is in grimseld's journal but no longer in the configuration/);
    assert.equal(await row('usb'), undefined, 'its row left the status');
    // Restored (the disk back), while the shift still runs: the three are copied there.
    await ppu.killGrimseld();
    plugIn();
    ppu.opts.storages = { ...ppu.opts.storages, 'storage.usb': usbSection };
    ppu.writeConfigs();
    const h = await ppu.startGrimseld();
    await eventually(async () => (await row('usb'))?.[5] === 4n, 60_000, 'the three copied to usb once it is back');
    for (const f of [first, ...later]) assert.ok(existsSync(path.join(mnt, 'data', '1mf/1700_1701', f.rel)), f.rel);
    assert.doesNotMatch(h.proc.output(), /no longer in the configuration/, 'nothing said once it is configured again');
  });
});

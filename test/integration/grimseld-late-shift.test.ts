// G9 with late files (A5): a shift the status let go (history_max_entries) that furkad delivers files owed to it
// for is shown again with the copies it counted before plus the late files, also after a restart; not with its
// late files only. A real grimseld; the late file handed over as furkad hands it (org.ppu.GrimselIntake1), while an
// OPTIONAL storage is unmounted so that the shift stays shown (its late file pending there).
import { strict as assert } from 'node:assert';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { callMethod } from '../../src/dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../../src/dbus/names.js';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';

describe('a shift the status let go that late files come for (G9, A5)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let mnt: string;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-late', grimseld: { history_max_entries: 1 } });
    mnt = path.join(ppu.work, 'mnt', 'usb');
    mountTmpfs(mnt, 16 * 1024 * 1024);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.usb': { type: 'OPTIONAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 2 },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop()); // unmounts what is still mounted

  /** Shift `uid`'s rows by storage: [pending, copied, failed]; none once the status let it go. */
  const counts = async (uid: number): Promise<Record<string, [number, number, number]>> =>
    Object.fromEntries((await ppu.queryStatus(-1)).filter((r) => r[1] === uid).map((r) => [r[3], [Number(r[4]), Number(r[5]), Number(r[6])]]));

  it('shows the copies made before beside the late file, and the same after a restart', async () => {
    await ppu.startShift(3001, 3001, []);
    for (let i = 0; i < 3; i++) writeImage(ppu.detectorRamdisks['1MF']!, `u/f${i}.cbf`, 1000 + i);
    await eventually(async () => JSON.stringify(await counts(3001)) === JSON.stringify({ internal: [0, 3, 0], usb: [0, 3, 0] }), 30_000,
      'shift 3001 copied to both storages');
    const usertime = (await ppu.queryStatus(-1)).find((r) => r[1] === 3001)![0];
    await ppu.startShift(3002, 3002, []);
    await eventually(async () => Object.keys(await counts(3001)).length === 0, 30_000, 'shift 3001 let go (history_max_entries 1)');

    unmount(mnt); // the late file's copy there waits: the shift stays shown
    const dir = path.join(ppu.ppuRamdisk, '1mf', '3001_3001', 'u');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'late.cbf'), 'late file owed to shift 3001\n');
    chownSync(path.join(dir, 'late.cbf'), 3001, 3001);
    const intake = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
    await callMethod(intake, 'Delivered', usertime, 3001, 3001, [[`${ppu.ppuRamdisk}/./1mf/3001_3001/u/late.cbf`, '', '1MF']]);
    const expected = { internal: [0, 4, 0], usb: [1, 3, 0] };
    await eventually(async () => (await counts(3001)).internal?.[0] === 0, 30_000, 'the late file copied to internal');
    assert.deepEqual(await counts(3001), expected, 'the three copied before and the late one');

    await ppu.grimseld!.stop();
    await ppu.startGrimseld();
    assert.deepEqual(await counts(3001), expected, 'the same after a restart');
  });
});

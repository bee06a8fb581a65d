// AddFile paths and the names their copies get (G4, G8): a path must end with the file's name (a './' marker
// after it was taken and retried for ever), and one file pending under one name is refused under another.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as dbus from 'dbus-next';
import { Ppu } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';
import { callMethod } from '../../src/dbus/bus.js';

describe('AddFile: where the marker stands, and one file under two names (G8)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let mnt: string;
  const addFails = async (p: string): Promise<dbus.DBusError> => {
    try {
      await callMethod(await ppu.grimsel(), 'AddFile', p);
    } catch (e) {
      if (e instanceof dbus.DBusError) return e;
      throw e;
    }
    return assert.fail(`AddFile ${p} succeeded`);
  };
  const failedCounts = async (): Promise<bigint[]> => (await ppu.queryStatus(1)).map((r) => r[6]);

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-addfile-names' });
    // An optional storage whose mount point is not mounted: an added file stays pending on it (G13).
    mnt = path.join(ppu.work, 'mnt', 'usb');
    mkdirSync(mnt, { recursive: true });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.usb': { type: 'OPTIONAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 1 },
    };
    await ppu.start();
    mkdirSync(path.join(ppu.work, 'op', 'run'), { recursive: true });
    writeFileSync(path.join(ppu.work, 'op', 'run', 'f1'), 'one');
  });
  after(async () => ppu?.stop());

  it("refuses a './' after the file's name, saying where the marker is, and takes nothing", async () => {
    const before = await failedCounts();
    for (const p of [`${ppu.work}/op/run/f1/.`, `${ppu.work}/op/run/f1/./`]) {
      const e = await addFails(p);
      assert.equal(e.type, 'org.ppu.Error.InvalidArgs');
      assert.match(e.text, /its '\.\/' marker is at its end, after the file's name/, p);
    }
    await ppu.quiescent();
    assert.deepEqual(await failedCounts(), before, 'no copy error, no failed count');
  });

  it('refuses the same file under another ./ while it is pending, naming the first name', async () => {
    await callMethod(await ppu.grimsel(), 'AddFile', `${ppu.work}/op/./run/f1`);
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'internal', 'run/f1')), 20_000, 'the internal copy');
    const e = await addFails(`${ppu.work}/op/run/./f1`);
    assert.equal(e.type, 'org.ppu.Error.InvalidArgs');
    assert.match(e.text, /already taken to be copied as 'run\/f1'.*add it as 'f1' again/);
    await callMethod(await ppu.grimsel(), 'AddFile', `${ppu.work}/op/./run/f1`); // the same name again: taken, as before
    await new Promise((r) => setTimeout(r, 1500)); // not quiescent: pending on the unmounted storage for good
    const usb = (await ppu.queryStatus(1)).find((r) => r[3] === 'usb');
    assert.equal(usb?.[4], 1n, 'one file pending on the unmounted storage, not two');
    assert.equal(existsSync(path.join(ppu.storageRoot, 'internal', 'f1')), false);
  });
});

// G14: grimseld reads its license key; without a valid one every storage uses one writer.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { startNotifySocket } from '../fixtures/notify-socket.js';
import { testIssuer } from '../fixtures/license.js';
import { GRIMSEL_IFACE } from '../../src/dbus/names.js';
import { callMethod } from '../../src/dbus/bus.js';
import type { Variant } from 'dbus-next';

async function property<T>(ppu: Ppu, name: string): Promise<T> {
  const props = (await ppu.client.getProxyObject('org.ppu.Grimsel', '/org/ppu/Grimsel')).getInterface('org.freedesktop.DBus.Properties');
  return ((await callMethod(props, 'Get', GRIMSEL_IFACE, name)) as Variant<T>).value;
}

describe('grimseld license (G14)', function () {
  this.timeout(120_000);

  async function withKey(prepare: (keyFile: string, issuer: ReturnType<typeof testIssuer>) => void,
    check: (license: [boolean, string], writers: number[], ppu: Ppu) => void | Promise<void>, env: NodeJS.ProcessEnv = {}): Promise<void> {
    const ppu = new Ppu({ prefix: 'ppu-g14' });
    const keyFile = path.join(ppu.work, 'grimsel-license.key');
    const issuer = testIssuer(ppu.work);
    prepare(keyFile, issuer);
    ppu.opts.grimseld = { licensekey: keyFile };
    ppu.opts.grimseldEnv = { ...issuer.env, ...env };
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 6 },
      'storage.extra': { type: 'OPTIONAL', target: path.join(ppu.storageRoot, 'extra'), n_copy_processes: 3 },
    };
    await ppu.start();
    try {
      const storages = await property<Array<[string, string, string, number]>>(ppu, 'Storages');
      await check(await property<[boolean, string]>(ppu, 'License'), storages.map((s) => s[3]), ppu);
    } finally {
      await ppu.stop();
    }
  }

  it('a valid key gives every storage its n_copy_processes writers', async () => {
    await withKey((file, issuer) => issuer.issue(file), ([valid, reason], writers) => {
      assert.equal(valid, true, reason);
      assert.match(reason, /licensed to Test Beamline/);
      assert.deepEqual(writers, [6, 3]);
    });
  });

  it('a missing key means one writer per storage, and says why', async () => {
    await withKey(() => {}, ([valid, reason], writers) => {
      assert.equal(valid, false);
      assert.match(reason, /no license key at .*grimsel-license\.key/);
      assert.deepEqual(writers, [1, 1]);
    });
  });

  it('a tampered key is refused (bad signature)', async () => {
    await withKey((file, issuer) => {
      issuer.issue(file);
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^holder = .*$/m, 'holder = Someone Else'));
    }, ([valid, reason], writers) => {
      assert.equal(valid, false);
      assert.match(reason, /bad signature/);
      assert.deepEqual(writers, [1, 1]);
    });
  });

  it('a key bound to a hardware address this machine lacks is refused', async () => {
    await withKey((file, issuer) => issuer.issue(file, '02:00:00:00:00:01'), ([valid, reason]) => {
      assert.equal(valid, false);
      assert.match(reason, /bound to 02:00:00:00:00:01/);
    });
  });

  it("says the reason in systemd's STATUS line too, as in the log and License (G14)", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'g14-notify-'));
    const sock = path.join(dir, 'notify');
    // systemd's notify socket: each datagram grimseld sends, one per line.
    const listener = await startNotifySocket(sock).catch((e: unknown) => { rmSync(dir, { recursive: true, force: true }); throw e; });
    try {
      await withKey(() => {}, async ([valid, reason], writers) => {
        assert.equal(valid, false);
        assert.deepEqual(writers, [1, 1]);
        await listener.said(/STATUS=.*unlicensed, one writer per storage: no license key at .*grimsel-license\.key/);
        assert.ok(listener.output().includes(reason), `the STATUS line carries the License reason '${reason}':\n${listener.output()}`);
      }, { NOTIFY_SOCKET: sock });
    } finally {
      await listener.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

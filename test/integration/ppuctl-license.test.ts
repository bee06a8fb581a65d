// `ppuctl license check` verifies as the daemons do (F8, G14): with the public key their configuration names
// (`license_public_key`, not an environment ppuctl does not share), and, without a file, each daemon's own key.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { Variant } from 'dbus-next';
import { Ppu, PPUCTL_BIN } from '../fixtures/ppu.js';
import { testIssuer } from '../fixtures/license.js';
import { GRIMSEL_IFACE } from '../../src/dbus/names.js';
import { callMethod } from '../../src/dbus/bus.js';
import { PUBLIC_KEY_ENV } from '../../src/common/license.js';

describe('ppuctl license check as the daemons check (F8, G14)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let furkadKey: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-lic-check' });
    // A distributor's own issuer: its public key named in both configuration files, no environment variable.
    const issuer = testIssuer(ppu.work);
    furkadKey = issuer.issue(path.join(ppu.work, 'furkad-license.key'));
    ppu.opts.furkad = { licensekey: furkadKey, license_public_key: issuer.publicFile };
    ppu.opts.grimseld = { licensekey: path.join(ppu.work, 'grimsel-license.key'), license_public_key: issuer.publicFile };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  function ppuctl(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const env = { ...process.env };
    delete env[PUBLIC_KEY_ENV]; // an operator's shell: not the units' environment
    return spawnSync(process.execPath, [PPUCTL_BIN, 'license', 'check', ...args,
      '--furkad-config', ppu.furkadConf, '--grimseld-config', ppu.grimseldConf], { encoding: 'utf8', env });
  }

  it('accepts a key the daemons accept, verified with the public key of their configuration', async () => {
    const [licensed, reason] = await ppu.furkaProperty<[boolean, string]>('License');
    assert.equal(licensed, true, reason);
    const r = ppuctl(furkadKey);
    assert.deepEqual([r.status, r.stdout, r.stderr], [0, `valid: ${reason}\n`, '']);
  });

  it("without a file, says each daemon's verdict on its own key, as the daemon's License says it", async () => {
    const furkad = await ppu.furkaProperty<[boolean, string]>('License');
    const props = (await ppu.client.getProxyObject('org.ppu.Grimsel', '/org/ppu/Grimsel')).getInterface('org.freedesktop.DBus.Properties');
    const grimseld = ((await callMethod(props, 'Get', GRIMSEL_IFACE, 'License')) as Variant<[boolean, string]>).value;
    assert.equal(grimseld[0], false, 'grimseld has no key');
    const r = ppuctl();
    assert.deepEqual([r.status, r.stdout], [1,
      `furkad: valid: ${furkad[1]}\ngrimseld: invalid: ${grimseld[1]}\n`]);
    assert.match(r.stdout, /grimseld: invalid: no license key at .*grimsel-license\.key/);
  });
});

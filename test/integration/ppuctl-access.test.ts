// ppuctl as an unprivileged user on a bus carrying the project's own D-Bus policy (S2, S7):
// state changes are refused in plain words, reading status works.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { Ppu, PPUCTL_BIN } from '../fixtures/ppu.js';
import { shippedPolicies } from '../fixtures/bus-policy.js';



function ppuctlAs(uid: number, address: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, PPUCTL_BIN, ...args],
      { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }));
  });
}

describe('ppuctl as an unprivileged user (S2, S7)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-access', busPolicyXml: shippedPolicies() });
    chmodSync(ppu.work, 0o755); // the bus socket lives here: others must reach it
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('is told "access denied" for a shift start (exit 1), and the shift is unchanged', async () => {
    const r = await ppuctlAs(65534, ppu.bus.address, 'shift', 'start', '-u', '500:501');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^ppuctl: access denied \(run as root or an operator\)$/m);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    const rows = await ppu.queryStatus(1);
    assert.notEqual(rows[0]?.[1], 500);
  });

  it('is told "access denied" for adding a file', async () => {
    const r = await ppuctlAs(65534, ppu.bus.address, 'add', '/etc/hostname');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /access denied/);
  });

  it('may read the status', async () => {
    const r = await ppuctlAs(65534, ppu.bus.address, 'status', '--json');
    assert.equal(r.code, 0, r.stderr);
    const parsed = JSON.parse(r.stdout) as { status: Array<{ uid: number }> };
    assert.ok(parsed.status.length > 0);
  });
});

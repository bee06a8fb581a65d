// A detector server given by a name with two addresses, the first of which its agent does not listen on: an IPv6
// address first (as the C library orders them, RFC 6724), the agent on IPv4 only as the shipped `address =
// 0.0.0.0` has it. Node 20 tries every address itself (autoSelectFamily); Node 16, CentOS 7's, asks for one and
// connects to it alone, so furkad must move on to the next (host-lookup.ts AddressOrder). Run in both tiers.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../fixtures/ppu.js';
import { ppuBehindSilentDns } from '../fixtures/private-names.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

describe('furkad with a detector server whose name has an address its agent does not listen on first (F1, F10)', function () {
  this.timeout(120_000);
  // The agent listens on 127.0.0.1 only (fixtures/agent.ts): nothing answers at ::1.
  const { ppu: ppuOf, row, usr } = ppuBehindSilentDns('::1 det-m.beamline.test\n127.0.0.1 det-m.beamline.test\n', {
    prefix: 'ppu-addresses',
    detectors: ['M'],
    transport: 'agent',
    detectorConf: { M: { remoteIP: 'det-m.beamline.test' } },
  });

  it('reaches the agent at the next address and delivers, also after the agent restarted', async () => {
    const ppu = ppuOf();
    writeImage(ppu.detectorRamdisks['M']!, 'run/a.cbf', 20_000);
    // Before, under Node 16: `retrying`, "connect ECONNREFUSED ::1:PORT", for as long as furkad ran.
    await eventually(() => listFiles(usr('M')).includes('run/a.cbf'), 40_000, "M's first file").catch(async (e: Error) => {
      throw new Error(`${e.message}; its Detectors row: ${JSON.stringify((await row('M')).slice(0, 3))}`);
    });
    await ppu.killAgent('M');
    // Nothing listens at either address now: said as such (under Node 20, which tries both, the error has no words of
    // its own, and before 2026-12-05 the reason was "connection to the agent at … failed: " and nothing more).
    await eventually(async () => /connect ECONNREFUSED .*: nothing listens on port \d+ there \(furka-agent is not running/.test((await row('M'))[2]), 30_000,
      'M said to have nothing listening').catch(async (e: Error) => { throw new Error(`${e.message}: ${JSON.stringify((await row('M')).slice(0, 3))}`); });
    await ppu.startAgent('M');
    writeImage(ppu.detectorRamdisks['M']!, 'run/b.cbf', 20_000);
    await eventually(() => listFiles(usr('M')).includes('run/b.cbf'), 40_000, "M's file after its agent restarted");
    // The agent deletes a source only once furkad's acknowledgement reaches it, which may be after the file shows (A4).
    await eventually(() => !listFiles(ppu.detectorRamdisks['M']!).some((f) => f.endsWith('.cbf')), 20_000, 'both moved off the detector (A4)');
  });
});

describe("furkad's rsync greeting check with a detector name whose first address drops every connection (F8, F10)", function () {
  this.timeout(60_000);

  it('asks the next address after one not reached, so the detector is not held `unconnected` for ever', () => {
    // A network namespace of the test's own: 10.1.0.2 on lo answers, 10.2.0.9 is routed to lo and answered by
    // nobody (no address there: every SYN is dropped), and gai.conf puts it first.
    const dir = tempDir('ppu-greeting');
    try {
      writeFileSync(path.join(dir, 'hosts'), '127.0.0.1 localhost\n10.2.0.9 det-x.test\n10.1.0.2 det-x.test\n');
      writeFileSync(path.join(dir, 'gai.conf'), 'precedence ::ffff:10.2.0.0/112 100\nprecedence ::1/128 50\nprecedence ::/0 40\nprecedence ::ffff:0:0/96 35\n');
      const probe = path.join(__dirname, '..', 'fixtures', 'greeting-probe.js');
      const script = `mount --bind ${dir}/hosts /etc/hosts && mount --bind ${dir}/gai.conf /etc/gai.conf && ip link set lo up && ` +
        'ip addr add 10.1.0.2/32 dev lo && ip route add 10.2.0.0/16 dev lo && ' +
        `[ "$(getent ahosts det-x.test | head -n 1 | cut -d ' ' -f 1)" = 10.2.0.9 ] && exec "$0" ${probe} 10.1.0.2 8730`;
      const out = execFileSync('unshare', ['-mn', 'sh', '-c', script, process.execPath], { encoding: 'utf8', timeout: 30_000 });
      const verdicts = JSON.parse(out.trim().split('\n').pop()!) as unknown[];
      // Before: ["unconnected","unconnected","unconnected"] under Node 16, the detector never run (rsync, which tries
      // every address itself, would have reached it).
      assert.deepEqual(verdicts, ['unconnected', 'greeted', 'greeted'], out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

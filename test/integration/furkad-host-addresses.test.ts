// A detector server given by a name with two addresses, the first of which its agent does not listen on: an IPv6
// address first (as the C library orders them, RFC 6724), the agent on IPv4 only as the shipped `address =
// 0.0.0.0` has it. Node 20 tries every address itself (autoSelectFamily); Node 16, CentOS 7's, asks for one and
// connects to it alone, so furkad must move on to the next (host-lookup.ts AddressOrder). Run in both tiers.
import { strict as assert } from 'node:assert';
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
    await ppu.startAgent('M');
    writeImage(ppu.detectorRamdisks['M']!, 'run/b.cbf', 20_000);
    await eventually(() => listFiles(usr('M')).includes('run/b.cbf'), 40_000, "M's file after its agent restarted");
    assert.deepEqual(listFiles(ppu.detectorRamdisks['M']!).filter((f) => f.endsWith('.cbf')), [], 'both moved off the detector (A4)');
  });
});

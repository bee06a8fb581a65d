// Detector server names looked up outside furkad's process (host-lookup.ts): getent's answer in the shapes
// net.connect asks for, under Node 16 (one address) and Node 20's autoSelectFamily (all of them) (F1, F10).
import { strict as assert } from 'node:assert';
import type { LookupAddress } from 'node:dns';
import * as net from 'node:net';
import { addressesOf, hostLookup } from '../../src/furkad/host-lookup.js';

const ask = (name: string, options: { all?: boolean; family?: number }): Promise<{ err: Error | null; address: string | LookupAddress[]; family?: number }> =>
  new Promise((resolve) => hostLookup(name, options, (err, address, family) => resolve({ err, address, ...(family === undefined ? {} : { family }) })));

describe('host-lookup: detector server names (F1, F10)', () => {
  it("takes each address of getent ahosts' STREAM lines once, in its order", () => {
    const out = '10.0.0.2        STREAM det.example\n10.0.0.2        DGRAM  \n10.0.0.2        RAW    \n' +
      'fd00::2         STREAM \nfd00::2         DGRAM  \n10.0.0.3        STREAM \n';
    assert.deepEqual(addressesOf(out), [{ address: '10.0.0.2', family: 4 }, { address: 'fd00::2', family: 6 }, { address: '10.0.0.3', family: 4 }]);
  });

  it('answers one address (Node 16) or all of them (all: Node 20), as the C library has them', async () => {
    const one = await ask('localhost', {});
    assert.equal(one.err, null);
    assert.ok(typeof one.address === 'string' && net.isIP(one.address) !== 0, String(one.address));
    const all = await ask('localhost', { all: true });
    assert.equal(all.err, null);
    assert.ok(Array.isArray(all.address) && all.address.length > 0 && all.address.some((a) => a.address === one.address));
  });

  it('says a name that does not resolve, naming it', async () => {
    const r = await ask('no-such-host.invalid', { all: true });
    assert.match(String(r.err?.message), /the name 'no-such-host\.invalid' (does not resolve|was not resolved)/);
  });

  it('never takes a name for an option of getent', async () => {
    const r = await ask('--help', {});
    assert.match(String(r.err?.message), /the name '--help' (does not resolve|was not resolved)/);
  });
});

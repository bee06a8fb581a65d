// Detector server names looked up outside furkad's process (host-lookup.ts): getent's answer in the shapes
// net.connect asks for, under Node 16 (one address) and Node 20's autoSelectFamily (all of them) (F1, F10).
import { strict as assert } from 'node:assert';
import type { LookupAddress } from 'node:dns';
import * as net from 'node:net';
import { AddressOrder, addressesOf, hostLookup } from '../../src/furkad/host-lookup.js';

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

  it("answers one address (Node 16) from the one after the last not reached, and keeps one reached first", () => {
    const order = new AddressOrder();
    const list: LookupAddress[] = [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }, { address: '10.0.0.3', family: 4 }];
    const first = (): string => order.order('det', list)[0]!.address;
    assert.equal(first(), '::1', "the C library's order while nothing failed");
    order.notReached('det', '::1');
    assert.equal(first(), '127.0.0.1');
    assert.equal(first(), '127.0.0.1', 'reached (nothing said): stays first at every later attempt');
    assert.deepEqual(order.order('det', list).map((a) => a.address), ['127.0.0.1', '10.0.0.3', '::1'], 'the others after it, in turn');
    order.notReached('det', '127.0.0.1');
    order.notReached('det', '10.0.0.3');
    assert.equal(first(), '::1', 'round again after the last');
    order.notReached('other', '::1');
    assert.equal(first(), '::1', "another name's failures are its own");
    order.notReached('det', '192.0.2.1');
    assert.equal(first(), '::1', 'an address the name no longer has changes nothing');
    const one = new AddressOrder();
    one.order('single', [list[0]!]);
    one.notReached('single', '::1');
    assert.equal(one.order('single', [list[0]!, list[1]!])[0]!.address, '::1', 'a name with one address keeps it');
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

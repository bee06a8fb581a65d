// Connections to the agent that carry no key are bounded in number and time (A1): a local user of an allowed
// host opened idle ones until the agent ran out of descriptors and died (found by a hostile tester).
import { strict as assert } from 'node:assert';
import { KeylessSessions } from '../../src/agent/keyless-sessions.js';

class Conn {
  destroyed = false;
  constructor(readonly name: string) {}
  destroy(): void { this.destroyed = true; }
}

describe('connections without the key (agent, A1)', () => {
  it('closes the oldest waiting one when more than the most wait, never one that carried the key', () => {
    const closed: string[] = [];
    const keyless = new KeylessSessions<Conn>((c, why) => closed.push(`${c.name} ${why}`), 2, 60_000);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => new Conn(n)) as [Conn, Conn, Conn, Conn];
    keyless.add(a);
    keyless.add(b);
    keyless.keyed(a);
    keyless.add(c);
    assert.deepEqual(closed, [], 'a carried the key: two wait, as many as may');
    keyless.add(d);
    assert.deepEqual(closed, ['b crowded'], 'the oldest waiting one, not the keyed a');
    assert.equal(a.destroyed, false);
    assert.equal(b.destroyed, true);
    assert.equal(keyless.size, 2);
    keyless.gone(c);
    keyless.gone(d);
    assert.equal(keyless.size, 0);
  });

  it('closes one that sent no keyed request in time, and not one that did or that closed itself', async () => {
    const closed: string[] = [];
    const keyless = new KeylessSessions<Conn>((c, why) => closed.push(`${c.name} ${why}`), 10, 30);
    const [slow, quick, left] = ['slow', 'quick', 'left'].map((n) => new Conn(n)) as [Conn, Conn, Conn];
    keyless.add(slow);
    keyless.add(quick);
    keyless.add(left);
    keyless.keyed(quick);
    keyless.gone(left);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(closed, ['slow timeout']);
    assert.deepEqual([slow.destroyed, quick.destroyed, left.destroyed], [true, false, false]);
  });
});

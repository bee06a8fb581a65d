// Group commit for a stream of items (src/common/batches.ts): used by furkad's placement and grimseld's FIFO.
import { strict as assert } from 'node:assert';
import { Batches } from '../../src/common/batches.js';

describe('batches (group commit)', () => {
  it('hands a lone item on at once and groups what arrives meanwhile, in order, up to the maximum', async () => {
    const seen: number[][] = [];
    let release: () => void = () => {};
    const b = new Batches<number>(async (batch) => {
      seen.push(batch);
      if (seen.length === 1) await new Promise<void>((r) => { release = r; });
    }, 3);
    b.push(1);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [[1]], 'the first item does not wait for company');
    b.push(2, 3);
    b.push(4, 5);
    assert.equal(b.waiting, 4);
    release();
    await b.drained();
    assert.deepEqual(seen, [[1], [2, 3, 4], [5]]);
    assert.equal(b.waiting, 0);
  });

  it('drained() waits for batches pushed while it waits', async () => {
    const seen: number[] = [];
    const b = new Batches<number>(async (batch) => {
      seen.push(...batch);
      if (batch[0] === 1) b.push(2);
    });
    b.push(1);
    await b.drained();
    assert.deepEqual(seen, [1, 2]);
  });
});

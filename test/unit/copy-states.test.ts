// The packed per-file copy states (BENCHMARKS.md) must read back exactly as they were set, with few storages (one
// integer) and with many (a byte array); a verified copy (I2) is a copied one that says so.
import { strict as assert } from 'node:assert';
import { allPending, doneEverywhere, doneOn, failedForGood, stateAt, verifiedOn, withState } from '../../src/grimseld/copy-states.js';

describe('packed copy states (BENCHMARKS.md)', () => {
  for (const storages of [1, 3, 10, 11, 40]) {
    it(`reads back every state set, ${storages} storage(s)`, () => {
      let p = allPending(storages);
      assert.equal(typeof p, storages <= 10 ? 'number' : 'object');
      const want: Array<[string, boolean]> = [];
      for (let i = 0; i < storages; i++) {
        const [state, mark] = ([['pending', false], ['copied', false], ['failed', false], ['failed', true], ['copied', true]] as const)[i % 5]!;
        p = withState(p, i, state, mark);
        want.push([state, mark]);
      }
      if (typeof p === 'number') assert.ok(Number.isSafeInteger(p) && p >= 0 && p < 2 ** 30, 'a small integer');
      want.forEach(([state, mark], i) => {
        assert.equal(stateAt(p, i), state, `storage ${i}`);
        assert.equal(failedForGood(p, i), state === 'failed' && mark, `storage ${i} for good`);
        assert.equal(verifiedOn(p, i), state === 'copied' && mark, `storage ${i} verified`);
        assert.equal(doneOn(p, i), state === 'copied' || mark, `storage ${i} done`);
      });
      assert.equal(doneEverywhere(p, storages), false);
      for (let i = 0; i < storages; i++) p = withState(p, i, 'copied');
      assert.equal(doneEverywhere(p, storages), true);
    });
  }

  it('a retry that fails again is no longer failed for good; a copy clears a failure', () => {
    let p = withState(allPending(2), 1, 'failed', true);
    assert.equal(failedForGood(p, 1), true);
    p = withState(p, 1, 'failed');
    assert.deepEqual([stateAt(p, 1), failedForGood(p, 1), doneOn(p, 1)], ['failed', false, false]);
    p = withState(p, 1, 'copied');
    assert.deepEqual([stateAt(p, 0), stateAt(p, 1)], ['pending', 'copied']);
  });

  it('a verified copy is copied and done; copied again unverified, it is no longer verified (I2)', () => {
    let p = withState(allPending(3), 2, 'copied', true);
    assert.deepEqual([stateAt(p, 2), verifiedOn(p, 2), doneOn(p, 2), verifiedOn(p, 1)], ['copied', true, true, false]);
    p = withState(p, 2, 'copied');
    assert.deepEqual([stateAt(p, 2), verifiedOn(p, 2)], ['copied', false]);
  });
});

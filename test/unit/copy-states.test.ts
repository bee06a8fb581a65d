// The packed per-file copy states (issue 7) must read back exactly as they were set, with few storages (one
// integer) and with many (a byte array).
import { strict as assert } from 'node:assert';
import { allPending, doneEverywhere, doneOn, failedForGood, stateAt, withState } from '../../src/grimseld/copy-states.js';

describe('packed copy states (issue 7)', () => {
  for (const storages of [1, 3, 15, 16, 40]) {
    it(`reads back every state set, ${storages} storage(s)`, () => {
      let p = allPending(storages);
      assert.equal(typeof p, storages <= 15 ? 'number' : 'object');
      const want: Array<[string, boolean]> = [];
      for (let i = 0; i < storages; i++) {
        const [state, forGood] = ([['pending', false], ['copied', false], ['failed', false], ['failed', true]] as const)[i % 4]!;
        p = withState(p, i, state, forGood);
        want.push([state, forGood]);
      }
      want.forEach(([state, forGood], i) => {
        assert.equal(stateAt(p, i), state, `storage ${i}`);
        assert.equal(failedForGood(p, i), forGood, `storage ${i} for good`);
        assert.equal(doneOn(p, i), state === 'copied' || forGood, `storage ${i} done`);
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
});

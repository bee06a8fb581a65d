// The id index of live file records (issue 7) must behave as a Map whatever the order ids come and go in,
// and must not span many more ids than it holds when a few old records stay.
import { strict as assert } from 'node:assert';
import { IdIndex } from '../../src/grimseld/id-index.js';

function check(index: IdIndex<string>, model: Map<number, string>): void {
  assert.equal(index.size, model.size);
  for (const [id, v] of model) assert.equal(index.get(id), v, `id ${id}`);
  assert.deepEqual([...index.values()].sort(), [...model.values()].sort());
}

describe('id index of live records (issue 7)', () => {
  it('behaves as a Map through random inserts (mostly in order) and deletes (mostly oldest first)', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const index = new IdIndex<string>();
    const model = new Map<number, string>();
    let next = 1;
    for (let step = 0; step < 60_000; step++) {
      const r = rand(100);
      if (r < 50) {
        const id = rand(20) === 0 ? 1 + rand(next) : next++; // now and then an old id again (a replay)
        index.set(id, `v${id}`);
        model.set(id, `v${id}`);
      } else if (model.size) {
        const ids = [...model.keys()];
        const id = r < 90 ? ids[0]! : ids[rand(ids.length)]!;
        assert.equal(index.delete(id), model.delete(id));
      }
      assert.equal(index.delete(next + 5), false);
      if (step % 5000 === 0) check(index, model);
    }
    check(index, model);
  });

  it('moves a record that stays to the side instead of spanning every id since', () => {
    const index = new IdIndex<string>();
    index.set(1, 'stuck');
    for (let id = 2; id < 50_000; id++) {
      index.set(id, `v${id}`);
      index.delete(id);
    }
    assert.equal(index.size, 1);
    assert.equal(index.get(1), 'stuck');
    assert.deepEqual([...index.values()], ['stuck']);
    index.set(60_000, 'new');
    assert.deepEqual([...index.values()], ['stuck', 'new'], 'the oldest first');
    assert.equal(index.delete(1), true);
    assert.equal(index.get(1), undefined);
    assert.equal(index.size, 1);
  });
});

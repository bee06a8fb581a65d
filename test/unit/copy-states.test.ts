// The packed per-file state (issue 7): copy states per storage, origins and the replicated part of the path
// must read back exactly as they were set, with few storages (one integer) and with many (a byte array).
import { strict as assert } from 'node:assert';
import { allPending, doneEverywhere, doneOn, failedForGood, stateAt, withState } from '../../src/grimseld/copy-states.js';
import { FileRecord, type NewFile } from '../../src/grimseld/file-record.js';

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

describe('file record (issue 7)', () => {
  const f: NewFile = { src: '/ramdisk/1mf/500_501/a/f.cbf', rel: '1mf/500_501/a/f.cbf', size: 3, mtimeMs: 1700000000123.25, ino: 2 ** 40, dev: 7 };

  it('keeps the replicated part as the end of the source path, or as its own string when it is not', () => {
    const r = new FileRecord(1, 5n, f, 2, true);
    assert.equal(r.rel, f.rel);
    assert.equal(r.src, f.src);
    assert.equal(new FileRecord(2, 5n, { ...f, rel: 'elsewhere/f.cbf' }, 2, true).rel, 'elsewhere/f.cbf');
    assert.equal(new FileRecord(3, 5n, { ...f, rel: 'f.cbf' }, 2, true).rel, 'f.cbf');
    assert.equal(new FileRecord(4, 5n, { ...f, rel: 'b/f.cbf', src: '/ramdisk/ab/f.cbf' }, 2, true).rel, 'b/f.cbf', 'not cut inside a component');
  });

  it('sets ramdisk and internal origins independently, and knows where it lies', () => {
    const r = new FileRecord(1, 5n, f, 2, true);
    assert.deepEqual([r.ramdisk, r.internal, r.onRamdisk], ['present', 'present', true]);
    r.ramdisk = 'linked';
    r.internal = 'gone';
    assert.deepEqual([r.ramdisk, r.internal, r.onRamdisk], ['linked', 'gone', true]);
    r.ramdisk = 'deleted';
    assert.deepEqual([r.ramdisk, r.internal], ['deleted', 'gone']);
    assert.equal(new FileRecord(2, 5n, f, 2, false).onRamdisk, false);
  });

  it('recognises the same file by inode, device, size and mtime', () => {
    const r = new FileRecord(1, 5n, f, 1, true);
    assert.equal(r.sameAs({ ...f }), true);
    assert.equal(r.sameAs({ ...f, ino: 3 }), false);
    assert.equal(r.sameAs({ ...f, mtimeMs: f.mtimeMs + 1 }), false);
  });
});

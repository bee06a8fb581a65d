// A wedged copy thread stops the watchdog's pings; one waiting on a hung storage does not (S1, G1, G12).
import { strict as assert } from 'node:assert';
import { CopyWatch, STALL_MS } from '../../src/grimseld/copy-watch.js';

describe('the watch over a copy thread (S1, G12)', () => {
  it('calls a thread that makes progress moving, however long its copy takes', () => {
    const w = new CopyWatch();
    for (let t = 0, step = 0; t < 10 * STALL_MS; t += 1000, step++) {
      assert.equal(w.look(t, step, t).verdict, 'moving', `at ${t} ms`);
    }
  });

  it('calls a thread spinning without progress for STALL_MS wedged, and says so once', () => {
    const w = new CopyWatch();
    w.look(0, 7, 500);
    assert.equal(w.look(STALL_MS - 1, 7, 500 + STALL_MS - 1).verdict, 'moving', 'not before the bound');
    assert.deepEqual(w.look(STALL_MS, 7, 500 + STALL_MS), { verdict: 'spinning', stalledMs: STALL_MS, news: true });
    assert.deepEqual(w.look(STALL_MS + 1000, 7, 1500 + STALL_MS), { verdict: 'spinning', stalledMs: STALL_MS + 1000, news: false });
    assert.equal(w.look(STALL_MS + 2000, 8, 2500 + STALL_MS).verdict, 'moving', 'progress again: moving');
  });

  it('calls a thread asleep in the kernel (a hung storage) blocked, never wedged', () => {
    const w = new CopyWatch();
    w.look(0, 3, 100);
    const r = w.look(STALL_MS * 5, 3, 100 + STALL_MS); // a fifth of a CPU over the stall
    assert.deepEqual(r, { verdict: 'blocked', stalledMs: STALL_MS * 5, news: true });
    assert.equal(w.look(STALL_MS * 6, 3, 100 + STALL_MS).news, false, 'said once');
  });

  it('calls a stall wedged when the thread\'s CPU time is unknown', () => {
    const w = new CopyWatch();
    w.look(0, 1, undefined);
    assert.equal(w.look(STALL_MS, 1, undefined).verdict, 'spinning');
  });

  it('starts afresh with the next copy after the thread was idle', () => {
    const w = new CopyWatch(1000);
    w.look(0, 5, 0);
    assert.equal(w.look(5000, 5, 5000).verdict, 'spinning');
    w.idle();
    assert.equal(w.look(10_000, 5, 5000).verdict, 'moving', 'the same count after idling is a new copy, not a stall');
    assert.equal(w.look(10_500, 5, 5500).verdict, 'moving');
    assert.equal(w.look(11_000, 5, 6000).verdict, 'spinning');
  });
});

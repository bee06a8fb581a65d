// Waiting loops must not leak abort listeners (found as MaxListenersExceededWarning under systemd).
import { strict as assert } from 'node:assert';
import { getEventListeners } from 'node:events';
import { sleep, wakeOrAbort } from '../../src/common/abort.js';

describe('cancellable waits', () => {
  it('leave no abort listener behind after waking, however often they wait', async () => {
    const ctl = new AbortController();
    for (let i = 0; i < 100; i++) {
      await wakeOrAbort((wake) => setImmediate(wake), ctl.signal);
      await sleep(0, ctl.signal);
    }
    assert.equal(getEventListeners(ctl.signal, 'abort').length, 0);
  });

  it('end at once when the signal aborts', async () => {
    const ctl = new AbortController();
    const waiting = wakeOrAbort(() => {}, ctl.signal);
    ctl.abort();
    await waiting;
    await wakeOrAbort(() => {}, ctl.signal); // already aborted: does not hang
  });
});

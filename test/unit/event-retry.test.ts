// A file event the agent's catalog cannot handle (out of descriptors: EMFILE) ended the agent; now it is said once
// and a rescan follows, again until one goes through (found by a hostile tester).
import { strict as assert } from 'node:assert';
import { EventRetry } from '../../src/agent/event-retry.js';
import type { Logger } from '../../src/common/logger.js';

describe('file events that fail (agent, A2)', () => {
  it('says the first failure, rescans after the pause until a rescan goes through, and says that once', async () => {
    const said: string[] = [];
    const log = { error: (_o: unknown, m: string) => said.push(`error ${m}`), info: (_o: unknown, m: string) => said.push(`info ${m}`) } as unknown as Logger;
    let rescans = 0;
    let failing = 2;
    const retry = new EventRetry(() => {
      rescans++;
      if (failing-- > 0) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    }, log, 10);
    retry.run('a file event (complete)', () => { throw new Error('EMFILE: too many open files, open /ramdisk'); });
    retry.run('a file event (complete)', () => { throw new Error('EMFILE again'); });
    assert.equal(said.length, 1, 'one line for a run of failures');
    assert.match(said[0]!, /^error cannot handle a file event \(complete\): looking at the whole tree again in 0\.01 s/);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(rescans, 3, 'two rescans failed, the third went through; one timer at a time');
    assert.match(said[1]!, /^info the tree could be looked at again/);
    assert.equal(said.length, 2);
    retry.run('a file event (complete)', () => undefined);
    retry.close();
  });
});

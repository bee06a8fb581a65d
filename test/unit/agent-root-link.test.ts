// furka-agent's root through a symbolic link pointed elsewhere while it runs: said, with what to do (A2).
import { strict as assert } from 'node:assert';
import { RootLink } from '../../src/agent/root-link.js';
import type { Logger } from '../../src/common/logger.js';

describe('furka-agent: a root reached through a link pointed elsewhere (A2)', () => {
  function recording(): { log: Logger; lines: string[] } {
    const lines: string[] = [];
    const at = (level: string) => (_o: unknown, msg: string) => { lines.push(`${level} ${msg}`); };
    return { log: { debug() {}, info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger, lines };
  }

  it('says at start what a linked root is served as, warns once when the link leads elsewhere, and says when it leads back', () => {
    const { log, lines } = recording();
    let target = '/dev/shm/real';
    const link = new RootLink('/ramdisk', '/dev/shm/real', log, () => target);
    assert.match(lines[0]!, /^info root \/ramdisk is \/dev\/shm\/real \(a symbolic link on the way\)/);
    link.check();
    assert.equal(lines.length, 1, 'nothing while it leads where it did');
    target = '/dev/shm/real2';
    link.check();
    link.check();
    assert.equal(lines.length, 2, 'warned once');
    assert.match(lines[1]!, /^warn root \/ramdisk now leads to \/dev\/shm\/real2, but the agent serves \/dev\/shm\/real.*systemctl restart furka-agent/);
    target = '/dev/shm/real';
    link.check();
    assert.match(lines[2]!, /^info root \/ramdisk is \/dev\/shm\/real again/);
  });

  it('says nothing of a root that is no link, nor of one that cannot be resolved for a moment', () => {
    const { log, lines } = recording();
    const link = new RootLink('/ramdisk/', '/ramdisk', log, () => { throw new Error('ENOENT'); });
    link.check();
    assert.deepEqual(lines, []);
  });
});

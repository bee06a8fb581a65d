// A test box with both packages, whose agent root holds furkad's target (the shipped configs: root /ramdisk, target
// /ramdisk/./1mf): the agent announced each file furkad placed, furkad fetched it again and placed it one level
// deeper, for ever (found by a tester, session 36). The agent now announces nothing below a directory that holds
// furkad's staging directory. With the real inotifywait, as the agent's main.ts wires it.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Announcement } from '../../src/agent/catalog.js';
import { FurkadTargets } from '../../src/agent/furkad-targets.js';
import type { Watcher } from '../../src/agent/watcher.js';
import type { Logger } from '../../src/common/logger.js';
import { watchedCatalog } from '../fixtures/watched-catalog.js';

describe('furka-agent: nothing below a furkad target is announced (a test box with both packages)', function () {
  this.timeout(30_000);

  it('takes a directory holding .furkad-staging for a target, with every directory below it, and looks again once it goes', () => {
    const holding = new Set(['ppu']);
    const found: string[] = [];
    const looked: string[] = [];
    const t = new FurkadTargets((dir) => { looked.push(dir); return holding.has(dir); }, (dir) => found.push(dir));
    assert.equal(t.contains(Buffer.from('run/a.cbf')), false);
    assert.equal(t.contains(Buffer.from('ppu/1000_1000/deep/a.cbf')), true);
    assert.equal(t.contains(Buffer.from('ppu/b.cbf')), true);
    assert.equal(t.contains(Buffer.from('ppux/b.cbf')), false, 'a name that only begins like a target');
    assert.deepEqual(found, ['ppu'], 'said once');
    const before = looked.length;
    t.contains(Buffer.from('ppu/1000_1000/other.cbf'));
    assert.equal(looked.length, before, 'looked at once per directory');
    // furkad makes its staging in a directory already looked at: the kernel's event says so.
    holding.add('run');
    t.dirNew(Buffer.from('run/.furkad-staging'));
    assert.equal(t.contains(Buffer.from('run/a.cbf')), true);
    assert.deepEqual(found, ['ppu', 'run']);
    // Its staging removed: the directory is looked at again.
    holding.delete('ppu');
    t.dirGone(Buffer.from('ppu/.furkad-staging'));
    assert.equal(t.contains(Buffer.from('ppu/b.cbf')), false);
    // A staging of root's still open to others (furkad closes it when it prepares staging, with no event): not yet a
    // target, and looked at again each time, not taken for none for good (found by a review).
    let closed = false;
    const later = new FurkadTargets((dir) => (dir === 'ppu' ? (closed ? true : undefined) : false), () => undefined);
    assert.equal(later.contains(Buffer.from('ppu/a.cbf')), false);
    closed = true;
    assert.equal(later.contains(Buffer.from('ppu/b.cbf')), true);
    // The root itself a target: everything is furkad's.
    const root = new FurkadTargets((dir) => dir === '', () => undefined);
    assert.equal(root.contains(Buffer.from('a.cbf')), true);
  });

  describe('with a real catalog and inotifywait', () => {
    let work: string;
    let root: string;
    let said: Announcement[];
    let warnings: string[];
    let watcher: Watcher;

    beforeEach(async () => {
      work = mkdtempSync(path.join(os.tmpdir(), 'agent-targets-'));
      root = path.join(work, 'ramdisk');
      // furkad started first: its target and staging are there before the agent.
      mkdirSync(path.join(root, '1mf', '.furkad-staging', '1MF'), { recursive: true, mode: 0o700 });
      mkdirSync(path.join(root, 'run'));
      // A detector user's look-alike in the root, open to others as a user's is (furkad's is root's, 0700): no target.
      mkdirSync(path.join(root, '.furkad-staging'), { mode: 0o755 });
      said = [];
      warnings = [];
      const log = { debug() {}, info() {}, warn: (_o: unknown, msg: string) => { warnings.push(msg); }, error() {} } as unknown as Logger;
      ({ watcher } = await watchedCatalog(root, log, { announced: (a) => said.push(a) }));
    });
    afterEach(() => {
      watcher.stop();
      rmSync(work, { recursive: true, force: true });
    });

    const paths = (): string[] => said.flatMap((a) => (a.t === 'file' ? [a.entry.path] : []));
    const until = async (what: string, ok: () => boolean): Promise<void> => {
      for (const end = Date.now() + 10_000; !ok();) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; announced: ${JSON.stringify(paths())}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    /** furkad's placing: written in its staging, renamed into the shift's directory. */
    const place = (target: string, rel: string): void => {
      const staged = path.join(root, target, '.furkad-staging', '1MF', path.basename(rel));
      mkdirSync(path.dirname(staged), { recursive: true, mode: 0o700 });
      writeFileSync(staged, `placed ${rel}`);
      mkdirSync(path.dirname(path.join(root, target, rel)), { recursive: true });
      renameSync(staged, path.join(root, target, rel));
    };

    it("announces the detector's files and none that furkad placed, in a target found at the start or made later", async () => {
      place('1mf', '1000_1000/scan1/img_1.cbf');
      writeFileSync(path.join(root, 'run', 'a.cbf'), 'detector a');
      await until('run/a.cbf announced', () => paths().includes('run/a.cbf'));
      // A furkad target made while the agent runs (a second detector's, say): its staging comes after the directory.
      mkdirSync(path.join(root, '2mf'));
      await new Promise((r) => setTimeout(r, 300));
      place('2mf', '1000_1000/img_2.cbf');
      writeFileSync(path.join(root, 'run', 'b.cbf'), 'detector b');
      await until('run/b.cbf announced', () => paths().includes('run/b.cbf'));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(paths().filter((p) => !p.startsWith('run/')), [], 'nothing furkad placed is announced');
      assert.equal(warnings.filter((w) => /it is a furkad's target/.test(w)).length, 2, `said once for each target: ${warnings.join('\n')}`);
    });
  });
});

// The internal directories G5 emptied go, up to the shift's own (its user's): never a shared root-owned one, the
// target, a directory a copy still goes into, one holding a file, nor anything reached through a link (G5).
import { strict as assert } from 'node:assert';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmptiedDirs } from '../../src/grimseld/emptied-dirs.js';
import { dirsOf } from '../../src/common/paths.js';

describe('removing the internal directories of ended shifts G5 emptied', () => {
  let target: string;
  /** `rel` and the directories on the way that are not there yet, made `uid`'s. */
  const dir = (rel: string, uid = 500): string => {
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const p = path.join(target, ...parts.slice(0, i));
      if (existsSync(p)) continue;
      mkdirSync(p);
      chownSync(p, uid, uid);
    }
    return path.join(target, rel);
  };
  beforeEach(() => {
    target = mkdtempSync(path.join(os.tmpdir(), 'emptied-'));
    dir('1mf', 0);
  });
  afterEach(() => rmSync(target, { recursive: true, force: true }));

  it('removes the emptied directories and the shift directory, deepest first, and keeps the shared one and the target', () => {
    dir('1mf/500_501/run1/deep'); dir('1mf/500_501/run2');
    const e = new EmptiedDirs();
    e.note('1mf/500_501/run1/deep/a.cbf');
    e.note('1mf/500_501/run2/b.cbf');
    assert.deepEqual(e.remove(target, new Set(), 1), { removed: 4, errors: [] });
    assert.equal(existsSync(path.join(target, '1mf', '500_501')), false);
    assert.equal(existsSync(path.join(target, '1mf')), true, 'the per-detector directory (root\'s) stays');
    assert.equal(e.size, 0);
  });

  it('keeps a directory holding a file and its parents, tries it again at two more shift changes, then lets it go', () => {
    writeFileSync(path.join(dir('1mf/500_501/run1'), 'notes.txt'), 'x');
    const e = new EmptiedDirs();
    e.note('1mf/500_501/run1/a.cbf');
    for (const epoch of [1, 1, 1, 2]) {
      assert.equal(e.remove(target, new Set(), epoch).removed, 0);
      assert.equal(e.size, 1, `still noted at epoch ${epoch}`);
    }
    assert.equal(e.due(2), false, 'nothing new at the same shift change: not looked at again on every tick');
    assert.equal(e.due(3), true, 'looked at again at the next shift change');
    assert.equal(e.remove(target, new Set(), 3).removed, 0);
    assert.equal(e.size, 0, 'let go after three shift changes');
    assert.equal(e.due(4), false);
    e.note('1mf/500_501/run2/b.cbf');
    assert.equal(e.due(3), true, 'a directory noted since');
    assert.equal(existsSync(path.join(target, '1mf/500_501/run1/notes.txt')), true);
  });

  it('keeps what a copy still to be made goes into', () => {
    dir('1mf/500_501/run1'); dir('1mf/500_501/run2');
    const e = new EmptiedDirs();
    e.note('1mf/500_501/run1/a.cbf');
    const busy = dirsOf(['1mf/500_501/run2/new.cbf']);
    assert.equal(e.remove(target, busy, 1).removed, 1, 'run1 only');
    assert.equal(existsSync(path.join(target, '1mf/500_501/run2')), true);
  });

  it('removes nothing root\'s (no owners kept, or a root shift)', () => {
    dir('1mf/0_0/run1', 0);
    const e = new EmptiedDirs();
    e.note('1mf/0_0/run1/a.cbf');
    assert.equal(e.remove(target, new Set(), 1).removed, 0);
    assert.equal(existsSync(path.join(target, '1mf/0_0/run1')), true);
  });

  it('never follows a link the user put in place of a directory', () => {
    const outside = mkdtempSync(path.join(os.tmpdir(), 'emptied-outside-'));
    try {
      mkdirSync(path.join(outside, 'run1'));
      chownSync(path.join(outside, 'run1'), 500, 500);
      dir('1mf/500_501');
      symlinkSync(outside, path.join(target, '1mf/500_501/linked'));
      const e = new EmptiedDirs();
      e.note('1mf/500_501/linked/run1/a.cbf');
      assert.deepEqual(e.remove(target, new Set(), 1), { removed: 0, errors: [] });
      assert.equal(existsSync(path.join(outside, 'run1')), true, 'nothing removed through the link');
      assert.equal(e.size, 0);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });
});

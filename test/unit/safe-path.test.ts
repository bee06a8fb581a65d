// Directory checks below a storage target (SPEC G3): one realpath call must refuse exactly what the
// component-by-component walk refuses: a link or a file anywhere below the base.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assertNoLinks, dirState, makeDirsNoFollow, makeDirsOwned, UnsafePath } from '../../src/grimseld/safe-path.js';

describe('safe paths below a storage target (G3)', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'safe-path-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('tells real, missing and linked directories apart', () => {
    const base = path.join(root, 'target');
    mkdirSync(path.join(base, 'a', 'b'), { recursive: true });
    mkdirSync(path.join(root, 'outside', 'b'), { recursive: true });
    symlinkSync(path.join(root, 'outside'), path.join(base, 'l'));
    writeFileSync(path.join(base, 'file'), 'x');
    assert.equal(dirState(base, base), 'safe');
    assert.equal(dirState(base, path.join(base, 'a', 'b')), 'safe');
    assert.equal(dirState(base, path.join(base, 'a', 'c')), 'missing');
    assert.equal(dirState(base, path.join(base, 'l')), 'unsafe');
    assert.equal(dirState(base, path.join(base, 'l', 'b')), 'unsafe');
    assert.equal(dirState(base, path.join(base, 'file')), 'unsafe');
    assert.equal(dirState(base, path.join(base, 'file', 'x')), 'unsafe');
    assert.throws(() => assertNoLinks(base, path.join(base, 'l', 'b')), UnsafePath);
    assert.throws(() => makeDirsNoFollow(base, path.join(base, 'l', 'new')), /refusing to follow the symbolic link/);
  });

  it('accepts a base that is itself a link (the administrator\'s choice)', () => {
    mkdirSync(path.join(root, 'real', 'a'), { recursive: true });
    symlinkSync(path.join(root, 'real'), path.join(root, 'target'));
    const base = path.join(root, 'target');
    assert.equal(dirState(base, path.join(base, 'a')), 'safe');
    assertNoLinks(base, path.join(base, 'a'));
  });

  it('gives each directory on the way its owner, and a shared one found owned by a user back to root, 0755 (G3, F4)', () => {
    const base = path.join(root, 'target');
    // 1mf as the first user of an earlier version left it: theirs, group and world writable.
    mkdirSync(path.join(base, '1mf'), { recursive: true });
    chownSync(path.join(base, '1mf'), 65534, 65534);
    chmodSync(path.join(base, '1mf'), 0o777);
    const dir = path.join(base, '1mf', '500_501', 'run');
    makeDirsOwned(base, dir, (i) => (i === 0 ? undefined : [500, 501]));
    const owner = (p: string): [number, number, string] => {
      const st = lstatSync(path.join(base, p));
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    assert.deepEqual(owner('1mf'), [0, 0, '755']);
    assert.deepEqual(owner('1mf/500_501'), [500, 501, '755']);
    assert.deepEqual(owner('1mf/500_501/run'), [500, 501, '755']);
    // A usrdir made by someone else (the user who owned 1mf) is given to its shift.
    chownSync(path.join(base, '1mf', '500_501'), 65534, 65534);
    makeDirsOwned(base, dir, (i) => (i === 0 ? undefined : [500, -1]));
    assert.deepEqual(owner('1mf/500_501').slice(0, 2), [500, 65534], '-1 keeps the gid');
    symlinkSync(root, path.join(base, 'l'));
    assert.throws(() => makeDirsOwned(base, path.join(base, 'l', 'x'), () => undefined), /refusing to follow the symbolic link/);
  });
});

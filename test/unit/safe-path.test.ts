// Directory checks below a storage target (SPEC G3): one realpath call must refuse exactly what the
// component-by-component walk refuses: a link or a file anywhere below the base.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assertNoLinks, dirState, makeDirsNoFollow, UnsafePath } from '../../src/grimseld/safe-path.js';

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
});

// The directories of a batch of copies (G3, G4; docs/threat-model.md): walked from a trusted directory
// without following links, held, and given their owners through the handle (what safe-path.ts checked by
// name before).
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UnsafePath } from '../../src/common/dir-fd.js';
import { HeldDirs, ownerVisit } from '../../src/grimseld/copy-dirs.js';

describe('directories of a batch of copies (G3, G4)', () => {
  let root: string;
  let dirs: HeldDirs;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'copy-dirs-'));
    dirs = new HeldDirs(true);
  });
  afterEach(() => {
    dirs.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('tells real, missing and linked directories apart, and makes nothing through a link', () => {
    const base = path.join(root, 'target');
    mkdirSync(path.join(base, 'a', 'b'), { recursive: true });
    mkdirSync(path.join(root, 'outside', 'b'), { recursive: true });
    symlinkSync(path.join(root, 'outside'), path.join(base, 'l'));
    writeFileSync(path.join(base, 'file'), 'x');
    assert.equal(dirs.source(base, 'a/b').depth, 2);
    assert.throws(() => dirs.source(base, 'a/c'), /ENOENT/);
    for (const bad of ['l', 'l/b', 'file', 'file/x']) assert.throws(() => dirs.source(base, bad), UnsafePath, bad);
    assert.throws(() => dirs.storage(base, 'l/new'), (e: Error) => e instanceof UnsafePath && e.message.includes(path.join(base, 'l')) && /symbolic link/.test(e.message));
    assert.equal(existsSync(path.join(root, 'outside', 'new')), false);
  });

  it("accepts a trusted directory that is itself a link (the administrator's choice), and makes a missing storage target", () => {
    mkdirSync(path.join(root, 'real', 'a'), { recursive: true });
    symlinkSync(path.join(root, 'real'), path.join(root, 'target'));
    dirs.source(path.join(root, 'target'), 'a');
    dirs.storage(path.join(root, 'new-target'), 'x/y');
    assert.ok(lstatSync(path.join(root, 'new-target', 'x', 'y')).isDirectory());
  });

  it('keeps a held directory for the batch: swapped for a link meanwhile, it is still the one used', () => {
    const base = path.join(root, 'target');
    mkdirSync(path.join(base, 'u', 'run'), { recursive: true });
    mkdirSync(path.join(root, 'victim'));
    const first = dirs.storage(base, 'u/run').dir;
    renameSync(path.join(base, 'u'), path.join(base, 'u.moved'));
    symlinkSync(path.join(root, 'victim'), path.join(base, 'u'));
    assert.equal(dirs.storage(base, 'u/run').dir, first, 'the same handle');
    writeFileSync(first.at('f'), 'x');
    assert.ok(existsSync(path.join(base, 'u.moved', 'run', 'f')));
    // A new batch walks again and refuses the link.
    dirs.close();
    assert.throws(() => new HeldDirs(false).storage(base, 'u/run'), UnsafePath);
  });

  it('gives each directory on the way its owner, and a shared one found owned by a user back to root, 0755 (G3, F4)', () => {
    const base = path.join(root, 'target');
    // 1mf as the first user of an earlier version left it: theirs, group and world writable.
    mkdirSync(path.join(base, '1mf'), { recursive: true });
    chownSync(path.join(base, '1mf'), 65534, 65534);
    chmodSync(path.join(base, '1mf'), 0o777);
    const make = (owners: (i: number) => [number, number] | undefined, key: string): void => {
      const d = new HeldDirs(false);
      try {
        d.storage(base, '1mf/500_501/run', ownerVisit(owners), key);
      } finally {
        d.close();
      }
    };
    make((i) => (i === 0 ? undefined : [500, 501]), 'a');
    const owner = (p: string): [number, number, string] => {
      const st = lstatSync(path.join(base, p));
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    assert.deepEqual(owner('1mf'), [0, 0, '755']);
    assert.deepEqual(owner('1mf/500_501'), [500, 501, '755']);
    assert.deepEqual(owner('1mf/500_501/run'), [500, 501, '755']);
    // Found owned by the shift's user with another group: -1 keeps the gid, nothing changes.
    chownSync(path.join(base, '1mf', '500_501'), 500, 65534);
    make((i) => (i === 0 ? undefined : [500, -1]), 'b');
    assert.deepEqual(owner('1mf/500_501').slice(0, 2), [500, 65534], '-1 keeps the gid');
    // The user gave it to another group of theirs (chgrp): still theirs; the shift's group comes back.
    make((i) => (i === 0 ? undefined : [500, 501]), 'b2');
    assert.deepEqual(owner('1mf/500_501').slice(0, 2), [500, 501]);
    // A usrdir made by someone else (the user who owned 1mf) is never handed to the shift: it becomes root's.
    chownSync(path.join(base, '1mf', '500_501'), 65534, 65534);
    chmodSync(path.join(base, '1mf', '500_501'), 0o777);
    make((i) => (i === 0 ? undefined : [500, 501]), 'c');
    assert.deepEqual(owner('1mf/500_501'), [0, 0, '755']);
    assert.deepEqual(owner('1mf/500_501/run'), [500, 501, '755'], 'found already the shift\'s: kept');
    symlinkSync(root, path.join(base, 'l'));
    assert.throws(() => new HeldDirs(false).storage(base, 'l/x', ownerVisit(() => undefined)), /symbolic link/);
  });

  it('tells the stats of the source directories from the trusted root up', () => {
    const base = path.join(root, 'ramdisk');
    mkdirSync(path.join(base, '1mf', 'u'), { recursive: true });
    chownSync(path.join(base, '1mf', 'u'), 500, 501);
    const held = dirs.source(base, '1mf/u');
    assert.deepEqual([0, 1].map((j) => held.statAt(j)?.uid), [0, 500]);
    assert.equal(held.statAt(-1)?.ino, lstatSync(base).ino, 'the root');
    assert.equal(held.statAt(-2)?.ino, lstatSync(root).ino, 'above the root, by name');
    assert.equal(held.statAt(-1000), undefined, "above '/'");
  });
});

// The directories a file goes into when a file holds a name on its way: numbered like files (F2, G3).
import { strict as assert } from 'node:assert';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DirFd, UnsafePath } from '../../src/common/dir-fd.js';
import { takenDirOf, walkNumbered } from '../../src/common/numbered-dirs.js';

describe('numbered directories (F2, G3)', () => {
  let root: string;
  let top: DirFd;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'numbered-dirs-'));
    top = DirFd.open(root);
  });
  afterEach(() => {
    top.close();
    rmSync(root, { recursive: true, force: true });
  });

  const walk = (rel: string, make = true): string => {
    const d = walkNumbered(top, rel, make);
    d.dir.close();
    return d.rel;
  };

  it('takes the name when it is free or a directory, and the first numbered one that is when a file holds it', () => {
    assert.equal(walk('a/Y'), 'a/Y');
    writeFileSync(path.join(root, 'a', 'Z'), 'a file');
    assert.equal(walk('a/Z/b'), 'a/Z.~1~/b');
    assert.ok(lstatSync(path.join(root, 'a', 'Z')).isFile(), 'the file stays');
    assert.equal(walk('a/Z/c'), 'a/Z.~1~/c', 'later files of Z/ join it');
    writeFileSync(path.join(root, 'a', 'W'), 'a file');
    writeFileSync(path.join(root, 'a', 'W.~1~'), 'another');
    assert.equal(walk('a/W'), 'a/W.~2~');
  });

  it('without make, follows the same names and makes nothing', () => {
    writeFileSync(path.join(root, 'Z'), 'a file');
    assert.throws(() => walk('Z/b', false), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    assert.ok(!existsSync(path.join(root, 'Z.~1~')));
    mkdirSync(path.join(root, 'Z.~1~', 'b'), { recursive: true });
    assert.equal(walk('Z/b', false), 'Z.~1~/b');
  });

  it('still refuses a symbolic link on the way, naming it', () => {
    mkdirSync(path.join(root, 'elsewhere'));
    symlinkSync(path.join(root, 'elsewhere'), path.join(root, 'L'));
    assert.throws(() => walk('L/x'), (e: Error) => e instanceof UnsafePath && /L: it is a symbolic link/.test(e.message));
    assert.ok(!existsSync(path.join(root, 'L.~1~')));
  });

  it('names the directory a file held', () => {
    assert.equal(takenDirOf('u/a/Y/g.img', 'u/a/Y.~1~/g.img'), 'u/a/Y');
    assert.equal(takenDirOf('u/a/Y/g.img', 'u/a/Y/g.img.~1~'), undefined);
  });
});

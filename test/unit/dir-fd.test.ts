// Operations relative to a held directory (docs/threat-model.md): a directory swapped for a link after it was
// opened changes nothing about where the operations land, and a link on the way is refused, never followed.
import { strict as assert } from 'node:assert';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { fillInodes, mountTmpfs, unmount } from '../fixtures/tmpfs.js';
import * as path from 'node:path';
import { components, DirFd, splitRel, UnsafePath } from '../../src/common/dir-fd.js';

describe('directory handles (DirFd)', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'dir-fd-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('keeps acting in the directory it opened after that directory is swapped for a link', () => {
    mkdirSync(path.join(root, 'u', 'run8'), { recursive: true });
    mkdirSync(path.join(root, 'victim'));
    writeFileSync(path.join(root, 'staged'), 'image');
    DirFd.with(DirFd.open(root), (top) => DirFd.with(top.walk('u/run8'), (run8) => {
      // The user swaps the directory for a link to the victim while we hold it.
      renameSync(path.join(root, 'u', 'run8'), path.join(root, 'u', 'run8x'));
      symlinkSync(path.join(root, 'victim'), path.join(root, 'u', 'run8'));
      linkSync(path.join(root, 'staged'), run8.at('a.img'));
      renameSync(run8.at('a.img'), run8.at('b.img'));
      assert.equal(run8.lstat('b.img')?.isFile(), true);
      assert.deepEqual(run8.names(), ['b.img'], 'listed: the directory held, not the victim');
    }));
    assert.equal(readFileSync(path.join(root, 'u', 'run8x', 'b.img'), 'utf8'), 'image', 'landed in the directory held');
    assert.deepEqual(existsSync(path.join(root, 'victim', 'b.img')), false, 'nothing in the victim');
  });

  it('refuses a link or a file on the way, and makes missing directories without following anything', () => {
    mkdirSync(path.join(root, 'victim'));
    mkdirSync(path.join(root, 'u'));
    symlinkSync(path.join(root, 'victim'), path.join(root, 'u', 'l'));
    writeFileSync(path.join(root, 'u', 'f'), 'x');
    const top = DirFd.open(root);
    try {
      assert.throws(() => top.walk('u/l/x', true), (e: Error) => e instanceof UnsafePath && /u\/l: it is a symbolic link/.test(e.message));
      assert.throws(() => top.walk('u/f/x', true), (e: Error) => e instanceof UnsafePath && /not a directory/.test(e.message));
      assert.throws(() => top.walk('u/missing'), /ENOENT/);
      const seen: Array<[number, boolean]> = [];
      DirFd.with(top.walk('u/new/deeper', true, (_d, st, made, i) => { assert.ok(st.isDirectory()); seen.push([i, made]); }), () => undefined);
      assert.deepEqual(seen, [[0, false], [1, true], [2, true]]);
      assert.equal(lstatSync(path.join(root, 'u', 'new', 'deeper')).isDirectory(), true);
      assert.equal(existsSync(path.join(root, 'victim', 'x')), false);
    } finally {
      top.close();
    }
  });

  it('opens files without following a final link, and unlinks the link rather than its target', () => {
    writeFileSync(path.join(root, 'secret'), 'root only');
    symlinkSync(path.join(root, 'secret'), path.join(root, 'link'));
    DirFd.with(DirFd.open(root), (top) => {
      assert.throws(() => top.openFile('link', 0), /ELOOP/);
      unlinkSync(top.at('link'));
    });
    assert.equal(readFileSync(path.join(root, 'secret'), 'utf8'), 'root only');
  });

  it('takes single names only, and relative paths without ..', () => {
    DirFd.with(DirFd.open(root), (top) => {
      for (const bad of ['', '.', '..', 'a/b']) assert.throws(() => top.at(bad), UnsafePath, bad);
    });
    assert.deepEqual(components('./a//b/.'), ['a', 'b']);
    assert.throws(() => components('a/../b'), UnsafePath);
    assert.throws(() => components('/etc'), UnsafePath);
    assert.deepEqual(splitRel('a/b/c.img'), ['a/b', 'c.img']);
    assert.deepEqual(splitRel('c.img'), ['', 'c.img']);
  });

  it('fails loudly when used after close', () => {
    const d = DirFd.open(root);
    d.close();
    assert.throws(() => d.at('x'), /used after close/);
  });

  it('walks paths of raw bytes (names that are not UTF-8), lists names as bytes, lstats with nanoseconds', () => {
    const odd = Buffer.from([0x72, 0xe9, 0x73]); // 'rés' in Latin-1: not UTF-8
    mkdirSync(Buffer.concat([Buffer.from(`${root}/`), odd]));
    writeFileSync(Buffer.concat([Buffer.from(`${root}/`), odd, Buffer.from('/f')]), 'x');
    assert.deepEqual(components(Buffer.concat([Buffer.from('./'), odd, Buffer.from('//f')])), [odd, Buffer.from('f')]);
    assert.throws(() => components(Buffer.from('a/../b')), UnsafePath);
    DirFd.with(DirFd.open(root), (top) => DirFd.with(top.walk(Buffer.concat([odd, Buffer.from('/')])), (d) => {
      assert.deepEqual(d.list(), [Buffer.from('f')]);
      assert.equal(typeof d.lstatBig('f')?.mtimeNs, 'bigint');
      assert.equal(d.lstatBig('none'), undefined);
      assert.deepEqual(top.list(), [odd]);
    }));
  });

  it('follows a link on the way only when the caller trusts it', () => {
    mkdirSync(path.join(root, 'real'));
    writeFileSync(path.join(root, 'real', 'f'), 'x');
    symlinkSync(path.join(root, 'real'), path.join(root, 'l'));
    DirFd.with(DirFd.open(root), (top) => {
      assert.throws(() => top.walk('l'), /it is a symbolic link/);
      const seen: number[] = [];
      assert.throws(() => top.walk('l', false, undefined, (_d, st) => { seen.push(st.uid); return false; }), /it is a symbolic link/);
      assert.deepEqual(seen, [process.getuid!()], 'asked with the link\'s own lstat');
      DirFd.with(top.walk('l', false, undefined, () => true), (d) => assert.equal(d.lstat('f')?.isFile(), true));
    });
  });
});

describe('errors of directory handles name the directory (readablePaths)', () => {
  it("names the directory a mkdir failed in, not '/proc/self/fd/N' (a full storage's COPY_ERROR said that)", function () {
    // A file system without free inodes: the first mkdir below its root fails with ENOSPC.
    const root = mountTmpfs(mkdtempSync(path.join(os.tmpdir(), 'dirfd-full-')), 1 << 20, { inodes: 2 });
    try {
      fillInodes(root);
      const top = DirFd.open(root);
      try {
        assert.throws(() => top.walk('shift/run', true), (e: NodeJS.ErrnoException) => {
          assert.equal(e.code, 'ENOSPC');
          assert.doesNotMatch(e.message, /\/proc\/self\/fd/);
          assert.ok(e.message.includes(`'${root}/shift'`), e.message);
          return true;
        });
      } finally {
        top.close();
      }
    } finally {
      unmount(root);
      rmSync(root, { recursive: true, force: true });
    }
  });
});

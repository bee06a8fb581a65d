// Which file systems furkad's rsync runs compare mtimes on to the nanosecond (mtime-precision.ts, F2): a tmpfs PPU
// ramdisk does; an ext4 of 128-byte inodes (ext3-like, whole seconds) does not, where every copy's time would
// differ from its source's and every file would be sent again at every run. Real mounts, as root.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../fixtures/ppu.js';
import { mountImage, mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';
import { keepsNanoseconds } from '../../src/furkad/mtime-precision.js';

describe('furkad: which file systems keep sub-second mtimes (F2)', function () {
  this.timeout(60_000);
  let work: string;

  before(() => {
    work = tempDir('mtime-precision');
  });
  after(() => {
    unmountAll();
    rmSync(work, { recursive: true, force: true });
  });

  it('says yes for a tmpfs and no for an ext4 of 128-byte inodes (whole seconds), and leaves nothing of its probe behind', () => {
    const ramdisk = path.join(mountTmpfs(path.join(work, 'tmpfs'), 4 << 20), 'temp');
    mkdirSync(ramdisk);
    const image = path.join(work, 'ext3.img');
    writeFileSync(image, '');
    execFileSync('truncate', ['-s', '16M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-I', '128', image]);
    const coarse = path.join(mountImage(image, path.join(work, 'ext3')), 'temp');
    mkdirSync(coarse);
    assert.equal(keepsNanoseconds(ramdisk), true, 'tmpfs');
    assert.equal(keepsNanoseconds(coarse), false, 'ext4 with 128-byte inodes');
    assert.deepEqual([readdirSync(ramdisk), readdirSync(coarse)], [[], []], 'no probe left');
    assert.equal(keepsNanoseconds(path.join(work, 'no-such-dir')), false, 'a directory that is not there');
  });
});

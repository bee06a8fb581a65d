// The kernel's list of inotify watches, read as the agent reads it to find directories inotifywait skipped (A2),
// against a real inotifywait. Two tmpfs mounts number their inodes alike (each root is inode 1 or so): a
// directory on one must not count as watched because its twin on the other is. On btrfs stat(2) gives each
// subvolume a device of its own, not the file system's that the list names: a watched directory there must
// still count as watched, and an unwatched one not. Unit tier; the mounts need root (and mkfs.btrfs, from
// btrfs-progs).
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dirId, watchedDirs, watchId, WatchList } from '../../src/agent/watch-check.js';
import { mountImage, mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

describe('the list of watches names a directory by its device and inode (A2)', function () {
  this.timeout(30000);
  let work: string;
  const children: ChildProcess[] = [];

  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'watch-check-'));
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    unmountAll();
    rmSync(work, { recursive: true, force: true });
  });

  /** A real `inotifywait -m` (`-r`: with every directory below) on `dirs`, once its watches are in place. */
  const inotifywait = async (recursive: boolean, ...dirs: string[]): Promise<number> => {
    const child = spawn('inotifywait', ['-m', ...(recursive ? ['-r'] : []), '-e', 'close_write', ...dirs], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      let said = '';
      child.stderr!.on('data', (d: Buffer) => {
        said += d.toString();
        if (said.includes('Watches established')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`inotifywait ended (${code}): ${said}`)));
    });
    return child.pid!;
  };
  const watched = (list: WatchList, dir: string): boolean => list.has(dirId(statSync(dir, { bigint: true })), Buffer.from(dir));
  const ino = (dir: string): bigint => statSync(dir, { bigint: true }).ino;

  it('counts the watched one of two look-alike directories on two tmpfs mounts, and not the other', async () => {
    const one = mountTmpfs(path.join(work, 'a'), 1 << 20);
    const twin = mountTmpfs(path.join(work, 'b'), 1 << 20);
    mkdirSync(path.join(one, 'run'));
    mkdirSync(path.join(twin, 'run'));
    const [wa, wb] = [statSync(one, { bigint: true }), statSync(twin, { bigint: true })];
    assert.equal(wa.ino, wb.ino, 'precondition: two fresh tmpfs number their roots alike');
    assert.notEqual(wa.dev, wb.dev);
    const list = watchedDirs(await inotifywait(true, one));
    assert.ok(watched(list, one), 'the watched root');
    assert.ok(watched(list, path.join(one, 'run')), 'and its subdirectory');
    assert.ok(!watched(list, twin), 'the twin root, same inode on another device, is not');
    assert.ok(!watched(list, path.join(twin, 'run')), 'nor its subdirectory');
    // A directory on the disk /tmp is on: another device, another inode.
    const disk = mkdtempSync(path.join(os.tmpdir(), 'watch-check-disk-'));
    try {
      assert.ok(!watched(list, disk));
    } finally {
      rmSync(disk, { recursive: true });
    }
  });

  it('on btrfs, whose subvolumes stat gives devices of their own, counts the watched directories and only those', async () => {
    const image = path.join(work, 'btrfs.img');
    writeFileSync(image, '');
    truncateSync(image, 200 << 20); // mkfs.btrfs takes 114 MB at least
    execFileSync('mkfs.btrfs', ['-q', image]);
    const fs = mountImage(image, path.join(work, 'btrfs'));
    execFileSync('btrfs', ['subvolume', 'create', path.join(fs, 'sv')], { stdio: 'ignore' });
    for (const d of ['top', 'sv/run', 'sv/run/a', 'sv/run/a/b']) mkdirSync(path.join(fs, d));
    const all = watchedDirs(await inotifywait(true, fs));
    for (const d of ['', 'top', 'sv', 'sv/run', 'sv/run/a', 'sv/run/a/b']) assert.ok(watched(all, path.join(fs, d)), `${d || 'the top level'} is watched`);
    for (const c of children.splice(0)) c.kill('SIGKILL');

    // Watched: the top level (inode 256) and, on a tmpfs, a directory with the inode its `top` has (257).
    const other = mountTmpfs(path.join(work, 'other'), 1 << 20);
    let twin = '';
    for (let i = 0; ino(twin || other) < ino(path.join(fs, 'top')); i++) mkdirSync((twin = path.join(other, `d${i}`)));
    assert.equal(ino(twin), ino(path.join(fs, 'top')), 'precondition: a tmpfs directory with the inode of btrfs\'s top');
    const some = watchedDirs(await inotifywait(false, fs, twin));
    assert.ok(watched(some, fs), 'the top level is watched');
    assert.ok(watched(some, twin), 'so is the tmpfs directory');
    assert.ok(!watched(some, path.join(fs, 'top')), "top is not: the tmpfs directory's inode is another file system's");
    assert.ok(!watched(some, path.join(fs, 'sv', 'run', 'a')), 'nor a directory in the subvolume');
  });

  it('reads the device numbers as the kernel writes them, major above minor', () => {
    // 8:17 (sdb1) and 259:65537 as fdinfo writes them (hex, major << 20 | minor) and as stat gives them (glibc's dev_t).
    for (const [major, minor] of [[8n, 17n], [259n, 65537n]] as const) {
      const glibc = (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
      assert.equal(watchId('5', ((major << 20n) | minor).toString(16)), dirId({ dev: glibc, ino: 5n }), `${major}:${minor}`);
    }
    assert.notEqual(watchId('5', (8n << 20n | 17n).toString(16)), dirId({ dev: (17n << 8n) | 8n, ino: 5n }), 'major and minor not swapped');
  });
});

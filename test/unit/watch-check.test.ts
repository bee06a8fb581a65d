// The kernel's list of inotify watches, read as the agent reads it to find directories inotifywait skipped (A2),
// against a real inotifywait. Two tmpfs mounts number their inodes alike (each root is inode 1 or so): a
// directory on one must not count as watched because its twin on the other is. On btrfs stat(2) gives each
// subvolume a device of its own, not the file system's that the list names: a watched directory there must
// still count as watched. Unit tier; the mounts need root (and mkfs.btrfs, from btrfs-progs).
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dirId, isWatched, mountedDevices, watchedDirs, type Watches } from '../../src/agent/watch-check.js';
import { mountTmpfs, unmount, unmountAll } from '../fixtures/tmpfs.js';

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

  /** A real `inotifywait -m -r` on `dirs`, once its watches are in place. */
  const inotifywait = async (...dirs: string[]): Promise<number> => {
    const child = spawn('inotifywait', ['-m', '-r', '-e', 'close_write', ...dirs], { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const watched = (list: Watches, dir: string): boolean => isWatched(list, dirId(statSync(dir, { bigint: true })), mountedDevices());

  it('counts the watched one of two look-alike directories on two tmpfs mounts, and not the other', async () => {
    const one = mountTmpfs(path.join(work, 'a'), 1 << 20);
    const twin = mountTmpfs(path.join(work, 'b'), 1 << 20);
    mkdirSync(path.join(one, 'run'));
    mkdirSync(path.join(twin, 'run'));
    const [wa, wb] = [statSync(one, { bigint: true }), statSync(twin, { bigint: true })];
    assert.equal(wa.ino, wb.ino, 'precondition: two fresh tmpfs number their roots alike');
    assert.notEqual(wa.dev, wb.dev);
    const list = watchedDirs(await inotifywait(one));
    assert.ok(watched(list, one), `the watched root is in ${[...list.ids].join(' ')}`);
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

  it('counts a watched directory on btrfs as watched, in a subvolume too, though stat gives another device than the list', async () => {
    const image = path.join(work, 'btrfs.img');
    writeFileSync(image, '');
    truncateSync(image, 200 << 20); // mkfs.btrfs takes 114 MB at least
    execFileSync('mkfs.btrfs', ['-q', image]);
    const fs = path.join(work, 'btrfs');
    mkdirSync(fs);
    execFileSync('mount', ['-o', 'loop', image, fs]);
    try {
      execFileSync('btrfs', ['subvolume', 'create', path.join(fs, 'sv')], { stdio: 'ignore' });
      mkdirSync(path.join(fs, 'top'));
      mkdirSync(path.join(fs, 'sv', 'run'));
      const list = watchedDirs(await inotifywait(fs));
      const sdevs = new Set([...list.ids].map((id) => id.slice(0, id.lastIndexOf(':'))));
      assert.ok(!sdevs.has(dirId(statSync(fs, { bigint: true })).replace(/:\d+$/, '')),
        'precondition: stat gives the top level a device the list does not name');
      for (const d of [fs, path.join(fs, 'top'), path.join(fs, 'sv'), path.join(fs, 'sv', 'run')]) {
        assert.ok(watched(list, d), `${d} is watched (list: ${[...list.ids].join(' ')})`);
      }
      const unwatched = mkdtempSync(path.join(work, 'not-btrfs-'));
      assert.ok(!watched(list, unwatched), 'a directory outside it is not');
    } finally {
      for (const c of children.splice(0)) c.kill('SIGKILL');
      unmount(fs);
    }
  });

  it('decides by inode alone only where stat gives a device no mount has', () => {
    const list: Watches = { ids: new Set(['0:41:256', '0:27:1']), inodes: new Set(['256', '1']) };
    const mounted = new Set(['0:41', '0:27', '8:1']);
    assert.ok(isWatched(list, '0:27:1', mounted));
    assert.ok(!isWatched(list, '8:1:1', mounted), 'a mounted device: its own inode 1 is not watched');
    assert.ok(isWatched(list, '0:42:256', mounted), 'a btrfs subvolume\'s device: by inode');
    assert.ok(!isWatched(list, '0:42:257', mounted));
  });

  it('reads the device numbers as the kernel writes them, major above minor', () => {
    // glibc's dev_t of 8:17 (sdb1) and of 259:65537, against "major:minor:inode".
    assert.equal(dirId({ dev: (8n << 8n) | 17n, ino: 5n }), '8:17:5');
    const major = 259n;
    const minor = 65537n;
    const dev = (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
    assert.equal(dirId({ dev, ino: 7n }), '259:65537:7');
  });
});

// The kernel's list of inotify watches, read as the agent reads it to find directories inotifywait skipped (A2),
// against a real inotifywait. Two tmpfs mounts number their inodes alike (each root is inode 1 or so): a
// directory on one must not count as watched because its twin on the other is. Unit tier; mounts need root.
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dirId, watchedDirs } from '../../src/agent/watch-check.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

describe('the list of watches names a directory by its device and inode (A2)', function () {
  this.timeout(20000);
  let work: string;
  let child: ChildProcess | undefined;

  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'watch-check-'));
  });
  after(() => {
    child?.kill('SIGKILL');
    unmountAll();
    rmSync(work, { recursive: true, force: true });
  });

  it('counts the watched one of two look-alike directories on two tmpfs mounts, and not the other', async () => {
    const watched = mountTmpfs(path.join(work, 'a'), 1 << 20);
    const twin = mountTmpfs(path.join(work, 'b'), 1 << 20);
    mkdirSync(path.join(watched, 'run'));
    mkdirSync(path.join(twin, 'run'));
    const [wa, wb] = [statSync(watched, { bigint: true }), statSync(twin, { bigint: true })];
    assert.equal(wa.ino, wb.ino, 'precondition: two fresh tmpfs number their roots alike');
    assert.notEqual(wa.dev, wb.dev);
    child = spawn('inotifywait', ['-m', '-r', '-e', 'close_write', watched], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let said = '';
      child!.stderr!.on('data', (d: Buffer) => {
        said += d.toString();
        if (said.includes('Watches established')) resolve();
      });
      child!.on('exit', (code) => reject(new Error(`inotifywait ended (${code}): ${said}`)));
    });
    const list = watchedDirs(child.pid!);
    assert.ok(list.has(dirId(wa)), `the watched root is in ${[...list].join(' ')}`);
    assert.ok(list.has(dirId(statSync(path.join(watched, 'run'), { bigint: true }))), 'and its subdirectory');
    assert.ok(!list.has(dirId(wb)), 'the twin root, same inode on another device, is not');
    assert.ok(!list.has(dirId(statSync(path.join(twin, 'run'), { bigint: true }))), 'nor its subdirectory');
    // A directory on the disk /tmp is on: its device has another major number than tmpfs's 0.
    const disk = mkdtempSync(path.join(os.tmpdir(), 'watch-check-disk-'));
    try {
      assert.ok(!list.has(dirId(statSync(disk, { bigint: true }))));
    } finally {
      rmSync(disk, { recursive: true });
    }
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

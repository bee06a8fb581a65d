// A storage whose mount point is a bind mount of a directory of the same file system (the same device), taken away
// with `umount -l` while files stream in (G13, G3, G5). Its mount point keeps the device, so a check by device alone
// let up to a second of copies (until the next reading of the mount table) land in the bare directory beneath,
// counted copied, to be hidden once the bind was back while a shift change deleted their originals. Now the
// directory at the mount point (its inode) is compared too: nothing lands in the bare directory, the files wait,
// and all are copied once the bind is back.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';

const MB = 1024 * 1024;

describe('a storage that is a bind mount of a directory of the same file system, unmounted with umount -l (G13, G5)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let real: string;
  let mnt: string;
  let bound = false;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-bind', ramdiskBytes: 64 * MB });
    const internal = mountTmpfs(path.join(ppu.storageRoot, 'internal'), 64 * MB);
    const disk = mountTmpfs(path.join(ppu.work, 'one-disk'), 64 * MB);
    real = path.join(disk, 'real');
    mnt = path.join(disk, 'mnt');
    mkdirSync(path.join(real, 'data'), { recursive: true });
    mkdirSync(mnt);
    execFileSync('mount', ['--bind', real, mnt]);
    bound = true;
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(internal, 'data'), mountpoint: internal, n_copy_processes: 2 },
      'storage.ext': { type: 'EXTERNAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 2 },
    };
    await ppu.start();
    await ppu.startShift(1500, 1501, []);
  });
  after(async () => {
    if (bound) execFileSync('umount', ['-l', mnt]);
    await ppu?.stop();
  });

  it('writes nothing into the bare directory while the bind is away, keeps the files pending, and copies them all once it is back', async () => {
    const ext = async (): Promise<string | undefined> => (await ppu.queryStatus(-1)).find((r) => r[1] === 1500 && r[3] === 'ext')?.slice(4, 7).join();
    const files: WrittenFile[] = [];
    const stream = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        files.push(writeImage(ppu.detectorRamdisks['1MF']!, `run/f${String(i).padStart(4, '0')}.cbf`, 20_000 + i));
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    // About 100 Hz; the bind taken away in the middle of the stream, as h7's tester did, three times: the time left
    // to the next reading of the mount table (what the device alone relied on) is up to a second, at random.
    for (let round = 0; round < 3; round++) {
      const streaming = stream(round * 150, round * 150 + 150);
      await new Promise((r) => setTimeout(r, 700));
      execFileSync('umount', ['-l', mnt]);
      bound = false;
      await streaming;
      await eventually(async () => (await ext())?.startsWith('0,') === false, 30_000, 'files pending for the storage while it is away');
      // Past a reading of the mount table (once a second): what the storages got meanwhile has settled.
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual(readdirSync(mnt), [], `round ${round}: nothing in the bare directory beneath the bind`);
      execFileSync('mount', ['--bind', real, mnt]);
      bound = true;
      await eventually(async () => (await ext()) === `0,${files.length},0`, 60_000, `all ${files.length} counted copied to the storage once the bind is back`);
    }
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(real, 'data/1mf/1500_1501', f.rel))), f.sha256, `${f.rel} on the storage`);
  });
});

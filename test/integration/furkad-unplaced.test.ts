// A file fetched over the agent transport that cannot be given its final name on the PPU ramdisk (a tmpfs out of
// inodes: the fetch fit, the link into the shift's directory does not), with a real furka-agent and real tmpfs
// limits (F1, F10, A4). Found by a hostile tester: furkad logged "retrying", but nothing retried such a file; it
// stayed on the detector until the connection to the agent dropped, and the detector showed as idle.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

const MB = 1024 * 1024;

type Row = [string, string, string, bigint, bigint, bigint];

/** Inodes in use on the file system at `dir` (statfs: files less free ones). */
function inodesUsed(dir: string): number {
  const [files, free] = execFileSync('stat', ['-f', '-c', '%c %d', dir], { encoding: 'utf8' }).trim().split(' ').map(Number);
  return files! - free!;
}

describe('furkad over the agent: a fetched file that cannot be placed (PPU ramdisk out of inodes; F1, F10, A4)', function () {
  this.timeout(180_000);

  it('retries the placement by itself, shows the detector retrying with the reason, and places it once there are inodes again (F1, F10, A4)', async () => {
    const ppu = await new Ppu({ prefix: 'ppu-unplaced', transport: 'agent', ramdiskBytes: 16 * MB }).start();
    try {
      await ppu.startShift(4242, 4243, []);
      const placed = (rel: string): string => path.join(ppu.ppuRamdisk, '1mf/4242_4243', rel);
      const onDetector = (rel: string): string => path.join(ppu.detectorRamdisks['1MF']!, rel);
      const row = async (): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;
      // A first file: the shift's directory and staging exist, nothing more is made on the ramdisk for the next.
      const first = writeImage(ppu.detectorRamdisks['1MF']!, 'first.img', 1000);
      await eventually(() => existsSync(placed(first.rel)) && !existsSync(onDetector(first.rel)), 30_000, 'the first file placed, its source removed');
      await eventually(async () => (await ppu.queryStatus(-1)).every((r) => r[4] === 0n), 30_000, 'the first file copied');

      // One inode left: the fetch into staging takes it, the link into the shift's directory finds none (ENOSPC).
      execFileSync('mount', ['-o', `remount,nr_inodes=${inodesUsed(ppu.ppuRamdisk) + 1}`, ppu.ppuRamdisk]);
      const second = writeImage(ppu.detectorRamdisks['1MF']!, 'second.img', 2000);
      await ppu.furkad!.proc.said(/second\.img.*cannot move a transferred file into place; retrying|cannot move a transferred file into place; retrying.*second\.img/, 30_000);
      await eventually(async () => { const r = await row(); return r[1] === 'retrying' && /second\.img.*no space left on device/i.test(r[2]); }, 20_000,
        "Detectors to show 1MF retrying, naming the file that cannot be placed and why (not 'idle')");
      assert.ok(existsSync(onDetector(second.rel)), 'its source stays on the detector while it is not placed (A4)');
      assert.ok(!existsSync(placed(second.rel)), 'not placed');

      // Inodes again: placed by the transport's own retry (no reconnect), its source removed, staging empty.
      execFileSync('mount', ['-o', 'remount,nr_inodes=100000', ppu.ppuRamdisk]);
      await eventually(() => existsSync(placed(second.rel)), 60_000, 'the file placed once there are inodes again');
      await eventually(() => !existsSync(onDetector(second.rel)), 20_000, 'its source removed once it was placed');
      await eventually(async () => { const r = await row(); return r[1] !== 'retrying' && r[2] === ''; }, 20_000, 'the detector no longer retrying, lastError cleared');
      assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')), [], 'nothing left in staging');
      assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf/4242_4243')).sort(), ['first.img', 'second.img'], 'each placed once, under its own name');
      await eventually(async () => (await ppu.queryStatus(-1)).every((r) => r[4] === 0n), 30_000, 'both copied');
      const copied = listFiles(path.join(ppu.storageRoot, 'internal')).filter((f) => f.includes('second.img'));
      assert.deepEqual(copied, ['1mf/4242_4243/second.img'], 'copied once');
      assert.equal(readFileSync(path.join(ppu.storageRoot, 'internal', copied[0]!)).length, second.size);
      assert.ok(!/connection to the agent lost/.test(ppu.furkad!.proc.output()), 'no reconnect was needed');
      const said = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes('second.img') && l.includes('cannot move a transferred file into place'));
      assert.equal(said.length, 1, `logged once, not at every retry: ${said.length}`);
    } finally {
      await ppu.stop();
    }
  });
});

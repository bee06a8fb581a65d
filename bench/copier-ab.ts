// The copier alone, in this process, with and without reading each copy back (I2): an A/B of verify_copies
// that needs no daemons and little time, for a machine too busy for `npm run bench` (whose verify suite runs
// grimseld itself). Source on a tmpfs (the PPU ramdisk), copies to the disk below the temp directory; each
// timed run starts from an empty storage and a `sync`, yes and no interleaved, medians over the rounds. Two
// ways: one thread copying one batch after the other (the read-back's whole cost, nothing to hide it behind),
// and grimseld's way, four writers handing batches to copy threads (copy-threads.ts), where one copy's
// read-back can overlap another's fsync. One thread also copies with hashing turned off: the baseline that
// says what I1 and I2 together cost.
// `node dist/bench/copier-ab.js [rounds] [bulkFiles] [smallFiles]`
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyMany } from '../src/grimseld/copier.js';
import type { CopyWork as CopyJob } from '../src/grimseld/copy-job.js';
import { CopyThreads } from '../src/grimseld/copy-threads.js';
import { prepareCopies } from '../src/grimseld/copy-check.js';
import { Checksum, checksumOfFile } from '../src/common/checksum.js';
import { median, ratio } from './stats.js';

/** The key of copy temp names (temp-names.ts). */
const tempKey = randomBytes(32);

const MB = 1 << 20;

function makeSet(dir: string, n: number, size: number): CopyJob[] {
  mkdirSync(dir, { recursive: true });
  return Array.from({ length: n }, (_, i) => {
    const src = path.join(dir, `f${i}.raw`);
    writeFileSync(src, randomBytes(size));
    const st = statSync(src);
    return { src, root: path.dirname(dir), dest: '', expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false };
  });
}

const WRITERS = 4;

function batches(jobs: CopyJob[], storage: string, batch: number): CopyJob[][] {
  const out: CopyJob[][] = [];
  for (let i = 0; i < jobs.length; i += batch) out.push(jobs.slice(i, i + batch).map((j) => ({ ...j, dest: path.join(storage, path.relative(j.root, j.src)) })));
  return out;
}

/**
 * Copies `jobs` to `storage` in batches of `batch`, one after the other in this thread; returns seconds.
 * `unhashed`: hashing turned off, the baseline of what I1 and I2 cost: nothing read back, and the hasher's
 * update() a no-op in this process for the run (the jobs carry no checksum, so nothing is compared). The
 * copies still get their attributes: close to the copier before checksums, not the same.
 */
function copyAll(jobs: CopyJob[], storage: string, batch: number, verifyCopies: boolean, unhashed = false): number {
  rmSync(storage, { recursive: true, force: true });
  execFileSync('sync');
  const update = Checksum.prototype.update;
  if (unhashed) Checksum.prototype.update = () => undefined;
  try {
    const t = performance.now();
    for (const part of batches(jobs, storage, batch)) {
      const work = unhashed ? part.map(({ checksum: _, ...j }) => j) : part;
      for (const r of copyMany(work, storage, { preserveUid: false, preserveGid: false, verifyCopies, tempKey })) if (r instanceof Error) throw r;
    }
    return (performance.now() - t) / 1000;
  } finally {
    Checksum.prototype.update = update;
  }
}

/** As copyAll, by WRITERS writers through copy threads, as a storage of grimseld copies; returns seconds. */
async function copyAllThreads(jobs: CopyJob[], storage: string, batch: number, verifyCopies: boolean): Promise<number> {
  rmSync(storage, { recursive: true, force: true });
  mkdirSync(storage);
  execFileSync('sync');
  const threads = new CopyThreads({ base: storage, options: { preserveUid: false, preserveGid: false, verifyCopies, tempKey } });
  try {
    await threads.copyMany([]); // a thread started and prepared before the clock starts
    const queue = batches(jobs, storage, batch);
    const t = performance.now();
    await Promise.all(Array.from({ length: WRITERS }, async () => {
      for (let part = queue.shift(); part; part = queue.shift()) {
        for (const r of await threads.copyMany(part)) if (r instanceof Error) throw r;
      }
    }));
    return (performance.now() - t) / 1000;
  } finally {
    await threads.close();
  }
}

async function main(): Promise<void> {
  const [rounds = 5, bulkFiles = 20, smallFiles = 500] = process.argv.slice(2).map(Number);
  await prepareCopies();
  const work = mkdtempSync(path.join(os.tmpdir(), 'copier-ab-'));
  const ramdisk = path.join(work, 'ramdisk');
  mkdirSync(ramdisk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bulkFiles * 6 * MB + smallFiles * 100_000 + 64 * MB}`, 'tmpfs', ramdisk]);
  try {
    const bulk = makeSet(path.join(ramdisk, 'bulk'), bulkFiles, 6 * MB);
    const small = makeSet(path.join(ramdisk, 'small'), smallFiles, 100_000);
    // With their checksums, as delivered files have them (the dispatcher hands each copy its file's checksum).
    for (const j of [...bulk, ...small]) j.checksum = await checksumOfFile(j.src);
    const storage = path.join(work, 'storage');
    const runs: Record<string, number[]> = {};
    const add = (k: string, v: number): void => { (runs[k] ??= []).push(v); };
    for (let r = 0; r < rounds; r++) {
      // The unhashed baseline goes first in even rounds, last in odd ones, as yes and no alternate.
      const unhashed = (): void => {
        add('bulkNone', bulkFiles * 6 / copyAll(bulk, storage, 1, false, true));
        add('smallNone', smallFiles / copyAll(small, storage, 16, false, true));
      };
      if (r % 2 === 0) unhashed();
      for (const verify of r % 2 === 0 ? [true, false] : [false, true]) {
        const tag = verify ? 'Yes' : 'No';
        add(`bulk${tag}`, bulkFiles * 6 / copyAll(bulk, storage, 1, verify)); // a live stream: a file a batch
        add(`small${tag}`, smallFiles / copyAll(small, storage, 16, verify)); // waiting files: batches of 16
        add(`threadsBulk${tag}`, bulkFiles * 6 / await copyAllThreads(bulk, storage, 1, verify));
        add(`threadsSmall${tag}`, smallFiles / await copyAllThreads(small, storage, 16, verify));
      }
      if (r % 2 === 1) unhashed();
    }
    const m = (k: string): number => Math.round(median(runs[k]!) * 10) / 10;
    const hashT = performance.now();
    for (const j of bulk) await checksumOfFile(j.src);
    const hashGBps = Math.round((bulkFiles * 6 * MB) / 1e9 / ((performance.now() - hashT) / 1000) * 10) / 10;
    console.log(JSON.stringify({
      rounds, bulk: `${bulkFiles} x 6 MiB, one file a batch`, small: `${smallFiles} x 100 kB, 16 a batch`, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
      oneThread: {
        bulkMiBps: { yes: m('bulkYes'), no: m('bulkNo'), ratio: ratio(m('bulkYes'), m('bulkNo')),
          unhashed: m('bulkNone'), yesOverUnhashed: ratio(m('bulkYes'), m('bulkNone')), noOverUnhashed: ratio(m('bulkNo'), m('bulkNone')) },
        smallFilesPerS: { yes: m('smallYes'), no: m('smallNo'), ratio: ratio(m('smallYes'), m('smallNo')),
          unhashed: m('smallNone'), yesOverUnhashed: ratio(m('smallYes'), m('smallNone')), noOverUnhashed: ratio(m('smallNo'), m('smallNone')) },
      },
      [`${WRITERS}WritersInCopyThreads`]: {
        bulkMiBps: { yes: m('threadsBulkYes'), no: m('threadsBulkNo'), ratio: ratio(m('threadsBulkYes'), m('threadsBulkNo')) },
        smallFilesPerS: { yes: m('threadsSmallYes'), no: m('threadsSmallNo'), ratio: ratio(m('threadsSmallYes'), m('threadsSmallNo')) },
      },
      xxh128FromTmpfsGBps: hashGBps,
      runs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((x) => Math.round(x))])),
    }, null, 1));
  } finally {
    execFileSync('umount', ['-l', ramdisk]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e);
  process.exit(1);
});

// An EXTERNAL storage that stops answering (a hard NFS mount whose server hangs; here a FUSE mount, bindfs, stopped
// with SIGSTOP) while the internal disk is over its fill limit: the internal guard (G7) must not reach into it, or
// grimseld stops altogether (G6, G7, G9, G13).
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, Ppu, type PpuOptions } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';
import { startProcess, type Managed } from '../fixtures/processes.js';

const MB = 1024 * 1024;

/** A bindfs view of `source` at `at`, in the foreground (its pid is the FUSE server's), until it is unmounted. */
async function bindfs(source: string, at: string): Promise<Managed> {
  const proc = startProcess('bindfs', ['-f', '--no-allow-other', source, at]);
  await eventually(() => spawnSync('mountpoint', ['-q', at]).status === 0, 10_000, `bindfs mounted at ${at}`);
  return proc;
}

/** QueryStatus, or undefined when grimseld has not answered within `ms`. */
async function statusWithin(ppu: Ppu, ms: number): Promise<Array<[bigint, number, number, string, bigint, bigint, bigint]> | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([ppu.queryStatus(-1), new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pending, copied and failed on `storage` in shift 1500, or undefined when grimseld has not answered within 10 s. */
async function counts(ppu: Ppu, storage: string): Promise<[bigint, bigint, bigint] | undefined> {
  const row = (await statusWithin(ppu, 10_000))?.find((r) => r[1] === 1500 && r[3] === storage);
  return row && [row[4], row[5], row[6]];
}

interface Storages {
  ppu: Ppu;
  internal: string;
  external: string;
  optional: string;
  /** What the EXTERNAL storage shows: bindfs's source directory. */
  back: string;
  /** Stops the FUSE server (SIGSTOP): the EXTERNAL storage no longer answers. */
  hang(): void;
  /** Lets it go on (SIGCONT). */
  answer(): void;
}

/**
 * Runs `body` with a Ppu (`opts`) started and shift 1500:1501 begun, whose INTERNAL storage is a tmpfs of
 * `internalMb`, whose EXTERNAL storage is a bindfs view of a directory (a tmpfs of `backMb` if given; its
 * `mountpoint` key left out with `externalMountpoint: false`) and, with
 * `optional`, an OPTIONAL storage not mounted yet; takes it all down after, the FUSE server let go first.
 */
async function withStorages(opts: PpuOptions, sizes: { internalMb: number; backMb?: number; optional?: boolean; externalMountpoint?: boolean },
  body: (s: Storages) => Promise<void>): Promise<void> {
  const ppu = new Ppu(opts);
  const internal = path.join(ppu.storageRoot, 'internal');
  const external = path.join(ppu.storageRoot, 'external');
  const optional = path.join(ppu.storageRoot, 'optional');
  const back = path.join(ppu.work, 'external-disk');
  for (const d of [back, external, optional]) mkdirSync(d, { recursive: true });
  mountTmpfs(internal, sizes.internalMb * MB);
  if (sizes.backMb !== undefined) mountTmpfs(back, sizes.backMb * MB);
  mkdirSync(path.join(internal, 'data'));
  mkdirSync(path.join(back, 'data'));
  const fuse = await bindfs(back, external);
  let stopped = false;
  ppu.opts.storages = {
    'storage.internal': { type: 'INTERNAL', target: path.join(internal, 'data'), mountpoint: internal, n_copy_processes: 2 },
    'storage.external': { type: 'EXTERNAL', target: path.join(external, 'data'), ...(sizes.externalMountpoint === false ? {} : { mountpoint: external }), n_copy_processes: 2 },
    ...(sizes.optional ? { 'storage.optional': { type: 'OPTIONAL', target: path.join(optional, 'data'), mountpoint: optional, n_copy_processes: 1 } } : {}),
  };
  try {
    await ppu.start();
    await ppu.startShift(1500, 1501, []);
    await body({
      ppu, internal, external, optional, back,
      hang: () => { fuse.kill('SIGSTOP'); stopped = true; },
      answer: () => { fuse.kill('SIGCONT'); stopped = false; },
    });
  } finally {
    if (stopped) fuse.kill('SIGCONT');
    try { execFileSync('umount', ['-l', external]); } catch { /* gone with its server */ }
    await fuse.stop();
    await ppu.stop();
  }
}

/**
 * The EXTERNAL storage (with its `mountpoint` key or without) hangs while the internal disk is over its limit: grimseld
 * keeps answering, copying to the internal disk and guarding the ramdisk; the internal copies wait for it, said once
 * (the LINK_ERROR names `said` and ends with `until`); all arrive once it answers.
 */
async function hangWhileInternalFull(mountpoint: boolean): Promise<void> {
  const opts = { prefix: mountpoint ? 'ppu-hung' : 'ppu-hung-nomp', ramdiskBytes: 16 * MB, grimseld: { fillstate_limit: 50, create_links: 'yes' } };
  await withStorages(opts, { internalMb: 40, externalMountpoint: mountpoint }, async ({ ppu, external, back, hang, answer }) => {
    const msgs = await collectMessages(ppu);
    const root = ppu.detectorRamdisks['1MF']!;
    const files: WrittenFile[] = [];
    const write = (from: number, to: number): void => {
      for (let i = from; i < to; i++) files.push(writeImage(root, `run/f${String(i).padStart(3, '0')}.cbf`, MB));
    };
    write(0, 10);
    await eventually(async () => (await counts(ppu, 'external'))?.[1] === 10n && (await counts(ppu, 'internal'))?.[1] === 10n, 30_000, '10 files copied to both storages');
    hang();
    // Past the kernel's cache of the FUSE mount's attributes (1 s): a stat from it still answers. (A guard that reads
    // the mount point within that second can still reach the storage, and hang: the checks are synchronous.)
    await new Promise((r) => setTimeout(r, 3000));
    // 30 MB on a 40 MB internal disk of limit 50 %: its guard would link copies to the external disk, which hangs.
    write(10, 30);
    await eventually(async () => (await counts(ppu, 'internal'))?.[1] === 30n, 60_000, 'the internal copies made while the external disk hangs');
    const said = mountpoint ? external : path.join(external, 'data');
    const until = mountpoint ? 'mounted again and answers' : 'answering again';
    await eventually(() => msgs.messages.some(([code, short, long]) => code === 'LINK_ERROR' && short === said && long.endsWith(`until it is ${until}`) &&
      long.includes(`${said} does not answer; `)), 30_000, `one LINK_ERROR naming ${said} as not answering`);
    // grimseld still answers: the status (its call has 10 s) and the ramdisk guard (links to the internal copies).
    for (let i = 0; i < 5; i++) {
      assert.ok(await statusWithin(ppu, 10_000), 'QueryStatus answered while the external storage hangs');
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.deepEqual((await counts(ppu, 'external'))?.slice(0, 2), [20n, 10n], 'the external copies wait, pending');
    answer();
    await eventually(async () => (await counts(ppu, 'external'))?.join() === '0,30,0', 60_000, 'every file copied to the external disk once it answers');
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(back, 'data/1mf/1500_1501', f.rel))), f.sha256, `external copy of ${f.rel}`);
    msgs.stop();
  });
}

describe('a storage that does not answer (G6, G7, G13)', function () {
  this.timeout(180_000);

  it('an EXTERNAL storage that hangs while the internal disk is over its limit: grimseld keeps answering, copying to the internal disk and guarding the ramdisk; the internal copies wait for it, said once; all arrive once it answers', async () => {
    await hangWhileInternalFull(true);
  });

  it('the same with an EXTERNAL storage configured without a mount point: its target is asked whether it answers (G13)', async () => {
    // Before, a storage without `mountpoint` was never asked: the internal guard's checks of its copies hung grimseld.
    await hangWhileInternalFull(false);
  });

  it('an OPTIONAL storage mounted while the EXTERNAL disk hangs gets the files it can read on the PPU at once, and the ones only the EXTERNAL disk holds once it answers (G1, G13)', async () => {
    // create_links = no, limit 50 % of a 20 MB internal disk: the internal guard links some internal copies to their
    // external ones, and the ramdisk guard deletes originals (copied): those files are read from the EXTERNAL disk.
    const opts = { prefix: 'ppu-hung-opt', ramdiskBytes: 16 * MB, grimseld: { fillstate_limit: 50, create_links: 'no' } };
    await withStorages(opts, { internalMb: 20, optional: true }, async ({ ppu, internal, optional, hang, answer }) => {
      const files: WrittenFile[] = [];
      for (let i = 0; i < 16; i++) {
        files.push(writeImage(ppu.detectorRamdisks['1MF']!, `run/f${String(i).padStart(3, '0')}.cbf`, MB));
        await new Promise((r) => setTimeout(r, 100));
      }
      await eventually(async () => (await counts(ppu, 'external'))?.join() === '0,16,0' && (await counts(ppu, 'internal'))?.join() === '0,16,0', 60_000, 'all copied to both disks');
      const shiftDir = (root: string): string => path.join(root, '1mf', '1500_1501');
      // Read only from the EXTERNAL disk: no original on the ramdisk, the internal copy a link to the external one.
      const onPpu = (f: WrittenFile): boolean => {
        const original = spawnSync('test', ['-f', path.join(shiftDir(ppu.ppuRamdisk), f.rel)]).status === 0;
        const internalCopy = spawnSync('test', ['!', '-L', path.join(shiftDir(path.join(internal, 'data')), f.rel)]).status === 0;
        return original || internalCopy;
      };
      await eventually(() => files.filter((f) => !onPpu(f)).length > 0, 30_000, 'some files held on the EXTERNAL disk alone');
      hang();
      await new Promise((r) => setTimeout(r, 3000)); // past the FUSE mount's attribute cache (1 s)
      const local = files.filter(onPpu);
      const remote = files.filter((f) => !onPpu(f));
      mountTmpfs(optional, 100 * MB);
      mkdirSync(path.join(optional, 'data'));
      await eventually(async () => (await counts(ppu, 'optional'))?.[1] === BigInt(local.length), 60_000,
        `the ${local.length} files with a copy on the PPU copied to the OPTIONAL disk while the EXTERNAL one hangs`);
      for (const f of local) assert.equal(sha256File(readFileSync(path.join(shiftDir(path.join(optional, 'data')), f.rel))), f.sha256, f.rel);
      assert.equal((await counts(ppu, 'optional'))?.[0], BigInt(remote.length), 'the others pending');
      answer();
      await eventually(async () => (await counts(ppu, 'optional'))?.join() === '0,16,0', 60_000, 'all 16 on the OPTIONAL disk once the EXTERNAL one answers');
      for (const f of files) assert.equal(sha256File(readFileSync(path.join(shiftDir(path.join(optional, 'data')), f.rel))), f.sha256, f.rel);
    });
  });

  it('the temp-file sweep leaves an EXTERNAL storage that hangs alone, also the directories where its copies failed: grimseld keeps answering (G3, G13)', async () => {
    // Swept every 10 s (temp_max_age_s): the storage root, and the directory where copies failed on a full disk.
    const opts = { prefix: 'ppu-hung-sweep', ramdiskBytes: 64 * MB, grimseld: { temp_max_age_s: 10 } };
    await withStorages(opts, { internalMb: 100, backMb: 6 }, async ({ ppu, back, hang }) => {
      for (let i = 0; i < 10; i++) writeImage(ppu.detectorRamdisks['1MF']!, `run/f${i}.cbf`, MB);
      const external10 = async (failed: boolean): Promise<boolean> => {
        const row = await counts(ppu, 'external');
        return row !== undefined && row[0] === 0n && (failed ? row[2] > 0n : row[1] === 10n);
      };
      await eventually(() => external10(true), 30_000, 'copies to the full external disk failed');
      execFileSync('mount', ['-o', `remount,size=${100 * MB}`, back]);
      await eventually(() => external10(false), 60_000, 'every file copied once there is room');
      hang();
      // Over two sweeps' time.
      for (let i = 0; i < 25; i++) {
        assert.ok(await statusWithin(ppu, 10_000), `QueryStatus answered ${i} s after the external storage hung`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    });
  });
});

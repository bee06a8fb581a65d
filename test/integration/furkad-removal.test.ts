// furkad against a detector rsync daemon that cannot remove sources (a vendor's module without `uid = root`, one
// that refuses --remove-source-files), with furkad's default settings (settle_ms 2000, remove_source yes): a steady
// error naming the daemon's words, each file delivered and counted once, nothing pulled again (F2, F10).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, type PpuOptions } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { freePort } from '../fixtures/net.js';
import { sample, scrape } from '../fixtures/metrics.js';
import { startProcess, type Managed } from '../fixtures/processes.js';

type Row = [string, string, string, bigint, bigint, bigint];

/** What an operator sees of detector 1MF: its Detectors row and furkad's metrics. */
async function look(ppu: Ppu, metricsUrl: string): Promise<{ state: string; lastError: string; files: bigint; bytes: bigint; failing: number; filesTotal: number }> {
  const row = (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;
  const text = await scrape(metricsUrl);
  return {
    state: row[1], lastError: row[2], files: row[3], bytes: row[4],
    failing: sample(text, 'furkad_detector_failing{detector="1MF"}') ?? -1,
    filesTotal: sample(text, 'furkad_files_total{detector="1MF"}') ?? -1,
  };
}

/** Connections the detector's daemon has served so far (one a furkad rsync run): read from its log. */
function connections(ppu: Ppu): number {
  return (readFileSync(ppu.rsyncd['1MF']!.logFile, 'utf8').match(/ connect from /g) ?? []).length;
}

/**
 * Everything the operator sees until the daemon has served `runs` more connections: a steady state must hold over
 * several retries, not at one moment (the flapping was between runs).
 */
async function watchRuns(ppu: Ppu, metricsUrl: string, runs: number): Promise<Array<Awaited<ReturnType<typeof look>>>> {
  const until = connections(ppu) + runs;
  const seen: Array<Awaited<ReturnType<typeof look>>> = [];
  await eventually(async () => {
    seen.push(await look(ppu, metricsUrl));
    return connections(ppu) >= until;
  }, 120_000, `${runs} more runs against the detector's daemon`);
  return seen;
}

/** Files in furkad's staging of 1MF (hidden below the target: the PPU's fill guard cannot free them). */
function staged(ppu: Ppu): string[] {
  return listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF'));
}

/**
 * Watches 1MF's staging for files arriving there (rsync puts a received file in place by a rename): every one from
 * now until the returned function is called. The retries' probe of the daemon (a kept file asked for again) used to
 * receive its copy there and drop it at once: looked at between its arrival and its drop, staging held it.
 */
async function watchStaging(ppu: Ppu): Promise<() => Promise<string[]>> {
  const dir = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF');
  const w: Managed = startProcess('inotifywait', ['-m', '-r', '-e', 'create', '-e', 'moved_to', '--format', 'EVENT %e %w%f', dir]);
  await w.said(/Watches established/, 20_000);
  return async () => {
    await w.stop();
    return w.output().split('\n').filter((l) => l.startsWith('EVENT ') && !l.includes('ISDIR'));
  };
}

/** A Ppu with `opts` and furkad's metrics on a free port, and where they are read. */
async function withMetrics(opts: PpuOptions): Promise<{ ppu: Ppu; metricsUrl: string }> {
  const port = await freePort();
  const ppu = await new Ppu({ ...opts, furkad: { metrics_address: '127.0.0.1', metrics_port: port } }).start();
  return { ppu, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}

describe('furkad: a detector daemon that cannot remove sources (module without uid = root, F2, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let metricsUrl: string;
  let files: WrittenFile[];
  const usr = (): string => path.join(ppu.ppuRamdisk, '1mf', '560_561');

  before(async () => {
    // furkad's defaults (settle_ms 2000, remove_source yes); the daemon runs as nobody, as a vendor's module may.
    ({ ppu, metricsUrl } = await withMetrics({ prefix: 'ppu-removal', writerRenames: false, rsyncd: { '1MF': { asRoot: false } } }));
  });
  after(async () => {
    await ppu?.stop();
  });

  it('shows a steady error naming the daemon\'s words, and delivers, counts and pulls each file once', async () => {
    await ppu.startShift(560, 561);
    const det = ppu.detectorRamdisks['1MF']!;
    files = Array.from({ length: 10 }, (_, i) => writeImage(det, `run/img_${String(i).padStart(2, '0')}.cbf`, 20_000));
    const names = files.map((f) => f.rel).sort();
    await eventually(() => listFiles(usr()).length >= files.length, 60_000, 'the ten files delivered');
    await eventually(async () => (await look(ppu, metricsUrl)).lastError !== '', 60_000, 'an error shown');
    const arrived = await watchStaging(ppu);
    const seen = await watchRuns(ppu, metricsUrl, 4);
    // Each retry is a listing run and a probe of the daemon: neither puts anything into staging, even for a moment.
    assert.deepEqual(await arrived(), [], 'nothing copied again into staging while the daemon cannot remove');
    for (const s of seen) {
      assert.equal(s.state, 'down', `steady, never idle between retries: ${JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
      assert.match(s.lastError, /^the detector's rsync daemon cannot remove sources: sender failed to remove run\/img_\d+\.cbf: Permission denied.*; give module ramdisk uid = root \(README\)/);
      assert.equal(s.failing, 1, 'furkad_detector_failing agrees');
      assert.equal(s.files, 10n, 'each file counted once, when placed');
      assert.equal(s.filesTotal, 10, 'furkad_files_total agrees');
      assert.equal(s.bytes, 200_000n, 'no file pulled again');
    }
    assert.deepEqual(listFiles(usr()), names, 'each file placed once, none beside itself as .~N~');
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(usr(), f.rel))), f.sha256, f.rel);
    assert.deepEqual(listFiles(det), names, 'the sources stay on the detector');
    assert.deepEqual(staged(ppu), [], 'nothing copied again into staging');
    const out = ppu.furkad!.proc.output();
    assert.equal((out.match(/detector unreachable or failing/g) ?? []).length, 1, 'the failure logged once');
    assert.doesNotMatch(out, /reachable again/, 'no recovery logged while it lasts');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 560 && r[5] === 10n && r[4] === 0n), 30_000, 'grimseld to copy all ten');
    const row = (await ppu.queryStatus(1))[0]!;
    assert.deepEqual([row[1], row[4], row[5], row[6]], [560, 0n, 10n, 0n], 'handed over to grimseld once each');
  });

  it('delivers none of them again after a restart (into the next shift) while the daemon still cannot remove them', async () => {
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0);
    await ppu.startFurkad(); // the configured default shift, 1000:1000
    await eventually(async () => (await look(ppu, metricsUrl)).lastError.includes('cannot remove sources'), 60_000, 'the error shown again');
    const s = await look(ppu, metricsUrl);
    assert.deepEqual([s.state, s.files, s.bytes, s.failing], ['down', 0n, 0n, 1], 'nothing delivered in the new shift, nothing counted');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '1000_1000')), [], 'none of them placed again');
    assert.deepEqual(staged(ppu), [], 'the copies pulled again dropped');
    assert.equal(listFiles(ppu.detectorRamdisks['1MF']!).length, 10, 'the sources still there');
  });

  it('once the daemon may remove (uid = root), takes the sources off the detector without delivering them again, and is up', async () => {
    const det = ppu.detectorRamdisks['1MF']!;
    await ppu.rsyncd['1MF']!.stop();
    await ppu.startRsyncd('1MF'); // the shipped settings: uid = root
    await eventually(() => listFiles(det).length === 0, 60_000, 'the sources removed');
    await eventually(async () => (await look(ppu, metricsUrl)).state === 'idle', 60_000, 'the detector up');
    const later = writeImage(det, 'run/later.cbf', 20_000);
    const usrNow = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    await eventually(() => listFiles(usrNow).includes(later.rel) && listFiles(det).length === 0, 60_000, 'a new file delivered, its source removed');
    const s = await look(ppu, metricsUrl);
    assert.deepEqual([s.state, s.lastError, s.failing, s.files, s.bytes], ['idle', '', 0, 1n, 20_000n], 'up, each file counted once');
    assert.deepEqual(listFiles(usrNow), [later.rel], 'none of the ten delivered again');
    assert.deepEqual(staged(ppu), [], 'no copy left in staging');
    assert.equal((ppu.furkad!.proc.output().match(/reachable again/g) ?? []).length, 1, 'the recovery logged once');
    await ppu.quiescent();
    const internal = path.join(ppu.storageRoot, 'internal', '1mf');
    assert.deepEqual(listFiles(internal), [...files.map((f) => `560_561/${f.rel}`), `1000_1000/${later.rel}`].sort(), 'stored once each');
    const rows = await ppu.queryStatus(-1);
    const copied = (uid: number): bigint => rows.filter((r) => r[1] === uid).reduce((n, r) => n + r[5], 0n);
    assert.deepEqual([copied(560), copied(1000)], [10n, 1n], 'handed over to grimseld once each');
  });
});

describe('furkad: a detector daemon that refuses --remove-source-files (refuse options = delete*, F2, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let metricsUrl: string;

  before(async () => {
    ({ ppu, metricsUrl } = await withMetrics({ prefix: 'ppu-refuse', writerRenames: false, rsyncd: { '1MF': { refuseOptions: 'delete* checksum compress' } } }));
  });
  after(async () => {
    await ppu?.stop();
  });

  it('shows a steady error naming the refusal, delivers nothing, and copies nothing more while it lasts; takes every file once it may', async () => {
    await ppu.startShift(562, 563);
    const det = ppu.detectorRamdisks['1MF']!;
    const first = Array.from({ length: 5 }, (_, i) => writeImage(det, `run/a_${i}.cbf`, 20_000));
    await eventually(async () => (await look(ppu, metricsUrl)).lastError !== '', 60_000, 'an error shown');
    // Written while it lasts: not copied into staging, where nothing could free it.
    const second = Array.from({ length: 5 }, (_, i) => writeImage(det, `run/b_${i}.cbf`, 20_000));
    const seen = await watchRuns(ppu, metricsUrl, 3);
    for (const s of seen) {
      assert.equal(s.state, 'down', `steady, never idle between retries: ${s.state} ${s.lastError}`);
      assert.match(s.lastError, /^the detector's rsync daemon refuses to remove sources: The server is configured to refuse --delete; take delete\* and remove-source-files out of module ramdisk's refuse options/);
      assert.equal(s.failing, 1, 'furkad_detector_failing agrees');
      assert.equal(s.files, 0n, 'nothing delivered');
      assert.equal(s.filesTotal, 0, 'furkad_files_total agrees');
    }
    const usr = path.join(ppu.ppuRamdisk, '1mf', '562_563');
    assert.deepEqual(listFiles(usr), [], 'nothing placed');
    assert.ok(staged(ppu).every((rel) => rel.startsWith('run/a_')), `files written since are not copied: ${staged(ppu).join(' ')}`);
    assert.equal(listFiles(det).length, 10, 'every source on the detector');
    assert.equal((ppu.furkad!.proc.output().match(/detector unreachable or failing/g) ?? []).length, 1, 'the failure logged once');

    await ppu.rsyncd['1MF']!.stop();
    await ppu.startRsyncd('1MF');
    const all = [...first, ...second];
    await eventually(() => listFiles(usr).length === all.length && listFiles(det).length === 0, 60_000, 'every file delivered, its source removed');
    await eventually(async () => (await look(ppu, metricsUrl)).state === 'idle', 30_000, 'the detector up');
    for (const f of all) assert.equal(sha256File(readFileSync(path.join(usr, f.rel))), f.sha256, f.rel);
    const s = await look(ppu, metricsUrl);
    assert.deepEqual([s.lastError, s.failing, s.files, s.filesTotal], ['', 0, 10n, 10]);
    assert.deepEqual(staged(ppu), [], 'staging empty');
  });
});

describe('furkad with settle_ms = 0: a detector daemon that cannot remove sources (F2, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let metricsUrl: string;

  before(async () => {
    // A writer that renames into place: one run per cycle, taking and removing at once.
    ({ ppu, metricsUrl } = await withMetrics({ prefix: 'ppu-removal0', rsyncd: { '1MF': { asRoot: false } } }));
  });
  after(async () => {
    await ppu?.stop();
  });

  it('delivers and counts each file once, shows the error steadily, and takes the sources off once it may', async () => {
    await ppu.startShift(564, 565);
    const det = ppu.detectorRamdisks['1MF']!;
    const files = Array.from({ length: 6 }, (_, i) => writeImage(det, `r0/img_${i}.cbf`, 30_000));
    const usr = path.join(ppu.ppuRamdisk, '1mf', '564_565');
    await eventually(() => listFiles(usr).length >= files.length, 60_000, 'the six files delivered');
    await eventually(async () => (await look(ppu, metricsUrl)).lastError !== '', 60_000, 'an error shown');
    for (const s of await watchRuns(ppu, metricsUrl, 3)) {
      assert.equal(s.state, 'down', `steady: ${s.state} ${s.lastError}`);
      assert.match(s.lastError, /cannot remove sources: sender failed to remove r0\/img_\d\.cbf: Permission denied/);
      assert.deepEqual([s.failing, s.files, s.filesTotal, s.bytes], [1, 6n, 6, 180_000n], 'counted once, pulled once');
    }
    assert.deepEqual(listFiles(usr), files.map((f) => f.rel).sort(), 'placed once each');
    // What a probe cut short (the daemon stopped while it sent a kept file back) leaves beside staging, and a run
    // killed with furkad after it received one in staging: a file as placed. Each was placed and counted a second
    // time (7 files for 6 after the daemon's restart, now and then). Here files the next probes do not ask for (they
    // ask for img_0 here): none of them overwrites and drops the copy first.
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
    for (const [dir, f] of [[path.join(staging, '.probe', '1MF'), files[5]!], [path.join(staging, '1MF'), files[4]!]] as const) {
      mkdirSync(path.dirname(path.join(dir, f.rel)), { recursive: true, mode: 0o700 });
      execFileSync('cp', ['--preserve=timestamps', path.join(det, f.rel), path.join(dir, f.rel)]);
    }
    for (const s of await watchRuns(ppu, metricsUrl, 6)) {
      assert.deepEqual([s.state, s.files, s.bytes], ['down', 6n, 180_000n], 'the copies left not placed again, their records kept');
    }
    assert.deepEqual(listFiles(usr), files.map((f) => f.rel).sort(), 'placed once each, the copies left too');
    await ppu.rsyncd['1MF']!.stop();
    await ppu.startRsyncd('1MF');
    await eventually(() => listFiles(det).length === 0, 60_000, 'the sources removed');
    await eventually(async () => (await look(ppu, metricsUrl)).state === 'idle', 60_000, 'the detector up');
    // A file counted again would be placed again (NAME.~1~ beside it): named here first.
    assert.deepEqual(listFiles(usr), files.map((f) => f.rel).sort(), 'nothing placed again once the sources could be removed');
    const s = await look(ppu, metricsUrl);
    assert.deepEqual([s.lastError, s.failing, s.files, s.filesTotal, s.bytes], ['', 0, 6n, 6, 180_000n], 'nothing counted again');
    assert.deepEqual(listFiles(usr), files.map((f) => f.rel).sort(), 'nothing delivered again');
    assert.deepEqual(staged(ppu), [], 'no copy left in staging');
  });
});

// furkad against writers rsync's own changed-source check cannot see, and against a detector daemon that
// does not report removals (F2, F9).
import { strict as assert } from 'node:assert';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, sizesWhile, writeImage } from '../fixtures/files.js';
import { startRsyncDaemon } from '../fixtures/rsync-daemon.js';
import { markFixture } from '../fixtures/processes.js';
import { inPlaceWriter } from '../fixtures/writers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A PPU with settle_ms `settleMs` whose furkad runs rsync through a shell wrapper (rsync_path): `script(work)` gives
 * its body, which ends by running rsync. Not started.
 */
function wrappedPpu(prefix: string, settleMs: number, script: (work: string) => string): Ppu {
  const ppu = new Ppu({ prefix, detectorConf: { '1MF': { settle_ms: settleMs } } });
  const wrapper = path.join(ppu.work, `${prefix}-rsync`);
  writeFileSync(wrapper, `#!/bin/sh\n${script(ppu.work)}`);
  chmodSync(wrapper, 0o755);
  ppu.opts.furkad = { rsync_path: wrapper };
  return ppu;
}


describe('furkad: a writer that pauses mid-file (settle_ms, F2)', function () {
  this.timeout(120_000);
  let ppu: Ppu;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-settle', detectorConf: { '1MF': { settle_ms: 1000 } } }).start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('takes the file only once it stopped changing: never truncated under its final name, delivered once', async () => {
    await ppu.startShift(530, 531);
    const src = path.join(ppu.detectorRamdisks['1MF']!, 'paused', 'img.cbf');
    const dest = path.join(ppu.ppuRamdisk, '1mf', '530_531', 'paused', 'img.cbf');
    const writer = inPlaceWriter(src);
    markFixture(writer);
    const observed = await sizesWhile(dest, writer.exited);
    assert.equal(await writer.exited, 0, writer.output());
    await eventually(() => existsSync(dest) && !existsSync(src), 20_000, 'the complete file on the PPU, its source removed');
    assert.deepEqual(observed, [], 'nothing under the final name while the writer was still at work');
    assert.equal(sha256File(readFileSync(dest)), sha256File(Buffer.alloc(8 * 65536, 9)), 'all 8 pieces');
    assert.equal(statSync(dest).uid, 530, 'owned by the shift (F3)');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 530 && r[5] === 1n), 20_000, 'grimseld to copy it');
    await sleep(1000);
    const row = (await ppu.queryStatus(1))[0]!;
    assert.deepEqual([row[1], row[4], row[5], row[6]], [530, 0n, 1n, 0n], 'delivered to grimseld exactly once');
  });

  it('still delivers a burst of ordinary files, each once, after settle_ms', async () => {
    await ppu.startShift(532, 533);
    const names = Array.from({ length: 30 }, (_, i) => `burst/img_${String(i).padStart(3, '0')}.cbf`);
    const sums = new Map(names.map((rel) => [rel, writeImage(ppu.detectorRamdisks['1MF']!, rel, 50_000).sha256]));
    const usr = path.join(ppu.ppuRamdisk, '1mf', '532_533');
    await eventually(() => listFiles(usr).length === names.length, 20_000, 'all 30 files');
    for (const [rel, sum] of sums) assert.equal(sha256File(readFileSync(path.join(usr, rel))), sum, rel);
    assert.deepEqual(listFiles(ppu.detectorRamdisks['1MF']!), [], 'every source removed');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 532 && r[5] === 30n && r[4] === 0n), 20_000, 'grimseld to copy all 30');
    // Files and bytes this shift (Detectors): the bytes come with the first run, the placing with the second.
    const row = (await ppu.furkaProperty<Array<[string, string, string, bigint, bigint, bigint]>>('Detectors')).find((r) => r[0] === '1MF')!;
    assert.equal(row[3], 30n);
    assert.ok(row[4] >= 30n * 50_000n, `bytes counted: ${row[4]}`);
    assert.ok(!ppu.furkad!.proc.output().includes('does not report removed files'), 'the shipped daemon settings report removals');
  });

  it('places the rewritten file, not the copy settling, when the writer rewrites it at the same size within the same second (a header written last, F2)', async () => {
    await ppu.startShift(538, 539);
    const rel = 'header/img.cbf';
    const src = path.join(ppu.detectorRamdisks['1MF']!, rel);
    const settling = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '.settling', '1MF', rel);
    const second = Math.floor(Date.now() / 1000) - 60;
    mkdirSync(path.dirname(src), { recursive: true });
    writeFileSync(src, Buffer.alloc(200_000, 1));
    utimesSync(src, second + 0.1, second + 0.1);
    await eventually(() => existsSync(settling) && Math.abs(statSync(settling).mtimeMs - (second + 0.1) * 1000) < 1, 20_000, 'the first version copied to settle');
    // The final version, renamed into place 0.5 s later by the writer's clock: same size, same whole second.
    const final = Buffer.alloc(200_000, 2);
    const temp = path.join(ppu.work, 'header-final.tmp');
    writeFileSync(temp, final);
    utimesSync(temp, second + 0.6, second + 0.6);
    renameSync(temp, src);
    const dest = path.join(ppu.ppuRamdisk, '1mf', '538_539', rel);
    await eventually(() => existsSync(dest) && !existsSync(src), 20_000, 'the file placed, its source removed');
    assert.equal(sha256File(readFileSync(dest)), sha256File(final), 'the final version, not the first one');
  });

  it('waits at a shift change for files written before it to settle, so they land in the old shift (F6)', async () => {
    await ppu.startShift(534, 535);
    const before = Array.from({ length: 5 }, (_, i) => `change/before_${i}.cbf`);
    for (const rel of before) writeImage(ppu.detectorRamdisks['1MF']!, rel, 20_000);
    await ppu.startShift(536, 537);
    writeImage(ppu.detectorRamdisks['1MF']!, 'change/after.cbf', 20_000);
    // Earlier shifts' ramdisk files go once copied (G5): the internal storage shows where each landed.
    const oldDir = path.join(ppu.storageRoot, 'internal', '1mf', '534_535');
    const newDir = path.join(ppu.storageRoot, 'internal', '1mf', '536_537');
    // Complete copies only: grimseld's temp names (G3) do not count.
    const copied = (dir: string) => listFiles(dir).filter((f) => !path.basename(f).startsWith('.'));
    await eventually(() => copied(newDir).length === 1 && copied(oldDir).length === before.length, 20_000, 'all six files copied');
    assert.deepEqual(copied(oldDir), before, 'every file written before StartShift in the old shift');
    assert.deepEqual(copied(newDir), ['change/after.cbf'], 'only the later file in the new shift');
  });

  it('waits at a graceful stop (systemctl restart) for files written before it to settle, so they land in the shift that ran, not the default one (F6)', async () => {
    await ppu.startShift(538, 539);
    await sleep(300);
    const before = Array.from({ length: 5 }, (_, i) => `stop/before_${i}.cbf`);
    for (const rel of before) writeImage(ppu.detectorRamdisks['1MF']!, rel, 20_000);
    await sleep(300); // listed, still settling (settle_ms 1000)
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0, 'a clean stop (SIGTERM to furkad alone, as KillMode=mixed)');
    await ppu.startFurkad(); // the configured default shift, 1000:1000
    const copied = (dir: string) => listFiles(dir).filter((f) => f.startsWith('stop/') && !path.basename(f).startsWith('.'));
    const oldDir = path.join(ppu.storageRoot, 'internal', '1mf', '538_539');
    const defaultDir = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000');
    await eventually(() => copied(oldDir).length + copied(defaultDir).length === before.length, 20_000, 'all five files copied');
    assert.deepEqual(copied(oldDir), before, 'every file written before the stop in the shift that ran');
  });

  it('drops copies still settling from the staging of a target a shift leaves: a later shift there places nothing twice (F2, F6)', async () => {
    // Found by a hostile tester: f1, seen while a shift change moved the detector to another target, was
    // delivered there, and its first copy, left in the old target's staging, was placed again (truncated when
    // its writer had paused) by the next shift on the old target, owned by the shift it was copied for.
    const det = ppu.detectorRamdisks['1MF']!;
    await ppu.startShift(538, 539);
    writeImage(det, 'move/f0.cbf', 20_000);
    await sleep(300);
    const moving = ppu.startShift(540, 541, [['1MF', '', `${ppu.ppuRamdisk}/./run1`]]);
    await sleep(200);
    const f1 = writeImage(det, 'move/f1.cbf', 20_000);
    await moving;
    // Written during the StartShift call: the old shift's or the new one's (A5), whichever furkad learned it in; once.
    const where = ['1mf/538_539/move/f1.cbf', 'run1/540_541/move/f1.cbf'];
    const internal = path.join(ppu.storageRoot, 'internal');
    let first: string | undefined;
    await eventually(() => {
      // On the ramdisk, or already copied: placed late into the ended shift 538's directory, it is deleted from the
      // ramdisk as soon as it is copied (G5), which on a loaded machine came between two looks (a CI run's failure).
      first ??= where.find((w) => existsSync(path.join(ppu.ppuRamdisk, w)) || existsSync(path.join(internal, w)));
      return first !== undefined && !existsSync(path.join(det, 'move/f1.cbf'));
    }, 20_000, 'f1 delivered, in the old shift or the new one').catch((e: Error) => {
      const said = ppu.furkad!.proc.output().split('\n').filter((l) => /f1|owed|aside|held|shift/.test(l)).slice(-40).join('\n');
      throw new Error(`${e.message}; on the ramdisk: ${listFiles(ppu.ppuRamdisk).filter((f) => f.includes('f1')).join(', ')}; furkad said:\n${said}`);
    });
    await ppu.startShift(542, 543);
    writeImage(det, 'move/f2.cbf', 20_000);
    await eventually(() => existsSync(path.join(ppu.ppuRamdisk, '1mf', '542_543', 'move', 'f2.cbf')), 20_000, 'a file of the later shift delivered');
    await sleep(2500); // past settle_ms and a few runs more
    const f1s = (root: string): string[] => listFiles(root).filter((f) => path.basename(f) === 'f1.cbf');
    // On the ramdisk (G5 may have deleted the delivered one by now): nothing else, in a staging or in a shift.
    assert.deepEqual(f1s(ppu.ppuRamdisk).filter((f) => f !== first), [], 'no second f1 on the ramdisk, no copy left in a staging');
    await eventually(() => f1s(internal).length > 0, 20_000, 'f1 copied');
    assert.deepEqual(f1s(internal), [first], 'f1 stored once, in the shift it was delivered to');
    assert.equal(sha256File(readFileSync(path.join(internal, first!))), f1.sha256);
  });
});

describe('furkad with its default settings: writers that pause mid-file lose nothing (F2)', function () {
  this.timeout(120_000);
  let ppu: Ppu;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-defaults', writerRenames: false }).start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('never places a truncated file nor removes a source still being written, for pauses of 50 ms and of 1 s', async () => {
    await ppu.startShift(520, 521);
    const writers = [{ name: 'steady.cbf', pieces: 40, pauseMs: 50 }, { name: 'slow.cbf', pieces: 4, pauseMs: 1000 }].map((w) => {
      const src = path.join(ppu.detectorRamdisks['1MF']!, 'inplace', w.name);
      const dest = path.join(ppu.ppuRamdisk, '1mf', '520_521', 'inplace', w.name);
      const proc = inPlaceWriter(src, w.pieces, w.pauseMs);
      markFixture(proc);
      return { ...w, src, dest, proc, observed: sizesWhile(dest, proc.exited) };
    });
    await Promise.all(writers.map((w) => w.proc.exited));
    for (const w of writers) {
      assert.equal(await w.proc.exited, 0, `${w.name}: ${w.proc.output()}`);
      assert.deepEqual(await w.observed, [], `${w.name}: nothing under the final name while its writer was at work`);
    }
    for (const w of writers) {
      await eventually(() => existsSync(w.dest) && !existsSync(w.src), 20_000, `${w.name} on the PPU, its source removed`);
      assert.equal(sha256File(readFileSync(w.dest)), sha256File(Buffer.alloc(w.pieces * 65536, 9)), `${w.name}: all ${w.pieces} pieces`);
    }
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 520 && r[5] === 2n && r[4] === 0n), 20_000, 'grimseld to copy both');
  });

  it('places a file completed before a stop whose SIGTERM reaches its whole process group (systemctl kill furkad), its rsync run too, in the shift that ran, owned by it (A5, F3, F6)', async () => {
    // Found by a hostile tester: the rsync run the signal ended counted as the detector's failure, the stop's
    // drain skipped the detector backing off, and the file went to the next furkad's default shift (uid 1000).
    await ppu.startShift(524, 525);
    const det = ppu.detectorRamdisks['1MF']!;
    const file = writeImage(det, 'groupterm/before_stop.cbf', 100_000);
    // Listed by a run (copied beside staging), still settling (settle_ms: 2000 by default): furkad knows it is complete.
    const staged = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '.settling', '1MF', file.rel);
    await eventually(() => existsSync(staged), 20_000, 'the file seen by furkad, settling');
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'group'), 0, 'a clean stop (SIGTERM to furkad and its rsync runs)');
    const said = ppu.furkad!.proc.output();
    const errors = said.slice(said.lastIndexOf('"msg":"stopping"')).split('\n').filter((l) => l.includes('"level":50'));
    await ppu.startFurkad(); // the configured default shift, 1000:1000
    const stored = (uid: number, gid: number) => path.join(ppu.storageRoot, 'internal', '1mf', `${uid}_${gid}`, file.rel);
    await eventually(() => existsSync(stored(524, 525)) || existsSync(stored(1000, 1000)), 20_000, 'the file stored');
    assert.ok(existsSync(stored(524, 525)), 'in the shift that ran, not in the default one the next furkad started');
    const st = statSync(stored(524, 525));
    assert.deepEqual([st.uid, st.gid], [524, 525], 'owned by the shift that ran (F3)');
    assert.equal(sha256File(readFileSync(stored(524, 525))), file.sha256);
    assert.deepEqual(errors, [], 'no error logged while stopping: the run the signal ended is no detector failure');
  });

  it('places nothing a failed listing run copied (PPU ramdisk full, daemon gone): no truncated file, no temp name, no second copy', async () => {
    await ppu.startShift(522, 523);
    // rsync as furkad runs it, except that a listing run (no --remove-source-files) fails after copying while
    // the flag file exists, as one does when the PPU ramdisk fills or the detector's daemon dies mid-run.
    const flag = path.join(ppu.work, 'fail-listing');
    const wrapper = path.join(ppu.work, 'failing-rsync');
    writeFileSync(wrapper, `#!/bin/sh\ncase " $* " in *" --remove-source-files "*) exec rsync "$@";; esac\n` +
      `rsync "$@"; rc=$?\n[ -e '${flag}' ] && { echo 'rsync error: simulated failure after copying (code 11)' >&2; exit 11; }\nexit $rc\n`);
    chmodSync(wrapper, 0o755);
    writeFileSync(flag, '');
    await ppu.restartFurkadWith({ rsync_path: wrapper });
    try {
      await ppu.startShift(522, 523);
      const detector = ppu.detectorRamdisks['1MF']!;
      // A writer half-way through a file (paused), and a writer's temp name that it renames later.
      writeFileSync(path.join(detector, 'half.cbf'), Buffer.alloc(65536, 1));
      const temp = writeImage(detector, 'run/.img_1.cbf.tmp', 10_000);
      const usr = path.join(ppu.ppuRamdisk, '1mf', '522_523');
      await eventually(() => /rsync exit 11/.test(ppu.furkad!.proc.output()), 20_000, 'a failed listing run');
      await sleep(3000); // several failed runs, each of which copied both into staging
      assert.deepEqual(listFiles(usr), [], 'nothing placed while no listing run succeeds');
      // furkad restarted meanwhile: what is in staging is found at start, as a killed furkad's leftovers are.
      await ppu.killFurkad();
      await ppu.startFurkad();
      await ppu.startShift(522, 523);
      await sleep(2000);
      assert.deepEqual(listFiles(usr), [], 'nor after a restart');
      // The writer finishes; the temp name becomes the final one; the failures stop.
      writeFileSync(path.join(detector, 'half.cbf'), Buffer.alloc(2 * 65536, 1));
      renameSync(path.join(detector, temp.rel), path.join(detector, 'run/img_1.cbf'));
      unlinkSync(flag);
      // Within the back-off the failed runs built up (up to its 10 s cap), a run, and a settle: 60 s on a busy machine.
      await eventually(() => listFiles(usr).length === 2 && listFiles(detector).length === 0, 60_000, 'both files, once');
      assert.deepEqual(listFiles(usr), ['half.cbf', 'run/img_1.cbf'], 'no temp name, no NAME.~1~');
      assert.equal(statSync(path.join(usr, 'half.cbf')).size, 2 * 65536, 'the whole file');
      assert.equal(sha256File(readFileSync(path.join(usr, 'run/img_1.cbf'))), temp.sha256);
      // Staging, and the copies settling beside it.
      const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
      await eventually(() => listFiles(staging).length === 0, 60_000, 'the copy of the temp name dropped from staging once its source was gone')
        .catch((e: Error) => { throw new Error(`${e.message}; still in staging: ${listFiles(staging).join(', ')}`); });
    } finally {
      rmSync(flag, { force: true });
      await ppu.restartFurkadWith({ rsync_path: 'rsync' });
    }
  });
});

describe("furkad with a detector daemon that does not report removals (F2)", function () {
  this.timeout(120_000);
  let ppu: Ppu;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-noreport' }).start();
    // The daemon restarted with an rsyncd.conf that lacks 'max verbosity = 2' (an older detector package).
    const port = ppu.rsyncd['1MF']!.port;
    await ppu.rsyncd['1MF']!.stop();
    ppu.rsyncd['1MF'] = await startRsyncDaemon(ppu.detectorRamdisks['1MF']!, ppu.work, port, { reportRemovals: false, password: ppu.rsyncKey.key });
    markFixture(ppu.rsyncd['1MF'].proc);
  });
  after(async () => {
    await ppu?.stop();
  });

  it('places files when each run ends instead, each once, and says once why that is slower', async () => {
    await ppu.startShift(540, 541);
    const names = Array.from({ length: 20 }, (_, i) => `old/img_${String(i).padStart(3, '0')}.cbf`);
    for (const rel of names) {
      writeImage(ppu.detectorRamdisks['1MF']!, rel, 30_000);
      await sleep(50);
    }
    const usr = path.join(ppu.ppuRamdisk, '1mf', '540_541');
    await eventually(() => listFiles(usr).length === names.length, 20_000, 'all 20 files');
    assert.deepEqual(listFiles(ppu.detectorRamdisks['1MF']!), [], 'every source removed');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 540 && r[5] === 20n && r[4] === 0n), 20_000, 'grimseld to copy all 20');
    const warnings = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes('does not report removed files'));
    assert.equal(warnings.length, 1, 'one warning naming the missing rsyncd.conf setting');
    assert.match(warnings[0]!, /max verbosity = 2/);
  });
});

describe('furkad: settle_ms counts from when a run listed the detector, not from when it ended (F2)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let marker: string;

  before(async () => {
    // A run whose end comes long after its listing, as one copying a large file does: a full listing run that finds
    // the marker (which it takes away) ends 3 s after rsync is done.
    ppu = wrappedPpu('ppu-settle-late', 2000, (work) => {
      marker = path.join(work, 'slow-next-listing');
      return `rsync "$@"\nrc=$?\ncase " $* " in *" --remove-source-files "*|*" --dry-run "*|*" --files-from=-"*) exit $rc;; esac\n` +
        `if rm '${marker}' 2>/dev/null; then sleep 3; fi\nexit $rc\n`;
    });
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('never takes a file its writer changed after a long run listed it: delivered whole, once, though every pause is shorter than settle_ms', async () => {
    await ppu.startShift(542, 543);
    const rel = 'late/img.cbf';
    const src = path.join(ppu.detectorRamdisks['1MF']!, rel);
    const settling = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '.settling', '1MF', rel);
    const part = (i: number): Buffer => Buffer.alloc(100_000, i + 1);
    mkdirSync(path.dirname(src), { recursive: true });
    writeFileSync(src, part(0));
    await eventually(() => existsSync(settling), 20_000, 'the first part copied to settle');
    writeFileSync(marker, '');
    await eventually(() => !existsSync(marker), 20_000, 'a listing run done with rsync, ending 3 s later');
    // Written after that run listed the detector, each 1.4 s after the one before: the writer never pauses for settle_ms.
    for (let i = 1; i < 6; i++) {
      if (i > 1) await sleep(1400);
      appendFileSync(src, part(i));
    }
    const whole = Buffer.concat(Array.from({ length: 6 }, (_, i) => part(i)));
    const usr = path.join(ppu.ppuRamdisk, '1mf', '542_543');
    await eventually(() => !existsSync(src) && listFiles(usr).length > 0, 20_000, 'the file placed, its source removed');
    await sleep(2500);
    assert.deepEqual(listFiles(usr), [rel], 'one file, not a part of it and then the rest under a numbered name');
    assert.equal(sha256File(readFileSync(path.join(usr, rel))), sha256File(whole), 'all six parts');
  });
});

describe('furkad: a directory renamed on the detector while its files settle (F2, F10)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let marker: string;

  before(async () => {
    // The writer renames the directory just as the run that takes its settled files starts: that run's names are gone.
    ppu = wrappedPpu('ppu-settle-mv', 1000, (work) => {
      marker = path.join(work, 'rename-at-next-take');
      const det = path.join(work, 'detector-1MF', 'ramdisk');
      return `case " $* " in *" --files-from=-"*) if rm '${marker}' 2>/dev/null; then mv '${det}/scan_001' '${det}/scan_001_bad'; fi;; esac\nexec rsync "$@"\n`;
    });
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('delivers each file once under its new name, says so in one line, and takes it for no outage of the detector', async () => {
    await ppu.startShift(544, 545);
    const det = ppu.detectorRamdisks['1MF']!;
    const settling = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '.settling', '1MF');
    const names = Array.from({ length: 5 }, (_, i) => `img_${i}.cbf`);
    const sums = new Map(names.map((n) => [n, writeImage(det, `scan_001/${n}`, 30_000).sha256]));
    await eventually(() => names.every((n) => existsSync(path.join(settling, 'scan_001', n))), 20_000, 'every file copied to settle');
    writeFileSync(marker, '');
    const usr = path.join(ppu.ppuRamdisk, '1mf', '544_545');
    await eventually(() => !existsSync(marker) && listFiles(usr).length === names.length && listFiles(det).length === 0, 20_000, 'every file placed, the detector emptied');
    assert.deepEqual(listFiles(usr), names.map((n) => `scan_001_bad/${n}`), 'under the new name only, each once');
    for (const n of names) assert.equal(sha256File(readFileSync(path.join(usr, 'scan_001_bad', n))), sums.get(n), n);
    await ppu.quiescent();
    const said = ppu.furkad!.proc.output().split('\n');
    assert.deepEqual(said.filter((l) => l.includes('"level":50')), [], 'no error: the detector did not fail');
    const vanished = said.filter((l) => l.includes('files vanished from the detector before furkad took them'));
    assert.equal(vanished.length, 1, `one line for the five copies dropped:\n${vanished.join('\n')}`);
    assert.match(vanished[0]!, /"count":5,/);
    const row = (await ppu.furkaProperty<Array<[string, string, string, bigint, bigint, bigint]>>('Detectors')).find((r) => r[0] === '1MF')!;
    assert.deepEqual([row[1], row[2]], ['idle', ''], 'idle, no reason');
  });
});

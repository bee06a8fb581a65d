// furkad's shifts: a change in the middle of a stream, refused requests, planted symlinks, and its log
// file rotation; runs without a license key, so in single-thread mode (F4, F6, F8, S4).
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { SkewedClock } from '../fixtures/clock-skew.js';
import { burstAcrossStop, freezeAcrossShiftAndStop, streamAcrossShiftChange } from '../fixtures/shift-split.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { callMethod } from '../../src/dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../../src/dbus/names.js';

type Row = [string, string, string, bigint, bigint, bigint];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const furkaProperty = <T>(ppu: Ppu, name: string): Promise<T> => ppu.furkaProperty<T>(name);

describe('furkad: shifts, usrdir safety, license missing, log rotation (F4, F6, F8, S4)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let logDir: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-shift' });
    logDir = path.join(ppu.work, 'log');
    ppu.opts.furkad = { logfile: path.join(logDir, 'furkad.log'), logfile_max_size: 4096, logfile_max_number: 3,
      licensekey: path.join(ppu.work, 'no-such-license.key') };
    await ppu.start();
  });
  after(async () => {
    if (process.env["KEEP_TEST_DIRS"]) console.log(ppu?.work);
    await ppu?.stop();
  });

  it('shows single-thread mode and its reason when the key is missing (F8)', async () => {
    const [licensed, reason] = await furkaProperty<[boolean, string]>(ppu, 'License');
    assert.equal(licensed, false);
    assert.match(reason, /no license key at .*no-such-license\.key/);
  });

  // Before any test that restarts furkad: the files of earlier runs are kept (README), and would count here.
  it('rotates its log file by logfile_max_size and keeps logfile_max_number files (S4)', async () => {
    // Each shift start logs a line of a few hundred bytes.
    for (let i = 0; i < 80; i++) await ppu.startShift(900 + i, 900 + i);
    await eventually(() => {
      const files = readdirSync(logDir).filter((f) => /^furkad\.log\.\d+$/.test(f));
      return files.some((f) => Number(f.split('.').pop()) >= 4);
    }, 20_000, 'the log to roll over at least three times');
    const files = readdirSync(logDir).filter((f) => /^furkad\.log\.\d+$/.test(f));
    assert.ok(files.length <= 3, `at most logfile_max_number files kept: ${files.join(' ')}`);
    for (const f of files) {
      assert.ok(statSync(path.join(logDir, f)).size < 4096 + 2048, `${f} near logfile_max_size`);
    }
  });
  it('puts every file written before StartShift in the old shift and every file written after it in the new one (F6)', async () => {
    await streamAcrossShiftChange(ppu, { from: [500, 501], to: [600, 601], everyMs: 15, bytes: 5000, prefix: 'f', minEachSide: 10 });
  });

  it('places every file written before a graceful stop (systemctl restart) in the shift that ran, not in the default one it restarts with (F6)', async () => {
    await burstAcrossStop(ppu, { shift: [520, 521], defaultShift: [1000, 1000], count: 1500, bytes: 40_000, minWaiting: 20 });
  });

  it('places every file written before a stop whose SIGTERM reaches its whole process group (systemctl kill furkad, KillMode=control-group), its rsync runs too, in the shift that ran, owned by it (A5, F3, F6)', async () => {
    await burstAcrossStop(ppu, { shift: [522, 523], defaultShift: [1000, 1000], count: 1500, bytes: 40_000, minWaiting: 20, term: 'group' });
  });

  it('answers StartShift before busctl gives up, and stops within systemd\'s TimeoutStopSec, when the rsync daemon stops answering mid-run (F6)', async () => {
    const group = () => ppu.rsyncd['1MF']!.proc.child.pid!;
    await freezeAcrossShiftAndStop(ppu, { freeze: () => process.kill(-group(), 'SIGSTOP'), thaw: () => process.kill(-group(), 'SIGCONT'), count: 300, bytes: 100_000 });
  });

  it('goes on with the shift it ran after it was killed (a crash), counting its files on, and starts the default one after a clean stop (F6, A5)', async () => {
    await ppu.startShift(540, 541, [['1MF', '', '']]);
    const [usertime] = await furkaProperty<[bigint, number, number]>(ppu, 'Shift');
    const det = ppu.detectorRamdisks['1MF']!;
    const own = path.join(ppu.ppuRamdisk, '1mf', '540_541');
    const counted = async (): Promise<[bigint, bigint]> => {
      const row = (await furkaProperty<Row[]>(ppu, 'Detectors')).find((r) => r[0] === '1MF')!;
      return [row[3], row[4]];
    };
    const before = [writeImage(det, 'crash/before-1.cbf', 10_000), writeImage(det, 'crash/before-2.cbf', 10_000)];
    await eventually(() => before.every((f) => existsSync(path.join(own, f.rel))), 20_000, 'the files before the crash placed');
    await eventually(async () => (await counted())[0] === 2n, 10_000, 'the files before the crash counted');
    const keptCounts = path.join(ppu.work, 'furkad-state', 'running-shift-counts.json');
    await eventually(() => existsSync(keptCounts) && /"1MF":\{"files":2,/.test(readFileSync(keptCounts, 'utf8')), 10_000, 'the count kept in state_dir');
    await ppu.killFurkad();
    const during = writeImage(det, 'crash/during.cbf', 10_000); // written while no furkad ran
    await ppu.startFurkad(); // as systemd does after a crash (Restart=on-failure)
    assert.deepEqual(await furkaProperty<[bigint, number, number]>(ppu, 'Shift'), [usertime, 540, 541], 'the same shift, id and owner');
    const after = writeImage(det, 'crash/after.cbf', 10_000);
    await eventually(() => existsSync(path.join(own, during.rel)) && existsSync(path.join(own, after.rel)), 20_000, 'both in the shift that ran');
    // Detectors counts the shift's files on: the two before the crash and the two since, not the two since alone.
    await eventually(async () => (await counted())[0] === 4n, 10_000, 'the shift\'s count going on across the crash');
    assert.ok((await counted())[1] >= 40_000n, `its bytes too: ${(await counted())[1]}`);
    assert.equal(statSync(path.join(own, after.rel)).uid, 540, 'owned by it (F3)');
    assert.equal((await ppu.queryStatus(1))[0]![0], usertime, 'grimseld counts them in that shift too');
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0);
    await ppu.startFurkad();
    const [next, uid] = await furkaProperty<[bigint, number, number]>(ppu, 'Shift');
    assert.ok(next > usertime && uid === 1000, `after a clean stop, a new shift with the configured defaults (F6): ${next} ${uid}`);
    // A stop asked for counts from its start: killed while stopping (past TimeoutStopSec), still the defaults next.
    await ppu.startShift(542, 543, [['1MF', '', '']]);
    ppu.furkad!.proc.child.kill('SIGTERM');
    await sleep(200);
    await ppu.killFurkad();
    await ppu.startFurkad();
    const [, uidAfterKill] = await furkaProperty<[bigint, number, number]>(ppu, 'Shift');
    assert.equal(uidAfterKill, 1000, 'a restart asked for gives the default shift even if the stop was cut short');
  });

  it('refuses root, unknown detectors and missing targets by name and keeps the running shift (F6)', async () => {
    const before = await furkaProperty<[bigint, number, number]>(ppu, 'Shift');
    const furka = await ppu.furka();
    const start = (furka as unknown as Record<string, (...a: unknown[]) => Promise<void>>)['StartShift']!.bind(furka);
    const refused = (p: Promise<void>, name: string, text: RegExp) =>
      assert.rejects(p, (e: { type?: string; text?: string }) => e.type === name && text.test(e.text ?? ''));
    await refused(start(0, 501, []), 'org.ppu.Error.NotAllowed', /allow_root_shift = no/);
    await refused(start(500, 0, []), 'org.ppu.Error.NotAllowed', /owned by root/);
    await refused(start(700, 701, [['1MF', '', '/no/such/dir/./1mf']]), 'org.ppu.Error.NotFound', /\/no\/such\/dir is not an existing directory/);
    await refused(start(700, 701, [['1MF', '', 'rel/./1mf']]), 'org.ppu.Error.InvalidArgs', /must be an absolute path/);
    await refused(start(700, 701, [['9MF', '', '']]), 'org.ppu.Error.UnknownDetector', /unknown detector '9MF'/);
    // The rsync daemon would expand it as a pattern and pull other directories too (F1).
    await refused(start(700, 701, [['1MF', '/run?', '']]), 'org.ppu.Error.InvalidArgs', /^source of detector '1MF': '\/run\?' holds '\?', which the detector's rsync daemon expands as a pattern/);
    assert.deepEqual(await furkaProperty<[bigint, number, number]>(ppu, 'Shift'), before, 'the running shift is untouched');
    writeImage(ppu.detectorRamdisks['1MF']!, 'still/serving.cbf', 100);
    await eventually(() => existsSync(path.join(ppu.ppuRamdisk, '1mf', `${before[1]}_${before[2]}`, 'still/serving.cbf')), 20_000,
      'the running shift still served');
  });

  it('never writes through a symlink planted in place of the usrdir, and resumes once it is gone (F4)', async () => {
    const elsewhere = path.join(ppu.work, 'elsewhere');
    mkdirSync(elsewhere);
    const usr = path.join(ppu.ppuRamdisk, '1mf', '800_801');
    symlinkSync(elsewhere, usr);
    await ppu.startShift(800, 801);
    writeImage(ppu.detectorRamdisks['1MF']!, 'planted/x.cbf', 1000);
    await eventually(async () => (await furkaProperty<Row[]>(ppu, 'Detectors')).some((r) => r[0] === '1MF' && /symbolic link/.test(r[2])),
      20_000, 'the detector to report the planted link');
    await sleep(500);
    assert.deepEqual(listFiles(elsewhere), [], 'nothing written through the link');
    unlinkSync(usr); // the link
    await eventually(() => existsSync(path.join(usr, 'planted/x.cbf')), 30_000, 'delivery into a real usrdir once the link is gone');
    const st = statSync(usr);
    assert.ok(st.isDirectory());
    assert.deepEqual([st.uid, st.gid], [800, 801], 'usrdir created owned by the shift');
    const sub = statSync(path.join(usr, 'planted'));
    assert.deepEqual([sub.uid, sub.gid], [800, 801], 'subdirectory owned by the shift');

    // The user owns the usrdir and may plant a link below it too: the file waits in staging, never follows it.
    symlinkSync(elsewhere, path.join(usr, 'deeper'));
    writeImage(ppu.detectorRamdisks['1MF']!, 'deeper/y.cbf', 1000);
    await eventually(async () => (await furkaProperty<Row[]>(ppu, 'Detectors')).some((r) => r[0] === '1MF' && /deeper\/y\.cbf.*symbolic link/.test(r[2])),
      20_000, 'the detector to report the link below the usrdir');
    assert.deepEqual(listFiles(elsewhere), [], 'nothing written through the deeper link');
    unlinkSync(path.join(usr, 'deeper')); // the link
    await eventually(() => existsSync(path.join(usr, 'deeper/y.cbf')), 30_000, 'the held file placed once the link is gone');
    await eventually(async () => (await furkaProperty<Row[]>(ppu, 'Detectors')).some((r) => r[0] === '1MF' && r[2] === ''), 20_000, 'the error cleared');
  });

  it('leaves no empty directory of an ended shift on the ramdisk, once grimseld has cleaned it (F4, G5)', async () => {
    const det = ppu.detectorRamdisks['1MF']!;
    const base = path.join(ppu.ppuRamdisk, '1mf');
    const internal = path.join(ppu.storageRoot, 'internal', '1mf');
    const dirs = (): string[] => readdirSync(base).filter((n) => n !== '.furkad-staging').sort();
    const usr = (uid: number): string => `${uid}_${uid}`;
    for (let uid = 1100; uid < 1106; uid++) {
      await ppu.startShift(uid, uid);
      writeImage(det, `sweep/run/f${uid}.cbf`, 1000);
      await eventually(() => existsSync(path.join(internal, usr(uid), `sweep/run/f${uid}.cbf`)), 20_000, `shift ${uid}'s file copied`);
    }
    // grimseld removes the ended shifts' files once copied (G5); furkad removes their emptied directories.
    await ppu.startShift(1300, 1300);
    await eventually(() => listFiles(base).filter((f) => !f.startsWith('.furkad-staging')).length === 0, 20_000, 'files of ended shifts cleaned');
    await ppu.startShift(1301, 1301);
    await eventually(() => dirs().join() === usr(1301), 20_000, `only the current shift's directory left: ${dirs().join(' ')}`);
    // Their copies are untouched, and the new shift still gets its files.
    for (let uid = 1100; uid < 1106; uid++) assert.ok(existsSync(path.join(internal, usr(uid), `sweep/run/f${uid}.cbf`)));
    writeImage(det, 'sweep/after.cbf', 1000);
    await eventually(() => existsSync(path.join(base, usr(1301), 'sweep/after.cbf')), 20_000, 'delivery into the current shift');
  });
});

describe('furkad restarted after the clock was set back (F6, G5)', function () {
  this.timeout(120_000);

  it("goes on with the shift it ran after a crash whatever steps the PPU's wall clock took meanwhile (ntpdate, date -s; tester h9)", async () => {
    const shim = tempDir('clock-shim-resume');
    const clock = new SkewedClock(shim); // fails (never skips) without gcc
    const stepped = new Ppu({ prefix: 'ppu-resume-step', uid: 1300, gid: 1301, furkadEnv: clock.env });
    await stepped.start();
    try {
      await stepped.startShift(900, 901, []);
      const ran = await furkaProperty<[bigint, number, number]>(stepped, 'Shift');
      assert.ok(existsSync(path.join(stepped.work, 'furkad-state', 'running-shift.json')), 'the shift kept');
      // Stepped 2 min forward, then killed at once: it ended a moment ago, not 2 min ago.
      clock.set(120);
      await stepped.killFurkad();
      await stepped.startFurkad();
      assert.deepEqual(await furkaProperty<[bigint, number, number]>(stepped, 'Shift'), ran, 'the same shift after a step forward');
      // Stepped 3 h back, killed again: still the same shift, files in its directory.
      clock.set(-3 * 3600);
      await stepped.killFurkad();
      await stepped.startFurkad();
      assert.deepEqual(await furkaProperty<[bigint, number, number]>(stepped, 'Shift'), ran, 'the same shift after a step back');
      const f = writeImage(stepped.detectorRamdisks['1MF']!, 'stepped/a.cbf', 1000);
      await eventually(() => existsSync(path.join(stepped.ppuRamdisk, '1mf/900_901', f.rel)) ||
        existsSync(path.join(stepped.storageRoot, 'internal/1mf/900_901', f.rel)), 20_000, 'a file in the shift that ran');
    } finally {
      await stepped.stop();
      rmSync(shim, { recursive: true, force: true });
    }
  });

  it('starts its shift after the last one it started, so grimseld keeps the new shift\'s ramdisk files for the online processing', async () => {
    const ppu = new Ppu({ prefix: 'ppu-clock', uid: 1300, gid: 1301 });
    await ppu.start();
    try {
      // The shift before started an hour "later" than now: furkad's clock was an hour ahead then (an RTC off until
      // NTP stepped it back). grimseld heard of it as furkad tells it of every shift; furkad kept its id.
      const ahead = (BigInt(Date.now()) + 3_600_000n) * 1000n;
      assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0); // a restart: the next one starts a new shift (F6)
      const intake = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
      await callMethod(intake, 'ShiftStarted', ahead, 1200, 1201);
      writeFileSync(path.join(ppu.work, 'furkad-state', 'last-shift'), `${ahead}\n`);
      await ppu.startFurkad();
      const [usertime] = await furkaProperty<[bigint, number, number]>(ppu, 'Shift');
      assert.ok(usertime > ahead, `the new shift's id ${usertime} comes after the last one's ${ahead}`);
      await eventually(async () => (await ppu.queryStatus(1))[0]?.[0] === usertime, 20_000, 'grimseld to take it for the current shift');
      const files = Array.from({ length: 3 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `late/f${i}.cbf`, 10_000));
      await eventually(async () => (await ppu.queryStatus(1)).every((r) => r[5] === 3n), 20_000, 'the new shift\'s files copied');
      await sleep(1500); // grimseld's clean-up of earlier shifts runs 4 times a second
      for (const f of files) assert.ok(existsSync(path.join(ppu.ppuRamdisk, '1mf/1300_1301', f.rel)), `${f.rel} still on the ramdisk`);
    } finally {
      await ppu.stop();
    }
  });
});

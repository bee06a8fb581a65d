// A hostile shift user (nobody, 65534) against both daemons, as in the security issue's rows 4-7: directories
// other shifts use, a shift that owns nothing, targets outside the ramdisk, a link that blocks the shift change
// (F4, F6, G3, S2). The user's commands run as the user (setpriv), not as root. Rows 1-3, the races, are
// in hostile-races.test.ts.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { asNobody, NOBODY } from '../fixtures/hostile.js';

type Row = [string, string, string, bigint, bigint, bigint];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function owner(p: string): [number, number, string] {
  const st = lstatSync(p);
  return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
}

describe('a hostile shift user: shared directories, unowned shifts, confined targets, a blocking link (F4, F6, G3, S2)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let storage: string;
  const startShiftRaw = async (uid: number, gid: number, detectors: Array<[string, string, string]>): Promise<void> => {
    const furka = await ppu.furka();
    await (furka as unknown as Record<string, (...a: unknown[]) => Promise<void>>)['StartShift']!.call(furka, uid, gid, detectors);
  };
  const refused = (p: Promise<void>, name: string, text: RegExp) =>
    assert.rejects(p, (e: { type?: string; text?: string }) => e.type === name && text.test(e.text ?? ''));
  const lastError = async (): Promise<string> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')?.[2] ?? '';

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-hostile', uid: NOBODY, gid: NOBODY });
    // mkdtemp makes it 0700: the user must reach the ramdisk and the storage, as on a PPU.
    chmodSync(ppu.work, 0o755);
    storage = path.join(ppu.storageRoot, 'internal');
    await ppu.start();
  });
  after(async () => {
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
  });

  it("row 4: the per-detector directory on a storage is root's, so a user cannot prepare or empty another shift's directories (G3, F4)", async () => {
    writeImage(ppu.detectorRamdisks['1MF']!, 'f0.cbf', 100);
    await eventually(() => existsSync(path.join(storage, '1mf/65534_65534/f0.cbf')), 20_000, 'the first copy');
    assert.deepEqual(owner(path.join(storage, '1mf')), [0, 0, '755'], 'S/1mf');
    assert.deepEqual(owner(path.join(ppu.ppuRamdisk, '1mf')), [0, 0, '755'], 'the ramdisk target');
    assert.deepEqual(owner(path.join(storage, '1mf/65534_65534')).slice(0, 2), [NOBODY, NOBODY], 'the usrdir is the shift user\'s');
    assert.equal(asNobody('mkdir', '-p', path.join(storage, '1mf/500_501/v500c')), false, 'the user cannot make a later shift\'s directory');
    assert.ok(!existsSync(path.join(storage, '1mf/500_501')));

    await ppu.startShift(500, 501);
    writeImage(ppu.detectorRamdisks['1MF']!, 'v500c/c_1.cbf', 100);
    const copy = path.join(storage, '1mf/500_501/v500c/c_1.cbf');
    await eventually(() => existsSync(copy), 20_000, "user 500's copy");
    assert.deepEqual(owner(path.join(storage, '1mf/500_501')).slice(0, 2), [500, 501]);
    assert.deepEqual(owner(path.join(storage, '1mf/500_501/v500c')).slice(0, 2), [500, 501]);
    await ppu.startShift(NOBODY, NOBODY);
    assert.equal(asNobody('rm', '-f', copy), false, "the user cannot delete user 500's only copy");
    assert.ok(existsSync(copy));

    // S/1mf as an earlier version left it, the first user's and writable by all: given back to root when a
    // directory is next made below it.
    chownSync(path.join(storage, '1mf'), NOBODY, NOBODY);
    chmodSync(path.join(storage, '1mf'), 0o777);
    writeImage(ppu.detectorRamdisks['1MF']!, 'later/f1.cbf', 100);
    await eventually(() => existsSync(path.join(storage, '1mf/65534_65534/later/f1.cbf')), 20_000, 'a copy in a new directory');
    assert.deepEqual(owner(path.join(storage, '1mf')), [0, 0, '755'], 'S/1mf given back to root');
  });

  it('row 5: refuses a shift of uid or gid 4294967295, which would own nothing (S2)', async () => {
    const before = await ppu.furkaProperty<[bigint, number, number]>('Shift');
    await refused(startShiftRaw(4294967295, 4294967295, []), 'org.ppu.Error.InvalidArgs', /uid 4294967295 is out of range/);
    await refused(startShiftRaw(500, 4294967295, []), 'org.ppu.Error.InvalidArgs', /gid 4294967295 is out of range/);
    assert.deepEqual(await ppu.furkaProperty<[bigint, number, number]>('Shift'), before, 'the running shift is untouched');
  });

  it("row 6: refuses targets with '..' or outside the configured target's root, links followed, and creates nothing there (F6, S2)", async () => {
    const before = await ppu.furkaProperty<[bigint, number, number]>('Shift');
    const made = ['/etc/700_701', `/etc/ppu-sec-${process.pid}`].filter((p) => !existsSync(p));
    const outside = path.join(ppu.work, 'outside');
    mkdirSync(outside);
    symlinkSync(outside, path.join(ppu.ppuRamdisk, 'esc'));
    try {
      await refused(startShiftRaw(700, 701, [['1MF', '', `/r/../../../../etc/./ppu-sec-${process.pid}`]]), 'org.ppu.Error.InvalidArgs', /must not contain '\.\.'/);
      await refused(startShiftRaw(700, 701, [['1MF', '', '/etc/./']]), 'org.ppu.Error.NotAllowed', /'\/etc\/\.\/' is outside /);
      await refused(startShiftRaw(700, 701, [['1MF', '', `${ppu.ppuRamdisk}/esc/./x`]]), 'org.ppu.Error.NotAllowed', /is outside /);
      assert.deepEqual(await ppu.furkaProperty<[bigint, number, number]>('Shift'), before, 'the running shift is untouched');
      await sleep(500);
      for (const p of made) assert.ok(!existsSync(p), `${p} not created`);
      assert.deepEqual(readdirSync(outside), [], 'nothing created through the link');
    } finally {
      for (const p of made) rmSync(p, { recursive: true, force: true });
      rmSync(path.join(ppu.ppuRamdisk, 'esc'), { recursive: true, force: true }); // the link (recursive: Node 16 follows it otherwise, EISDIR)
    }
  });

  it("row 7: a link planted in the shift directory never holds up StartShift, and its file stays the old shift's (F6)", async () => {
    const shift = await ppu.furkaProperty<[bigint, number, number]>('Shift');
    assert.deepEqual(shift.slice(1), [NOBODY, NOBODY]);
    const u = path.join(ppu.ppuRamdisk, '1mf', '65534_65534');
    const rootDir = path.join(ppu.work, 'root-owned');
    mkdirSync(rootDir, { mode: 0o755 });
    assert.ok(asNobody('ln', '-s', rootDir, path.join(u, 'run8')), 'the user plants the link');
    writeImage(ppu.detectorRamdisks['1MF']!, 'run8/x.cbf', 1000);
    await eventually(async () => /run8\/x\.cbf.*symbolic link/.test(await lastError()), 20_000, 'the planted link reported');

    const t0 = Date.now();
    await Promise.race([ppu.startShift(500, 501), sleep(5000).then(() => { throw new Error('StartShift did not return within 5 s'); })]);
    assert.ok(Date.now() - t0 < 5000);
    writeImage(ppu.detectorRamdisks['1MF']!, 'run9/y.cbf', 1000);
    await eventually(() => existsSync(path.join(storage, '1mf/500_501/run9/y.cbf')), 20_000, 'the new shift served');
    assert.ok(!existsSync(path.join(ppu.ppuRamdisk, '1mf/500_501/run8/x.cbf')), "never in the new shift's directory");
    assert.deepEqual(readdirSync(rootDir), [], 'nothing written through the link');
    assert.match(await lastError(), /1 file of an earlier shift \(65534:65534\) wait in .*run8\/x\.cbf/);

    // The user removes the link: the file goes where it belongs, and is copied for its shift.
    assert.ok(asNobody('rm', path.join(u, 'run8')));
    await eventually(() => existsSync(path.join(storage, '1mf/65534_65534/run8/x.cbf')), 30_000, "the file copied in its own shift's directory");
    assert.deepEqual(owner(path.join(storage, '1mf/65534_65534/run8/x.cbf')).slice(0, 2), [NOBODY, NOBODY]);
    assert.ok(!existsSync(path.join(storage, '1mf/500_501/run8')));
    await eventually(async () => !/earlier shift/.test(await lastError()), 20_000, 'the report cleared');
    // later/f1.cbf of row 4 and run8/x.cbf.
    await eventually(async () => (await ppu.queryStatus(-1)).some((r) => r[0] === shift[0] && r[5] === 2n && r[4] === 0n), 10_000,
      'x.cbf counted as copied for the old shift');
  });
});

// A local user who makes a detector's target, or anything in it, before furkad does (a 1777 ramdisk after boot),
// and what such a user leaves in a target an earlier furkad took back: nothing of theirs becomes a directory
// furkad places a shift's images into, and nothing they leave stops a detector for good (F4, docs/threat-model.md
// "Directories, and whose they are"). The hostile user's commands run as that user (setpriv).
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { asNobody, NOBODY } from '../fixtures/hostile.js';

type Row = [string, string, string, bigint, bigint, bigint];

function owner(p: string): [number, number, string] {
  const st = lstatSync(p);
  return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
}

const sha256 = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');
const aside = `moved-aside-uid${NOBODY}`;

describe('furkad: a target a local user made first on a 1777 ramdisk (F4)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let r: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-planted', uid: 500, gid: 501, detectors: ['1MF', '4M'] });
    r = ppu.ppuRamdisk;
    mkdirSync(r);
    chmodSync(r, 0o1777);
    // Before furkad ever ran: the user makes detector 1MF's target with the shift's directory, staging and a later
    // shift's directory in it, a fake image under a name the detector will write, a link named like another
    // shift's directory; and in place of detector 4M's target, a link to a directory of their own.
    const planted = [
      'umask 0',
      `mkdir -p ${r}/1mf/500_501/run1 ${r}/1mf/.furkad-staging/1MF ${r}/1mf/600_601 ${r}/mine`,
      `echo fake > ${r}/1mf/500_501/run1/img.cbf`,
      `echo staged > ${r}/1mf/.furkad-staging/1MF/staged.cbf`,
      `echo later > ${r}/1mf/600_601/later.cbf`,
      `ln -s /etc ${r}/1mf/540_541`,
      `ln -s ${r}/mine ${r}/4m`,
    ].join(' && ');
    assert.ok(asNobody('sh', '-c', planted), 'the user plants their tree');
    await ppu.start();
  });
  after(async () => {
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
  });

  it("moves aside what the user put into the target, so the shift's images land in directories only the shift can change", async () => {
    const img = writeImage(ppu.detectorRamdisks['1MF']!, 'run1/img.cbf', 1000);
    const placed = path.join(r, '1mf/500_501/run1/img.cbf');
    await eventually(() => existsSync(placed), 30_000, 'the image placed under its own name');
    assert.equal(sha256(placed), img.sha256, "the detector's image, not the user's");
    assert.deepEqual(owner(path.join(r, '1mf')), [0, 0, '755'], 'the target given back to root');
    assert.deepEqual(owner(path.join(r, '1mf/500_501')), [500, 501, '755'], "the shift's directory furkad's, no group or other write");
    assert.deepEqual(owner(path.join(r, '1mf/500_501/run1')), [500, 501, '755']);
    assert.deepEqual(owner(path.join(r, '1mf/.furkad-staging')), [0, 0, '700'], "staging furkad's own");
    // The user's entries are kept beside, as they were, under names that say whose they were (empty ones go with
    // the sweep of ended shifts' empty directories).
    assert.deepEqual(readdirSync(path.join(r, '1mf')).filter((n) => n.includes('moved-aside')).sort(),
      [`.furkad-staging.${aside}`, `500_501.${aside}`, `540_541.${aside}`, `600_601.${aside}`]);
    assert.equal(readFileSync(path.join(r, `1mf/500_501.${aside}/run1/img.cbf`), 'utf8'), 'fake\n');
    assert.ok(!existsSync(path.join(r, '1mf/500_501/staged.cbf')), "what the user's staging held is not taken for the shift's");
    assert.equal(readlinkSync(path.join(r, `1mf/540_541.${aside}`)), '/etc');
    assert.match(ppu.furkad!.proc.output(), /1mf was open to others until furkad gave it back to root: .*4 entries moved aside \(kept, never used by furkad\): .*500_501 \(directory of uid 65534\)/);
    assert.equal(asNobody('sh', '-c', `echo x > ${r}/1mf/500_501/run1/more.cbf`), false, 'the user cannot write there any more');
  });

  it("moves aside the user's link in place of a target and makes the target furkad's, never following the link", async () => {
    const img = writeImage(ppu.detectorRamdisks['4M']!, 'x.cbf', 1000);
    const placed = path.join(r, '4m/500_501/x.cbf');
    await eventually(() => existsSync(placed), 30_000, "4M's image in a target of furkad's own");
    assert.equal(sha256(placed), img.sha256);
    assert.deepEqual(owner(path.join(r, '4m')), [0, 0, '755']);
    assert.equal(readlinkSync(path.join(r, `4m.${aside}`)), `${r}/mine`);
    assert.deepEqual(readdirSync(path.join(r, 'mine')), [], 'nothing made through the link');
  });

  it("still refuses, at StartShift, a target that is a user's directory", async () => {
    const furka = await ppu.furka();
    await assert.rejects((furka as unknown as Record<string, (...a: unknown[]) => Promise<void>>)['StartShift']!.call(furka, 500, 501, [['1MF', '', `${r}/./mine`]]),
      (e: { type?: string; text?: string }) => e.type === 'org.ppu.Error.NotAllowed' && /mine is owned by uid 65534/.test(e.text ?? ''));
    assert.deepEqual(owner(path.join(r, 'mine')).slice(0, 2), [NOBODY, NOBODY], 'left as it is');
  });

  it('serves a later shift whose directory the user had taken a link name of', async () => {
    await ppu.startShift(540, 541);
    writeImage(ppu.detectorRamdisks['1MF']!, 'later.cbf', 1000);
    await eventually(() => existsSync(path.join(r, '1mf/540_541/later.cbf')), 30_000, 'the later shift served');
    assert.deepEqual(owner(path.join(r, '1mf/540_541')), [540, 541, '755']);
    assert.ok(!existsSync('/etc/later.cbf'));
  });
});

describe('furkad: what a user left in a target an earlier furkad took back (F4)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let t: string;
  const lastError = async (): Promise<string> => (await ppu.furkaProperty<Row[]>('Detectors')).find((row) => row[0] === '1MF')?.[2] ?? '';

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-leftover', uid: 500, gid: 501 });
    t = path.join(ppu.ppuRamdisk, '1mf');
    // The target is root's, 0755, as the earlier furkad left it; what the user had made in it is still theirs.
    mkdirSync(t, { recursive: true, mode: 0o755 });
    for (const d of ['500_501', '500_501/run1', '.furkad-staging']) {
      mkdirSync(path.join(t, d), { mode: 0o777 });
      chownSync(path.join(t, d), NOBODY, NOBODY);
      chmodSync(path.join(t, d), 0o777);
    }
    symlinkSync('/etc', path.join(t, '540_541'));
    lchownSync(path.join(t, '540_541'), NOBODY, NOBODY);
    await ppu.start();
  });
  after(async () => {
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
  });

  it("makes its own staging in place of the user's, instead of stopping the detector", async () => {
    writeImage(ppu.detectorRamdisks['1MF']!, 'run1/a.cbf', 1000);
    await eventually(() => existsSync(path.join(t, '500_501/run1/a.cbf')), 30_000, 'the image delivered')
      .catch(async (e: Error) => { throw new Error(`${e.message}; lastError: ${await lastError()}`); });
    assert.deepEqual(owner(path.join(t, '.furkad-staging')), [0, 0, '700']);
    assert.deepEqual(owner(path.join(t, `.furkad-staging.${aside}`)), [NOBODY, NOBODY, '777'], "the user's, kept as it was");
  });

  it("gives the shift's directory and the one below it, which were the user's, to the shift without group or other write", async () => {
    assert.deepEqual(owner(path.join(t, '500_501')), [500, 501, '755']);
    assert.deepEqual(owner(path.join(t, '500_501/run1')), [500, 501, '755']);
    assert.equal(asNobody('sh', '-c', `echo x > ${t}/500_501/run1/b.cbf`), false, 'the user cannot write there any more');
  });

  it("serves a shift whose directory's name the user's link held", async () => {
    await ppu.startShift(540, 541);
    writeImage(ppu.detectorRamdisks['1MF']!, 'later.cbf', 1000);
    await eventually(() => existsSync(path.join(t, '540_541/later.cbf')), 30_000, 'the shift served')
      .catch(async (e: Error) => { throw new Error(`${e.message}; lastError: ${await lastError()}`); });
    assert.deepEqual(owner(path.join(t, '540_541')), [540, 541, '755']);
    assert.equal(readlinkSync(path.join(t, `540_541.${aside}`)), '/etc');
    assert.ok(!existsSync('/etc/later.cbf'));
  });
});

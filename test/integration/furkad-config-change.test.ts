// furkad.conf changed across a restart while files are in flight, with a real rsync daemon (or furka-agent), furkad
// and grimseld (A5, F2, F6): a detector renamed ([detector.1MF] -> [detector.EIGER], same daemon and target), its
// target changed, its transport changed. Found by a hostile tester (session 27): files owed to the ended shift went
// to the new furkad's default shift, files set aside for it (.held) and files left in staging by a killed furkad were
// stranded for good, and nothing was logged.
import { strict as assert } from 'node:assert';
import { appendFileSync, existsSync, readFileSync, readdirSync, statSync, symlinkSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';
import { MB, fillingPpu, saidNoRoomFor, saidOwed, writeImages } from '../fixtures/full-ppu.js';

type Row = [string, string, string, bigint, bigint, bigint];

/** The first line furkad logged that matches `re`, once it has. */
async function line(ppu: Ppu, re: RegExp): Promise<string> {
  await ppu.furkad!.proc.said(re, 20_000);
  return ppu.furkad!.proc.output().split('\n').find((l) => re.test(l))!;
}

/** Edits furkad.conf as an administrator would between a stop and a start. */
function editConf(ppu: Ppu, change: 'rename' | 'target'): void {
  const s = readFileSync(ppu.furkadConf, 'utf8');
  const edited = change === 'rename' ? s.replace('[detector.1MF]', '[detector.EIGER]') : s.replace(/\/\.\/1mf$/m, '/./1mfnew');
  assert.notEqual(edited, s, 'furkad.conf changed');
  writeFileSync(ppu.furkadConf, edited);
}

/**
 * A shift 500:501 whose detector's file cannot be placed (its user planted a link where its directory goes): the
 * file is taken off the detector and waits in staging. Returns the shift's directory and the link.
 */
async function fileWaitingInStaging(ppu: Ppu): Promise<{ udir: string; link: string }> {
  await ppu.startShift(500, 501, []);
  const root = ppu.detectorRamdisks['1MF']!;
  const udir = path.join(ppu.ppuRamdisk, '1mf', '500_501');
  await eventually(() => existsSync(udir), 20_000, 'the shift\'s directory');
  const elsewhere = path.join(ppu.work, 'elsewhere');
  mkdirSync(elsewhere);
  const link = path.join(udir, 'run1');
  symlinkSync(elsewhere, link);
  const img = writeImage(root, 'run1/a.cbf', 4096);
  await eventually(() => !existsSync(path.join(root, img.rel)), 20_000, 'taken off the detector');
  await ppu.furkad!.proc.said(/cannot move a transferred file into place; retrying/, 20_000);
  return { udir, link };
}

describe('furkad.conf changed across a restart, files in flight (A5, F2, F6)', function () {
  this.timeout(240_000);

  for (const transport of ['rsync', 'agent'] as const) it(`images owed to the ended shift stay its own after the detector is renamed (same ${transport === 'rsync' ? 'rsync daemon and module' : 'furka-agent'})`, async () => {
    const { ppu, internal } = fillingPpu({ prefix: `ppu-cc-owed-${transport}`, transport });
    await ppu.start();
    try {
      await ppu.startShift(500, 501, []);
      const images = writeImages(ppu, 25).map((f) => f.rel);
      await saidNoRoomFor(ppu, transport === 'rsync' ? 'img_024.cbf' : undefined);
      await ppu.startShift(600, 600, []);
      await saidOwed(ppu);
      assert.equal(await ppu.furkad!.proc.stop(30_000), 0);
      editConf(ppu, 'rename');
      await ppu.startFurkad();
      await ppu.furkad!.proc.said(transport === 'rsync' ? /files owed to ended shifts by detector 1MF, no longer in furkad.conf, are detector EIGER's/
        : /what detector 1MF, no longer in furkad.conf, had placed, set aside or owed to ended shifts is detector EIGER's/, 20_000);
      mountTmpfs(internal, 200 * MB);
      const where = (rel: string): string[] => ['500_501', '600_600', '1000_1000'].filter((u) => existsSync(path.join(internal, '1mf', u, rel)));
      await eventually(() => images.every((rel) => where(rel).length > 0), 120_000, 'every image copied');
      assert.deepEqual(images.filter((rel) => where(rel).join() !== '500_501'), [], 'every image in the old shift\'s directory only');
    } finally {
      await ppu.stop();
    }
  });

  for (const change of ['rename', 'target'] as const) {
    it(`files set aside for the ended shift reach its directory after the detector's ${change === 'rename' ? 'section is renamed' : 'target is changed'}`, async () => {
      const ppu = new Ppu({ prefix: `ppu-cc-held-${change}`, transport: 'rsync' });
      await ppu.start();
      try {
        const { udir, link } = await fileWaitingInStaging(ppu);
        await ppu.startShift(600, 600, []);
        const aside = path.join(ppu.ppuRamdisk, '1mf/.furkad-staging/.held');
        await eventually(() => existsSync(aside) && readdirSync(aside).length > 0, 20_000, 'set aside');
        assert.equal(await ppu.furkad!.proc.stop(30_000), 0);
        editConf(ppu, change);
        unlinkSync(link); // the user removes the link
        await ppu.startFurkad();
        await ppu.furkad!.proc.said(/set aside by an earlier furkad for detector 1MF \(furkad.conf changed since\)|set aside by an earlier furkad: tried again/, 20_000);
        const copy = path.join(ppu.storageRoot, 'internal/1mf/500_501/run1/a.cbf');
        await eventually(() => existsSync(path.join(udir, 'run1/a.cbf')) || existsSync(copy), 30_000, 'placed into the ended shift\'s directory');
        assert.deepEqual(listFiles(ppu.storageRoot).filter((f) => f.endsWith('a.cbf') && !f.includes('500_501')), [], 'in no other shift\'s directory');
      } finally {
        await ppu.stop();
      }
    });
  }

  for (const change of ['rename', 'target'] as const) {
    it(`files a killed furkad left in staging are placed after the detector's ${change === 'rename' ? 'section is renamed (same target)' : 'target is changed'}`, async () => {
      const ppu = new Ppu({ prefix: `ppu-cc-staged-${change}`, transport: 'rsync' });
      await ppu.start();
      try {
        const { link } = await fileWaitingInStaging(ppu);
        await ppu.killFurkad();
        editConf(ppu, change);
        unlinkSync(link);
        await ppu.startFurkad();
        await ppu.furkad!.proc.said(new RegExp(`files taken off detector 1MF, no longer in furkad.conf as it was, were left in its staging: detector ${change === 'rename' ? 'EIGER \\(the same target' : '1MF \\(its new target'}`), 20_000);
        await eventually(() => listFiles(ppu.storageRoot).some((f) => f.endsWith('a.cbf')), 30_000, 'the staged file delivered');
      } finally {
        await ppu.stop();
      }
    });
  }

  it("copies of files still settling under the detector's old target are dropped when its target changes, and the file is delivered once, whole, to the new one (F2, tester h8)", async () => {
    // furkad's defaults (settle_ms = 2000): a file whose writer keeps appending stays a copy in .settling.
    const ppu = new Ppu({ prefix: 'ppu-cc-settling', transport: 'rsync', writerRenames: false });
    await ppu.start();
    let writing: NodeJS.Timeout | undefined;
    try {
      const det = ppu.detectorRamdisks['1MF']!;
      const file = path.join(det, 'slow.cbf');
      writeFileSync(file, Buffer.alloc(10_000, 1));
      writing = setInterval(() => appendFileSync(file, Buffer.alloc(1000, 2)), 300);
      const settling = path.join(ppu.ppuRamdisk, '1mf/.furkad-staging/.settling/1MF');
      await eventually(() => listFiles(settling).includes('slow.cbf'), 20_000, 'a copy of the growing file in .settling');
      assert.equal(await ppu.furkad!.proc.stop(30_000), 0);
      editConf(ppu, 'target');
      await ppu.startFurkad();
      await ppu.furkad!.proc.said(/"dir":"[^"]*\.settling\/1MF","files":1.*copies of files still settling for a detector no longer in furkad.conf as it was dropped/, 20_000);
      assert.equal(existsSync(settling), false, 'the old target keeps no copy');
      clearInterval(writing);
      writing = undefined;
      const size = statSync(file).size;
      const placed = path.join(ppu.ppuRamdisk, '1mfnew/1000_1000/slow.cbf');
      const copy = path.join(ppu.storageRoot, 'internal/1mfnew/1000_1000/slow.cbf');
      await eventually(() => [placed, copy].some((f) => existsSync(f)), 30_000, 'delivered to the new target');
      await ppu.quiescent();
      assert.equal(statSync(existsSync(placed) ? placed : copy).size, size, 'whole');
      assert.deepEqual(listFiles(ppu.storageRoot).filter((f) => f.endsWith('slow.cbf')), ['internal/1mfnew/1000_1000/slow.cbf'], 'once');
    } finally {
      if (writing) clearInterval(writing);
      await ppu.stop();
    }
  });

  it('a transport changed rsync -> agent: owed files are said at start, files set aside are placed for their shift', async () => {
    const { ppu } = fillingPpu({ prefix: 'ppu-cc-transport', transport: 'rsync' });
    await ppu.start();
    try {
      const { link } = await fileWaitingInStaging(ppu);
      writeImages(ppu, 25, 'run2');
      await saidNoRoomFor(ppu, 'img_024.cbf');
      await ppu.startShift(600, 600, []);
      await saidOwed(ppu);
      await eventually(() => listFiles(path.join(ppu.ppuRamdisk, '1mf/.furkad-staging/.held')).some((f) => f.endsWith('a.cbf')), 20_000, 'a.cbf set aside');
      await ppu.killFurkad();
      ppu.opts.transport = 'agent';
      await ppu.startAgent('1MF');
      ppu.writeConfigs();
      unlinkSync(link);
      await ppu.startFurkad();
      const said = await line(ppu, /on rsync detector 1MF, owed to ended shifts, cannot be taken for them: furkad.conf changed its transport/);
      assert.match(said, /rsync-owed-1MF\.json/);
      assert.match(said, /500:501/);
      await eventually(() => existsSync(path.join(ppu.ppuRamdisk, '1mf/500_501/run1/a.cbf')), 30_000, 'a.cbf placed for its shift');
    } finally {
      await ppu.stop();
    }
  });

  it('a transport changed rsync -> agent after furkad was killed: files it left in staging are kept and said, not cleared by the agent', async () => {
    const ppu = new Ppu({ prefix: 'ppu-cc-stranded', transport: 'rsync' });
    await ppu.start();
    try {
      await fileWaitingInStaging(ppu);
      await ppu.killFurkad();
      ppu.opts.transport = 'agent';
      await ppu.startAgent('1MF');
      ppu.writeConfigs();
      await ppu.startFurkad();
      assert.match(await line(ppu, /taken off detector 1MF \(no longer in furkad.conf as it was\) wait in \S+\.stranded/), /restore its old section/);
      await eventually(async () => (await ppu.furkaProperty<Row[]>('Detectors')).some((r) => /taken off detector 1MF/.test(r[2])), 20_000, 'said in Detectors');
      assert.equal(listFiles(path.join(ppu.ppuRamdisk, '1mf/.furkad-staging/.stranded')).filter((f) => f.endsWith('a.cbf')).length, 1, 'kept');
    } finally {
      await ppu.stop();
    }
  });
});

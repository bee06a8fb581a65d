// File names furkad meets on a detector: odd but valid ones go through end to end; names it cannot hand over
// (not UTF-8, control characters) stay on the detector and are reported; staging keeps no rsync temp files (F1, F2, G12).
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { closeSync, constants } from 'node:fs';
import { Ppu } from '../fixtures/ppu.js';
import { DirFd } from '../../src/common/dir-fd.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';

type Row = [string, string, string, bigint, bigint, bigint];

/** A path of raw bytes below `root` (Node reaches names that are not UTF-8 only through Buffers). */
const raw = (root: string, rel: Buffer): Buffer => Buffer.concat([Buffer.from(`${root}/`), rel]);

/** writeImage's protocol for a name given as bytes: a temp name furkad excludes, then a rename. */
function placeRaw(root: string, rel: Buffer, data: Buffer): void {
  const full = raw(root, rel);
  const dir = full.subarray(0, full.lastIndexOf('/'));
  mkdirSync(dir, { recursive: true });
  const tmp = Buffer.concat([dir, Buffer.from(`/.raw-${Date.now()}.writing`)]);
  writeFileSync(tmp, data);
  renameSync(tmp, full);
}

/** Every regular file below `root` as raw bytes ('\n' and bytes that are not UTF-8 included), hex-free for asserts. */
function rawFiles(root: string, rel: Buffer = Buffer.alloc(0)): Buffer[] {
  const out: Buffer[] = [];
  const dir = rel.length ? raw(root, rel) : Buffer.from(root);
  let names: Buffer[];
  try { names = readdirSync(dir, { encoding: 'buffer' }); } catch { return out; }
  for (const n of names) {
    const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), n]) : n;
    // Gone meanwhile: furkad removes emptied directories of staging while this walks it (seen once in CI, in settle mode).
    const st = lstatSync(raw(root, r), { throwIfNoEntry: false });
    if (st?.isDirectory()) out.push(...rawFiles(root, r));
    else if (st?.isFile()) out.push(r);
  }
  return out;
}

describe('furkad and odd file names (F1, F2, G12)', function () {
  this.timeout(300_000);
  let ppu: Ppu;

  before(async () => {
    // 1MF takes a file at once (settle_ms = 0); 2MF with the default settle run (a listing run, then a run of
    // just the settled files given by name: --files-from).
    ppu = await new Ppu({ prefix: 'ppu-names', detectors: ['1MF', '2MF'], detectorConf: { '2MF': { settle_ms: 500 } } }).start();
  });
  after(async () => ppu?.stop());

  // Spaces, quotes, a backslash (also one that looks like rsync's own \#ooo escape), a leading '-', '#' and
  // '%', valid UTF-8 beyond ASCII (Ä, an emoji, a C1 control character U+0085, which grimseld takes).
  const odd = ['with space.img', `quote's "double".img`, 'back\\slash.img', 'looks-escaped\\#351.img', '-leading-dash.img',
    '--remove-source-files', '#hash %41.img', 'Ä-umlaut.img', 'emoji-😀.img', 'c1-\u0085.img', 'dir with space/ä/in.img'];
  const undeliverable = [Buffer.from('lat1_\xe9.img', 'latin1'), Buffer.from('new\nline.img'), Buffer.from('tab\there.img'),
    Buffer.from('d\xe9/inside.img', 'latin1'), Buffer.from('truncated-\xe2\x82.img', 'latin1')];

  for (const id of ['1MF', '2MF']) {
    it(`${id}: delivers odd but valid names end to end, leaves names it cannot hand over on the detector and reports each once`, async () => {
      const detector = ppu.detectorRamdisks[id]!;
      const usr = path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
      const internal = path.join(ppu.storageRoot, 'internal', id.toLowerCase(), '1000_1000');
      const copiedBefore = (await ppu.queryStatus(1)).find((r) => r[3] === 'internal')?.[5] ?? 0n;
      for (const rel of undeliverable) placeRaw(detector, Buffer.concat([Buffer.from('names/'), rel]), randomBytes(1000));
      const written: WrittenFile[] = odd.map((n) => writeImage(detector, `names/${n}`, 5000));
      await eventually(() => written.every((f) => existsSync(path.join(internal, f.rel))), 30_000, 'every odd but valid name copied');
      for (const f of written) {
        assert.equal(sha256File(readFileSync(path.join(usr, f.rel))), f.sha256, `${f.rel} on the PPU`);
        assert.equal(sha256File(readFileSync(path.join(internal, f.rel))), f.sha256, `${f.rel} on the internal storage`);
      }
      await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[3] === 'internal' && r[5] === copiedBefore + BigInt(odd.length) && r[6] === 0n),
        10_000, 'each counted copied, none failed');

      // Taken from the detector: exactly the valid names; the rest stays there, as it was, and is never pulled.
      const onDetector = (): string[] => rawFiles(detector).map((b) => b.toString('latin1')).sort();
      const expected = undeliverable.map((b) => `names/${b.toString('latin1')}`).sort();
      assert.deepEqual(onDetector(), expected, 'names furkad cannot hand over stay on the detector, nothing else');
      const staging = path.join(ppu.ppuRamdisk, id.toLowerCase(), '.furkad-staging');
      await new Promise((r) => setTimeout(r, 1500)); // several more runs: still nothing taken or left over
      assert.deepEqual(onDetector(), expected);
      assert.deepEqual(rawFiles(staging), [], 'nothing in staging');
      assert.deepEqual(listFiles(usr), written.map((f) => f.rel).sort(), 'nothing else on the PPU');

      // Reported: once per file in the log, and on the bus until they are gone.
      const log = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes(`"${id}"`) && l.includes('cannot hand over'));
      for (const shown of ['names/lat1_\\#351.img', 'names/new\\#012line.img', 'names/tab\\#011here.img', 'names/d\\#351', 'names/truncated-\\#342\\#202.img']) {
        assert.equal(log.filter((l) => l.includes(JSON.stringify(shown).slice(1, -1))).length, 1, `${shown} reported once: ${log.join('\n')}`);
      }
      const row = (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)!;
      assert.match(row[2], /^5 files? .*cannot hand over/, 'lastError says how many are left on the detector');

      // The operator renames them on the detector: they are taken like any file, and the report clears.
      for (const rel of undeliverable) {
        const top = rel.subarray(0, rel.includes('/') ? rel.indexOf('/') : rel.length);
        renameSync(raw(detector, Buffer.concat([Buffer.from('names/'), top])), path.join(detector, 'names', `renamed-${top.toString('hex')}`));
      }
      await eventually(() => rawFiles(detector).length === 0, 30_000, 'the renamed files taken');
      await eventually(async () => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)![2] === '', 10_000, 'lastError cleared');
      // Settled before the next detector's test reads the shift's copied count (counts are per shift, not per detector).
      await eventually(() => listFiles(internal).filter((f) => f.startsWith('names/renamed-')).length === undeliverable.length,
        30_000, 'the renamed files copied');
      await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[3] === 'internal' && r[4] === 0n), 10_000, 'nothing pending');
    });
  }

  it('removes the temp file of an rsync run killed with furkad (SIGKILL), keeps and places every complete file in staging', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const usr = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging');
    // rsync slowed down to 2 MB/s, so that a 6 MB file is in flight when furkad is killed.
    const slow = path.join(ppu.work, 'slow-rsync');
    writeFileSync(slow, '#!/bin/sh\nexec rsync --bwlimit=2000 "$@"\n');
    chmodSync(slow, 0o755);
    await ppu.killFurkad();
    ppu.opts.furkad = { ...ppu.opts.furkad, rsync_path: slow };
    ppu.writeConfigs();
    await ppu.startFurkad();
    const big = writeImage(detector, 'slow/big.img', 6_000_000);
    let temps: string[] = [];
    await eventually(() => (temps = listFiles(staging).filter((f) => /(^|\/)\.?big\.img\.[A-Za-z0-9]{6}$/.test(f))).length > 0, 20_000, 'an rsync temp file of big.img (in staging, or its temp directory)');
    await ppu.killFurkad();
    assert.ok(temps.every((t) => existsSync(path.join(staging, t))), 'the killed run left its temp file');
    // Left by earlier furkads: a complete file with a name like rsync's temp names, and one whose name is not UTF-8.
    mkdirSync(path.join(staging, '1MF', 'old'), { recursive: true });
    writeFileSync(path.join(staging, '1MF', 'old', '.hidden.abc123'), 'a complete file, hidden name');
    chmodSync(path.join(staging, '1MF', 'old', '.hidden.abc123'), 0o644);
    writeFileSync(raw(staging, Buffer.from('1MF/old/lat2_\xe9.img', 'latin1')), 'pulled by a furkad before 2.x');
    // One whose shown form (\#351 for each such byte) would pass the 255 bytes a name may have: cut, with its hash.
    const long = Buffer.concat([Buffer.from('long_'), Buffer.alloc(200, 0xe9), Buffer.from('.img')]);
    writeFileSync(raw(staging, Buffer.concat([Buffer.from('1MF/old/'), long])), 'a long name, not UTF-8');
    // And the temp file of a run killed under a furkad that had rsync receive into staging itself: root's, private.
    writeFileSync(path.join(staging, '1MF', 'old', '.part.img.Xy12Ab'), 'half a file', { mode: 0o600 });

    ppu.opts.furkad = { ...ppu.opts.furkad, rsync_path: 'rsync' };
    ppu.writeConfigs();
    await ppu.startFurkad();
    await eventually(() => existsSync(path.join(usr, big.rel)), 30_000, 'the big file delivered');
    assert.equal(sha256File(readFileSync(path.join(usr, big.rel))), big.sha256);
    await eventually(() => existsSync(path.join(usr, 'old', 'lat2_\\#351.img')), 10_000, 'the leftover not UTF-8 placed under an escaped name');
    assert.equal(readFileSync(path.join(usr, 'old', 'lat2_\\#351.img'), 'utf8'), 'pulled by a furkad before 2.x');
    assert.equal(readFileSync(path.join(usr, 'old', '.hidden.abc123'), 'utf8'), 'a complete file, hidden name');
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', 'old', 'lat2_\\#351.img')), 10_000, 'and copied');
    assert.deepEqual(rawFiles(staging), [], 'no temp file, nothing else left in staging');
    const placed = listFiles(usr).filter((f) => f.startsWith('old/') || f.includes('big.img')).sort();
    const longShown = placed.find((f) => f.startsWith('old/long_'));
    assert.ok(longShown && /^old\/long_[\\#0-9]+~[0-9a-f]{8}$/.test(longShown) && Buffer.byteLength(path.basename(longShown)) <= 255, String(longShown));
    assert.equal(readFileSync(path.join(usr, longShown), 'utf8'), 'a long name, not UTF-8');
    assert.deepEqual(placed.filter((f) => f !== longShown), ['old/.hidden.abc123', 'old/lat2_\\#351.img', 'slow/big.img'], 'no temp file placed');
  });
  it("leaves furka-agent's own names on the detector (a barrier mark, a file taken aside to be deleted), whatever else is pulled", async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const usr = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    mkdirSync(path.join(detector, 'agent'), { recursive: true });
    writeFileSync(path.join(detector, '.furka-agent-barrier-abc'), '');
    writeFileSync(path.join(detector, 'agent', '.furka-agent-acked-1-2-3-0123abcd~x.img'), 'aside');
    const f = writeImage(detector, 'agent/regular.img', 1000);
    await eventually(() => existsSync(path.join(usr, f.rel)), 20_000, 'the regular file pulled');
    assert.ok(existsSync(path.join(detector, '.furka-agent-barrier-abc')) && existsSync(path.join(detector, 'agent', '.furka-agent-acked-1-2-3-0123abcd~x.img')), 'kept on the detector');
    assert.deepEqual(listFiles(usr).filter((p) => p.includes('.furka-agent-')), [], 'never placed on the PPU');
  });

  for (const id of ['1MF', '2MF']) {
    it(`${id}: leaves a directory named like furkad's staging on the detector and says so, until it is renamed (tester h10)`, async () => {
      const detector = ppu.detectorRamdisks[id]!;
      const usr = path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
      const f = writeImage(detector, 'odd/sub/.furkad-staging/f.cbf', 1000);
      const shown = 'odd/sub/.furkad-staging/';
      await ppu.furkad!.proc.said(new RegExp(`"detector":"${id}","dir":"${shown.replace(/\./g, '\\.')}".*named \\.furkad-staging, which furkad keeps for its own use`), 20_000);
      await eventually(async () => /^1 file left on the detector/.test((await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)![2]), 10_000, 'said in Detectors');
      assert.ok(existsSync(path.join(detector, f.rel)), 'left there');
      renameSync(path.join(detector, 'odd/sub/.furkad-staging'), path.join(detector, 'odd/sub/renamed'));
      await eventually(() => existsSync(path.join(usr, 'odd/sub/renamed/f.cbf')) || existsSync(path.join(ppu.storageRoot, 'internal', id.toLowerCase(), '1000_1000', 'odd/sub/renamed/f.cbf')),
        30_000, 'taken once renamed');
      await eventually(async () => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)![2] === '', 10_000, 'lastError cleared');
      const said = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes(`"dir":"${shown}"`) && l.includes(`"detector":"${id}"`));
      assert.equal(said.length, 1, 'logged once while it was there');
    });

    it(`${id}: a file in a directory too deep for PATH_MAX is never pulled: left on the detector and reported; deep but short trees are taken; moved up, it is taken and the report clears (F1, F2, F10)`, async () => {
      const detector = ppu.detectorRamdisks[id]!;
      const usr = path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
      const staging = path.join(ppu.ppuRamdisk, id.toLowerCase(), '.furkad-staging');
      // Made aside and renamed in whole, fd-relative (the full path is longer than the kernel takes by name):
      // directories totalling 3830 bytes below the detector root and a 255-byte name, as a hostile tester did.
      const build = path.join(ppu.work, `deep-build-${id}`);
      mkdirSync(build, { recursive: true });
      const parts = ['deep', ...Array.from({ length: 18 }, () => 'P'.repeat(200))];
      parts.push('Q'.repeat(3830 - parts.join('/').length - 1));
      const name = `${'F'.repeat(251)}.img`;
      DirFd.with(DirFd.open(build), (b) => DirFd.with(b.walk(parts.join('/'), true), (d) => closeSync(d.openFile(name, constants.O_WRONLY | constants.O_CREAT, 0o644))));
      // Deep but short: 40 levels of short names, taken like any file (one run per step down it is hidden at).
      const shortDeep = `${Array.from({ length: 40 }, (_, i) => `d${i}`).join('/')}/short.img`;
      writeImage(build, `shallow/${shortDeep}`, 3000);
      renameSync(path.join(build, 'deep'), path.join(detector, 'deep'));
      renameSync(path.join(build, 'shallow'), path.join(detector, 'shallow'));
      const after = writeImage(detector, 'after-deep.img', 3000);
      try {
        await eventually(() => existsSync(path.join(usr, 'shallow', shortDeep)) && existsSync(path.join(usr, after.rel)), 30_000, 'the deep but short file and the next one delivered');
        const row = async (): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)!;
        await eventually(async () => /^1 file left on the detector: .*too deep for PATH_MAX.*e\.g\. 'deep\/PPP/.test((await row())[2]), 20_000, 'lastError names the directory left');
        const deepFile = (root: string): boolean => {
          const held = DirFd.openParent(root, `${parts.join('/')}/${name}`);
          try { return held?.dir.lstat(held.name)?.isFile() === true; } catch { return false; } finally { held?.dir.close(); }
        };
        assert.ok(deepFile(detector), 'the file too deep is still on the detector (never pulled, never removed)');
        assert.deepEqual(rawFiles(staging), [], 'nothing of it in staging');
        assert.ok(!['retrying', 'down'].includes((await row())[1]), 'the detector goes on, not stuck retrying');
        const said = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes(`"${id}"`) && l.includes('deeper than furkad takes'));
        assert.equal(said.length, 1, `the directory logged once: ${said.length}`);

        // The operator moves it up on the detector: it is taken, and lastError clears.
        renameSync(path.join(detector, 'deep'), path.join(detector, 'deep-old'));
        DirFd.with(DirFd.open(detector), (d) => DirFd.with(d.walk(`deep-old/${parts.slice(1, -1).join('/')}`), (p) => renameSync(p.at(parts[parts.length - 1]!), path.join(detector, 'moved-up'))));
        await eventually(() => existsSync(path.join(usr, 'moved-up', name)), 30_000, 'moved up on the detector, it is taken');
        await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
      } finally {
        // Deeper than Node's rmSync goes (the fixture's cleanup uses it).
        execFileSync('rm', ['-rf', path.join(detector, 'deep'), path.join(detector, 'deep-old'), build]);
      }
    });
  }
});

// furkad SIGKILLed at random moments while files stream in: every image still reaches the internal storage,
// complete and exactly once, without anybody's help (F2, F10, G12 from furkad's side).
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';

/** SIGKILLs furkad at random moments 100-500 ms apart and starts it again: ten times, and on while `busy()`. */
async function killFurkadWhile(ppu: Ppu, busy: () => boolean): Promise<void> {
  for (let kills = 0; kills < 10 || busy(); kills++) {
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    await ppu.killFurkad();
    await ppu.startFurkad();
  }
}

/**
 * Waits until every file of `written` is on the internal storage (shift 1000) and nothing is pending; asserts each
 * is whole and the detector ramdisk drained. Returns the shift's directory on the internal storage.
 */
async function allStoredWhole(ppu: Ppu, written: Array<{ rel: string; sha256: string }>): Promise<string> {
  const root = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000');
  await eventually(() => written.every((f) => listFiles(root).includes(f.rel)), 120_000, 'every file on the internal storage');
  for (const f of written) assert.equal(sha256File(readFileSync(path.join(root, f.rel))), f.sha256, `${f.rel} whole`);
  assert.deepEqual(listFiles(ppu.detectorRamdisks['1MF']!), [], 'the detector ramdisk is drained');
  await eventually(async () => (await ppu.queryStatus(-1)).every((r) => r[4] === 0n), 60_000, 'nothing pending');
  return root;
}

describe('furkad chaos: SIGKILL during a stream', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-fchaos' }).start();
  });
  after(async () => ppu?.stop());

  it('places complete files an interrupted run left in staging after a restart', async () => {
    // As if a run had transferred the file and furkad died before renaming it into place.
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF', 'left');
    mkdirSync(staging, { recursive: true });
    writeFileSync(path.join(staging, 'over.cbf'), 'transferred before the crash');
    await ppu.killFurkad();
    await ppu.startFurkad();
    const copy = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', 'left', 'over.cbf');
    await eventually(() => listFiles(path.join(ppu.storageRoot, 'internal')).includes('1mf/1000_1000/left/over.cbf'), 30_000, 'the leftover placed and copied');
    assert.equal(readFileSync(copy, 'utf8'), 'transferred before the crash');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')), [], 'staging is empty again');
  });

  it('hands over, at its next start, files it had placed but not yet handed over when killed', async () => {
    await ppu.killFurkad();
    // As if furkad had noted and placed a file and died before grimseld acknowledged it.
    const placed = path.join(ppu.ppuRamdisk, '1mf', '1000_1000', 'noted', 'placed.cbf');
    mkdirSync(path.dirname(placed), { recursive: true });
    writeFileSync(placed, 'placed, never handed over');
    appendFileSync(path.join(ppu.work, 'furkad-state', 'outbox.jsonl'), `${JSON.stringify({ t: 'd', id: 999, u: '1000', uid: 1000, gid: 1000,
      paths: [`${ppu.ppuRamdisk}/./1mf/1000_1000/noted/placed.cbf`, `${ppu.ppuRamdisk}/./1mf/1000_1000/noted/never-placed.cbf`] })}\n`);
    await ppu.startFurkad();
    const copy = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', 'noted', 'placed.cbf');
    await eventually(() => listFiles(path.join(ppu.storageRoot, 'internal')).includes('1mf/1000_1000/noted/placed.cbf'), 30_000, 'the noted file copied');
    assert.equal(readFileSync(copy, 'utf8'), 'placed, never handed over');
    // The copy gets its final name before grimseld counts it: wait for the count, not just the file.
    await eventually(async () => (await ppu.queryStatus(-1)).some((r) => r[0] === 1000n && r[5] === 1n), 10_000, 'counted in the shift it was noted in');
  });

  it('loses no image and copies none twice through 10 kills', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const copiedBefore = (await ppu.queryStatus(-1)).reduce((n, r) => n + Number(r[5]), 0);
    const written: WrittenFile[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 300; i++) {
        written.push(writeImage(detector, `k${i % 3}/img_${String(i).padStart(5, '0')}.cbf`, 10_000 + ((i * 7919) % 200_000)));
        await new Promise((r) => setTimeout(r, 15));
      }
      writing = false;
    })();
    await killFurkadWhile(ppu, () => writing);
    await writer;
    await allStoredWhole(ppu, written);
    const copied = (await ppu.queryStatus(-1)).reduce((n, r) => n + Number(r[5]), 0);
    assert.equal(copied - copiedBefore, written.length, 'each image counted once');
  });
});

describe('furkad chaos: SIGKILL while files settle (settle_ms, F2)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  before(async () => {
    // Writers that write a temp name in pieces and rename it, and files deleted before they settled: furkad's
    // defaults but a shorter settle_ms, so that a stream of them goes by in seconds.
    ppu = await new Ppu({ prefix: 'ppu-schaos', writerRenames: false, detectorConf: { '1MF': { settle_ms: 300 } } }).start();
  });
  after(async () => ppu?.stop());

  it('delivers every renamed file whole and once, and never a copy of a temp name or of a file deleted before it settled, through 10 kills', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const written: Array<{ rel: string; sha256: string }> = [];
    let writing = true;
    // Each piece 40 ms after the last, renamed 120 ms after it was begun: never unchanged for settle_ms under its temp name.
    const writeRenamed = async (i: number): Promise<void> => {
      const rel = `s${i % 3}/img_${String(i).padStart(5, '0')}.cbf`;
      const tmp = path.join(detector, path.dirname(rel), `.${path.basename(rel)}.tmp`);
      mkdirSync(path.dirname(tmp), { recursive: true });
      const pieces = Array.from({ length: 4 }, () => randomBytes(8_000 + ((i * 7919) % 40_000)));
      for (const [n, p] of pieces.entries()) {
        if (n > 0) await sleep(40);
        appendFileSync(tmp, p);
      }
      renameSync(tmp, path.join(detector, rel));
      written.push({ rel, sha256: sha256File(Buffer.concat(pieces)) });
    };
    // Written in place and deleted 100 ms later (an aborted exposure): never unchanged for settle_ms either.
    const writeAborted = async (i: number): Promise<void> => {
      const file = path.join(detector, `s${i % 3}`, `aborted_${String(i).padStart(5, '0')}.cbf`);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, randomBytes(30_000));
      await sleep(100);
      unlinkSync(file);
    };
    const writer = (async () => {
      for (let i = 0; i < 120; i++) {
        await Promise.all([writeRenamed(i), ...(i % 4 === 0 ? [writeAborted(i)] : [])]);
        await sleep(20);
      }
      writing = false;
    })();
    await killFurkadWhile(ppu, () => writing);
    await writer;
    const root = await allStoredWhole(ppu, written);
    const expected = written.map((f) => f.rel).sort();
    assert.deepEqual(listFiles(root), expected, 'nothing else stored: no temp name, no aborted file, no NAME.~1~');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '1000_1000')).filter((f) => !expected.includes(f)), [], 'nor placed');
  });
});

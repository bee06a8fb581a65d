// A hostile shift user (nobody, 65534) racing the root daemons, as in the security issue's rows 1-3: a directory of
// the user's swapped for a link to a root-owned one, or a delivered file for a link to a root-only file, between
// a daemon's check and its use (F4, G3, G5, G6, S2). The swaps run as the user (flip.py under setpriv),
// each attack a few seconds; every test counts its swaps, so that it cannot pass without having attacked.
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { asNobody, flipAsNobody, NOBODY, watchAndFlipAsNobody, type FlipCount, type Flipper } from '../fixtures/hostile.js';

const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A PPU whose shift is nobody's, its ramdisk a tmpfs of its own (victims on it are on the file system of the deliveries). */
async function hostilePpu(prefix: string, ramdiskBytes = 64 * MB, grimseld: Record<string, string | number> = {},
  detector: Record<string, string | number> = {}, furkad: (work: string) => Record<string, string | number> = () => ({})): Promise<Ppu> {
  const ppu = new Ppu({ prefix, uid: NOBODY, gid: NOBODY, ramdiskBytes, grimseld, detectorConf: { '1MF': detector } });
  ppu.opts.furkad = { ...ppu.opts.furkad, ...furkad(ppu.work) };
  // mkdtemp makes it 0700: the user must reach the ramdisk and the storage, as on a PPU.
  chmodSync(ppu.work, 0o755);
  await ppu.start();
  await eventually(() => existsSync(userDir(ppu)), 10_000, "the shift's usrdir");
  return ppu;
}

/** U: the shift's directory on the PPU ramdisk, the user's. */
function userDir(ppu: Ppu): string {
  return path.join(ppu.ppuRamdisk, '1mf', `${NOBODY}_${NOBODY}`);
}

function storageDir(ppu: Ppu): string {
  return path.join(ppu.storageRoot, 'internal', '1mf', `${NOBODY}_${NOBODY}`);
}

/** A root-owned 0755 directory outside the user's trees, with root-owned files of `names` (content: their name). */
function victimDir(dir: string, names: string[] = []): string {
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  for (const n of names) writeFileSync(path.join(dir, n), `the victim's own ${n}\n`, { mode: 0o644 });
  return dir;
}

/** The victim files that are no longer the root-owned regular files they were (deleted, replaced, re-owned). */
function victimsHit(dir: string, names: string[]): string[] {
  return names.filter((n) => {
    const st = lstatSync(path.join(dir, n), { throwIfNoEntry: false });
    return !st || !st.isFile() || st.uid !== 0 || readFileSync(path.join(dir, n), 'utf8') !== `the victim's own ${n}\n`;
  });
}

/** `n` files of `size` bytes written to the detector at `hz`, as a detector would during the attack. */
async function writeStream(ppu: Ppu, name: (i: number) => string, n: number, hz: number, size: number): Promise<WrittenFile[]> {
  const out: WrittenFile[] = [];
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    out.push(writeImage(ppu.detectorRamdisks['1MF']!, name(i), size));
    const due = t0 + ((i + 1) * 1000) / hz;
    if (due > Date.now()) await sleep(due - Date.now());
  }
  return out;
}

/** Where every file below `roots` is, by the sha256 of its bytes (regular files only: links are not followed). */
function byContent(roots: string[]): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const root of roots) {
    for (const rel of listFiles(root)) {
      const full = path.join(root, rel);
      const sha = sha256File(readFileSync(full));
      found.set(sha, [...(found.get(sha) ?? []), full]);
    }
  }
  return found;
}

/** Waits until grimseld has settled every file of nobody's shifts (copied or failed, none pending). */
async function settled(ppu: Ppu): Promise<void> {
  await eventually(async () => (await ppu.queryStatus(-1)).filter((r) => r[1] === NOBODY).every((r) => r[4] === 0n), 30_000,
    "grimseld to settle the user's files");
}

/** The first few of a list, for a message. */
function few(items: string[]): string {
  return items.slice(0, 5).join(', ') + (items.length > 5 ? `, … (${items.length})` : '');
}

/** Stops a swap loop and requires that it swapped at all (else the test proves nothing). */
async function stopFlip(flip: Flipper, what: string): Promise<FlipCount> {
  const count = await flip.stop();
  console.log(`      ${what}: ${JSON.stringify(count)}`);
  assert.ok(count.exchanges > 0, `the user's swap loop exchanged nothing (${count.lastError}): the test proves nothing`);
  return count;
}

describe('a hostile shift user racing the root daemons: check-then-use on swapped directories and files (F4, G3, G5, G6, S2)', function () {
  this.timeout(180_000);
  let ppu: Ppu | undefined;
  let flip: Flipper | undefined;

  afterEach(async () => {
    await flip?.stop().catch(() => undefined);
    flip = undefined;
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
    ppu = undefined;
  });

  it('row 1: furkad never places a delivered file through a swapped directory, and loses none (F4, S2)', async () => {
    // The user flips U/run8 (a link to a root-owned directory on the same ramdisk) with U/run8x (a real
    // directory) while the detector writes to run8/: furkad checks run8 and then links the file in by path, and
    // whenever the swap falls between the two, root puts the user's file into the victim directory. A file
    // refused because run8 was a link at the check is offered again by the next run: another draw.
    ppu = await hostilePpu('ppu-race1');
    const u = userDir(ppu);
    const victim = victimDir(path.join(ppu.ppuRamdisk, 'victim'));
    assert.ok(asNobody('mkdir', path.join(u, 'run8x')) && asNobody('ln', '-s', victim, path.join(u, 'run8')), 'the user prepares the swap');
    flip = await flipAsNobody(path.join(u, 'run8'), path.join(u, 'run8x'), 60);
    const n = 150;
    const files = await writeStream(ppu, (i) => `run8/f_${String(i).padStart(3, '0')}.cbf`, n, 30, 2000);
    await sleep(1500); // the runs that offer again what the swap made furkad refuse
    await stopFlip(flip, 'row 1 swaps');
    // The loop ends as it began: run8 the link, run8x the real directory.
    assert.ok(lstatSync(path.join(u, 'run8')).isSymbolicLink());

    const inVictim = readdirSync(victim);
    assert.equal(inVictim.length, 0, `${inVictim.length} of ${n} delivered files placed by root in the root-owned victim directory: ${few(inVictim)}`);

    // The user gives up: the link goes and the real directory takes its name. What furkad kept flows again.
    assert.ok(asNobody('rm', path.join(u, 'run8')) && asNobody('mv', path.join(u, 'run8x'), path.join(u, 'run8')));
    const after = await writeStream(ppu, (i) => `run8/after_${i}.cbf`, 3, 10, 2000);
    await eventually(() => after.every((f) => existsSync(path.join(u, f.rel))), 20_000, 'files written after the attack delivered');
    for (const f of after) assert.equal(sha256File(readFileSync(path.join(u, f.rel))), f.sha256, f.rel);

    // Nothing lost, nothing doubled: each file is in the user's directory once, or kept by furkad below the
    // target (staging, set aside) or still on the detector. One refused during the attack takes a run or two.
    const target = path.join(ppu.ppuRamdisk, '1mf');
    const where = () => byContent([target, ppu!.detectorRamdisks['1MF']!, path.join(ppu!.work, 'furkad-state')]);
    const delivered = (w: Map<string, string[]>, f: WrittenFile) => (w.get(f.sha256) ?? []).filter((p) => p.startsWith(u + '/'));
    await eventually(() => {
      const w = where();
      return files.every((f) => delivered(w, f).length > 0);
    }, 10_000, "every file of the attack in the user's directory").catch(() => undefined); // kept and reported is also right: below
    const w = where();
    const lost = files.filter((f) => (w.get(f.sha256) ?? []).length === 0);
    assert.equal(lost.length, 0, `${lost.length} of ${n} files neither delivered, nor kept by furkad, nor on the detector: ${few(lost.map((f) => f.rel))}`);
    const twice = files.filter((f) => delivered(w, f).length > 1);
    assert.equal(twice.length, 0, `delivered twice: ${few(twice.map((f) => JSON.stringify(delivered(w, f))))}`);
    assert.deepEqual(readdirSync(victim), [], 'the victim directory stays empty');
  });

  it('row 1 with remove_source = no: rsync writes into the shift directory as the shift, never as root (F3, F4, S2)', async () => {
    // Without staging rsync itself writes into U and resolves U/run8 as it goes: run as the shift's user, a
    // link the user swaps in reaches only what the user may write. The victim is root's 0755: nothing lands.
    // rsync_path: a wrapper that notes whose process each run is, then runs rsync.
    const idsLog = (work: string): string => path.join(work, 'ids', 'runs');
    ppu = await hostilePpu('ppu-race1n', 64 * MB, {}, { remove_source: 'no', settle_ms: 0 }, (work) => {
      mkdirSync(path.join(work, 'ids'), { mode: 0o777 });
      chmodSync(path.join(work, 'ids'), 0o777);
      writeFileSync(path.join(work, 'ids', 'rsync'), `#!/bin/sh\necho "$(id -u):$(id -g):$(id -G)" >> '${idsLog(work)}'\nexec rsync "$@"\n`, { mode: 0o755 });
      return { rsync_path: path.join(work, 'ids', 'rsync') };
    });
    const u = userDir(ppu);
    const victim = victimDir(path.join(ppu.ppuRamdisk, 'victim'));
    assert.ok(asNobody('mkdir', path.join(u, 'run8x')) && asNobody('ln', '-s', victim, path.join(u, 'run8')), 'the user prepares the swap');
    flip = await flipAsNobody(path.join(u, 'run8'), path.join(u, 'run8x'), 60);
    const files = await writeStream(ppu, (i) => `run8/f_${String(i).padStart(3, '0')}.cbf`, 60, 30, 2000);
    await sleep(1500);
    await stopFlip(flip, 'row 1 (remove_source = no) swaps');
    const inVictim = readdirSync(victim);
    assert.equal(inVictim.length, 0, `${inVictim.length} files written by root into the root-owned victim directory: ${few(inVictim)}`);
    // The sources stay on the detector (remove_source = no): the user's directory gets them once it is real.
    // (rsync, as the user, may have replaced the link by a directory of its own meanwhile: whatever is there goes.)
    assert.ok(asNobody('rm', '-rf', path.join(u, 'run8'), path.join(u, 'run8x')), 'the user clears up');
    await eventually(() => files.every((f) => existsSync(path.join(u, f.rel))), 30_000, "every file in the user's directory");
    const runs = readFileSync(idsLog(ppu.work), 'utf8').trim().split('\n');
    assert.deepEqual([...new Set(runs)], [`${NOBODY}:${NOBODY}:${NOBODY}`], 'every rsync run as the shift, without root\'s groups');
    for (const f of files) {
      const st = lstatSync(path.join(u, f.rel));
      assert.deepEqual([st.uid, st.gid], [NOBODY, NOBODY], `${f.rel} owned by the shift (F3)`);
      assert.equal(sha256File(readFileSync(path.join(u, f.rel))), f.sha256, f.rel);
    }
  });

  it('row 2: grimseld never copies a root-only file that a user swapped in for a delivered one (G3, S2)', async () => {
    // Next to each new U/run10/e_N.cbf the user keeps a link to a root-only 0600 file and flips the two for 15 ms,
    // 1 ms after the file appears: a copy that stats the file and then opens its name reads the secret, and the
    // user owns a copy of it on the storage, counted as copied.
    ppu = await hostilePpu('ppu-race2');
    const u = userDir(ppu);
    const secret = path.join(ppu.work, 'secret');
    // Larger than the images: a copy that reads the secret is never short, so nothing tells it from the image.
    writeFileSync(secret, 'ROOT ONLY SECRET. '.repeat(4000), { mode: 0o600 });
    chmodSync(secret, 0o600);
    assert.ok(asNobody('mkdir', path.join(u, 'run10')));
    flip = await watchAndFlipAsNobody(path.join(u, 'run10'), '.cbf', secret, 15, 1, 60);
    const n = 300;
    const files = await writeStream(ppu, (i) => `run10/e_${String(i).padStart(3, '0')}.cbf`, n, 50, 4096);
    await sleep(1000);
    const count = await stopFlip(flip, 'row 2 swaps');
    assert.ok(count.files > 0, 'the user attacked no delivered file');
    await settled(ppu);

    const copies = listFiles(ppu.storageRoot).map((rel) => path.join(ppu!.storageRoot, rel));
    const secrets = copies.filter((c) => readFileSync(c, 'latin1').includes('ROOT ONLY SECRET'));
    assert.equal(secrets.length, 0, `${secrets.length} of ${n} storage copies hold the root-only file's bytes: ${few(secrets)}`);
    // Every copy made is the delivered file, and no file is lost: the original is still the user's on the
    // ramdisk (the loop puts the names back), a copy that failed under the swap included.
    const s = storageDir(ppu);
    for (const f of files) {
      const copy = path.join(s, f.rel);
      if (existsSync(copy)) assert.equal(sha256File(readFileSync(copy)), f.sha256, `${f.rel}: the storage copy is the delivered file`);
      assert.equal(sha256File(readFileSync(path.join(u, f.rel))), f.sha256, `${f.rel}: the ramdisk original intact`);
    }

    const after = await writeStream(ppu, (i) => `run10/after_${i}.cbf`, 3, 10, 4096);
    await eventually(() => after.every((f) => existsSync(path.join(s, f.rel))), 20_000, 'files written after the attack copied');
    for (const f of after) assert.equal(sha256File(readFileSync(path.join(s, f.rel))), f.sha256, f.rel);
  });

  it('row 3: at a shift change grimseld never deletes through a swapped directory (G5, S2)', async () => {
    // 150 delivered and copied files in U/run11, root-owned files of the same names in a victim directory; the
    // user flips U/run11 with a link to it while shift changes clean the ramdisk: a check of the file followed
    // by an unlink of its path deletes root's file instead.
    ppu = await hostilePpu('ppu-race3');
    const u = userDir(ppu);
    const n = 150;
    const files = await writeStream(ppu, (i) => `run11/g_${String(i).padStart(3, '0')}.cbf`, n, 500, 2000);
    await settled(ppu);
    await eventually(async () => (await ppu!.queryStatus(-1)).some((r) => r[1] === NOBODY && r[5] === BigInt(n)), 10_000, 'all copied');
    const names = files.map((f) => path.basename(f.rel));
    const victim = victimDir(path.join(ppu.work, 'victim'), names);
    assert.ok(asNobody('ln', '-s', victim, path.join(u, 'run11.lnk')));
    const msgs = await collectMessages(ppu);
    flip = await flipAsNobody(path.join(u, 'run11'), path.join(u, 'run11.lnk'), 60);
    // Each shift change cleans what the last one could not: the user has as many tries as there are changes.
    for (const uid of [500, 510, 520]) {
      await ppu.startShift(uid, uid + 1);
      await sleep(1500);
    }
    await stopFlip(flip, 'row 3 swaps');
    msgs.stop();
    const errors = msgs.messages.filter((m) => m[0] === 'DEL_ERROR').length;
    const gone = files.filter((f) => !existsSync(path.join(u, f.rel))).length;
    console.log(`      row 3: ${gone} of ${n} originals deleted, ${errors} DEL_ERROR`);

    const hit = victimsHit(victim, names);
    assert.equal(hit.length, 0, `${hit.length} of ${n} root-owned victim files deleted or changed by the shift change: ${few(hit)}`);
    // Nothing lost: every internal copy is the delivered file (an original is deleted only once it has one).
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(storageDir(ppu), f.rel))), f.sha256, `${f.rel}: internal copy`);
    assert.ok(asNobody('rm', path.join(u, 'run11.lnk')));
    const after = await writeStream(ppu, (i) => `run12/after_${i}.cbf`, 2, 10, 2000);
    const s520 = path.join(ppu.storageRoot, 'internal/1mf/520_521');
    await eventually(() => after.every((f) => existsSync(path.join(s520, f.rel))), 20_000, 'the new shift served');
  });

  it("row 3, G6: the ramdisk overflow guard never replaces a file by a link through a swapped directory (G6, S2)", async () => {
    // The same flip while the ramdisk is above fillstate_limit: the guard checks an original, then makes its link
    // beside it and renames it over the original's path, which by then may lead into the victim directory.
    ppu = await hostilePpu('ppu-race3g6', 16 * MB, { fillstate_limit: 50, create_links: 'yes' });
    const u = userDir(ppu);
    const n = 150;
    const files = await writeStream(ppu, (i) => `run11/g_${String(i).padStart(3, '0')}.cbf`, n, 500, 12_000);
    await settled(ppu);
    await eventually(async () => (await ppu!.queryStatus(-1)).some((r) => r[1] === NOBODY && r[5] === BigInt(n)), 10_000, 'all copied');
    const names = files.map((f) => path.basename(f.rel));
    // On the ramdisk: a rename of the guard's link from either directory into the other can land.
    const victim = victimDir(path.join(ppu.ppuRamdisk, 'victim'), names);
    assert.ok(asNobody('ln', '-s', victim, path.join(u, 'run11.lnk')));
    flip = await flipAsNobody(path.join(u, 'run11'), path.join(u, 'run11.lnk'), 60);
    // Root fills the ramdisk past the limit with a file of its own: the guard goes through every copied original.
    const balloon = path.join(ppu.ppuRamdisk, 'balloon');
    writeFileSync(balloon, Buffer.alloc(9 * MB, 1));
    await sleep(4000);
    await stopFlip(flip, 'row 3 G6 swaps');
    rmSync(balloon);
    const linked = files.filter((f) => lstatSync(path.join(u, f.rel), { throwIfNoEntry: false })?.isSymbolicLink()).length;
    console.log(`      row 3 G6: ${linked} of ${n} originals replaced by links`);

    const hit = victimsHit(victim, names);
    assert.equal(hit.length, 0, `${hit.length} of ${n} root-owned victim files replaced by the overflow guard: ${few(hit)}`);
    assert.deepEqual(readdirSync(victim).sort(), [...names].sort(), 'nothing made in the victim directory');
    // Nothing lost: each original is the delivered file or a link to its intact internal copy.
    for (const f of files) {
      const copy = path.join(storageDir(ppu), f.rel);
      assert.equal(sha256File(readFileSync(copy)), f.sha256, `${f.rel}: internal copy`);
      const p = path.join(u, f.rel);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) assert.equal(readlinkSync(p), copy, `${f.rel}: a link to its copy`);
      else assert.equal(sha256File(readFileSync(p)), f.sha256, `${f.rel}: the original intact`);
    }
    assert.ok(asNobody('rm', path.join(u, 'run11.lnk')));
    const after = await writeStream(ppu, (i) => `run13/after_${i}.cbf`, 2, 10, 2000);
    await eventually(() => after.every((f) => existsSync(path.join(storageDir(ppu!), f.rel))), 20_000, 'files written after the attack copied');
  });
});

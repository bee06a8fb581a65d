// Storages as an administrator configures them (G1, G3, G4, G13): several at once, ownership kept or
// not, no re-copy, a planted symbolic link, an unmounted and a full storage.
import { strict as assert } from 'node:assert';
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, readdirSync, utimesSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';
import { callMethod } from '../../src/dbus/bus.js';
import pino from 'pino';
import { loadTempKey, tempName } from '../../src/grimseld/temp-names.js';

const row = async (ppu: Ppu, uid: number, storage: string) =>
  (await ppu.queryStatus(-1)).find((r) => r[1] === uid && r[3] === storage);

describe('grimseld storages (G1, G3, G4)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-storages', grimseld: { preserve_uid: 'no', preserve_gid: 'yes' } });
    const t = (s: string) => path.join(ppu.storageRoot, s);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: t('internal'), n_copy_processes: 3 },
      'storage.external': { type: 'EXTERNAL', target: t('external'), n_copy_processes: 2 },
      // Its own keys over the top-level ones (as for a disk that keeps other owners than the rest).
      'storage.backup': { type: 'OPTIONAL', target: t('backup'), n_copy_processes: 1, preserve_uid: 'yes', preserve_gid: 'no' },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('copies every file to all three storages; preserve_uid = no leaves the owner to the OS, gid kept; a storage\'s own preserve_uid/gid win for it', async () => {
    await ppu.startShift(800, 801, []);
    const files = Array.from({ length: 12 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `d${i % 2}/f${i}.cbf`, 5000 + i * 1000));
    await eventually(async () => {
      const rows = await ppu.queryStatus(1);
      return rows.length === 3 && rows.every((r) => r[5] === 12n);
    }, 30_000, 'all three storages copied');
    for (const s of ['internal', 'external', 'backup']) {
      for (const f of files) {
        const copy = path.join(ppu.storageRoot, s, '1mf/800_801', f.rel);
        assert.equal(sha256File(readFileSync(copy)), f.sha256, `${s}/${f.rel}`);
        const st = lstatSync(copy);
        if (s === 'backup') {
          assert.deepEqual([st.uid, st.gid], [800, 0], 'its own preserve_uid = yes, preserve_gid = no');
        } else {
          assert.equal(st.uid, 0, 'preserve_uid = no: owned by the daemon (root)');
          assert.equal(st.gid, 801, 'preserve_gid = yes: group kept');
        }
        assert.equal(Math.floor(st.mtimeMs), Math.floor(f.mtimeMs));
      }
    }
  });

  it('does not copy a file again that is delivered again with the same size and mtime (G3)', async () => {
    const f = writeImage(ppu.detectorRamdisks['1MF']!, 'again/same.cbf', 4000, new Date('2026-01-01T00:00:00Z'));
    const copy = path.join(ppu.storageRoot, 'internal', '1mf/800_801/again/same.cbf');
    await eventually(() => existsSync(copy), 20_000, 'first copy');
    const first = lstatSync(copy);
    // The detector writes the same image again (same bytes, size and mtime): a new delivery.
    const again = path.join(ppu.detectorRamdisks['1MF']!, 'again/same.cbf');
    writeFileSync(again, readFileSync(copy));
    const when = new Date('2026-01-01T00:00:00Z');
    utimesSync(again, when, when);
    await eventually(() => !existsSync(again), 20_000, 'second delivery pulled');
    await eventually(async () => (await row(ppu, 800, 'internal'))?.[4] === 0n, 20_000, 'nothing pending');
    assert.equal(lstatSync(copy).ino, first.ino, 'the copy was not rewritten');
    assert.equal(sha256File(readFileSync(copy)), f.sha256);
  });

  it('never writes through a symbolic link a user planted in their storage directory (G3)', async () => {
    const outside = path.join(ppu.work, 'outside');
    mkdirSync(outside, { recursive: true });
    const userDir = path.join(ppu.storageRoot, 'internal', '1mf/800_801');
    symlinkSync(outside, path.join(userDir, 'evil'));
    const msgs = await collectMessages(ppu);
    writeImage(ppu.detectorRamdisks['1MF']!, 'evil/payload.cbf', 3000);
    await eventually(() => msgs.messages.some((m) => m[0] === 'COPY_ERROR' && m[1].includes('evil/payload.cbf')), 20_000, 'COPY_ERROR for the planted link');
    msgs.stop();
    assert.deepEqual(readdirSync(outside), [], 'nothing written outside the storage');
    assert.ok(lstatSync(path.join(userDir, 'evil')).isSymbolicLink(), 'the link is left as it was');
    // The other storages (no link there) get their copy.
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'external', '1mf/800_801/evil/payload.cbf')), 20_000, 'the external copy');
  });
});

describe('grimseld with an unmounted and a full storage (G13)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let mnt: string;
  let small: string;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-mounts' });
    mnt = path.join(ppu.work, 'mnt', 'ext');
    small = path.join(ppu.work, 'mnt', 'small');
    mkdirSync(mnt, { recursive: true });
    mountTmpfs(small, 1024 * 1024);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.usb': { type: 'OPTIONAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 2 },
      'storage.small': { type: 'OPTIONAL', target: path.join(small, 'data'), mountpoint: small, n_copy_processes: 1 },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('writes nothing to an unmounted storage, keeps its files pending, says so, and resumes once mounted', async () => {
    const msgs = await collectMessages(ppu);
    await ppu.startShift(900, 901, []);
    const files = Array.from({ length: 5 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `u/f${i}.cbf`, 10_000));
    await eventually(async () => (await row(ppu, 900, 'internal'))?.[5] === 5n, 20_000, 'internal copies');
    await eventually(() => msgs.messages.some((m) => m[0] === 'COPY_ERROR' && m[1].startsWith(`${mnt}:`) && /not mounted/.test(m[2])), 20_000, 'the not-mounted message');
    assert.equal((await row(ppu, 900, 'usb'))?.[4], 5n, 'pending while unmounted');
    assert.equal(existsSync(path.join(mnt, 'data')), false, 'nothing written below the bare mount point (the root disk)');
    mountTmpfs(mnt, 16 * 1024 * 1024);
    await eventually(async () => (await row(ppu, 900, 'usb'))?.[5] === 5n, 30_000, 'copies after mounting');
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(mnt, 'data/1mf/900_901', f.rel))), f.sha256);
    msgs.stop();
  });

  it('sees a storage unmounted between two checks of the mount table at once: nothing goes to the bare mount point (G13)', async () => {
    // A copy to the storage just now: its mount point was found mounted less than a second ago.
    const copiedBefore = (await row(ppu, 900, 'usb'))?.[5] ?? 0n;
    writeImage(ppu.detectorRamdisks['1MF']!, 'gone/warm.cbf', 10_000);
    await eventually(async () => (await row(ppu, 900, 'usb'))?.[5] === copiedBefore + 1n && (await row(ppu, 900, 'internal'))?.[4] === 0n,
      20_000, 'a copy to the storage, and nothing pending on internal');
    const before = await row(ppu, 900, 'usb');
    const internalBefore = (await row(ppu, 900, 'internal'))?.[5] ?? 0n;
    unmount(mnt);
    const files = Array.from({ length: 5 }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `gone/f${i}.cbf`, 10_000));
    await eventually(async () => (await row(ppu, 900, 'internal'))?.[5] === internalBefore + 5n, 20_000, 'internal copies');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(existsSync(path.join(mnt, 'data')), false, 'nothing written below the bare mount point (the root disk)');
    assert.equal((await row(ppu, 900, 'usb'))?.[4], (before?.[4] ?? 0n) + 5n, 'pending while unmounted');
    mountTmpfs(mnt, 16 * 1024 * 1024);
    await eventually(async () => (await row(ppu, 900, 'usb'))?.[4] === 0n, 30_000, 'copies after mounting again');
    for (const f of files) assert.equal(sha256File(readFileSync(path.join(mnt, 'data/1mf/900_901', f.rel))), f.sha256);
  });

  it('on a full storage: COPY_ERROR, the ramdisk original stays, the copy is retried and completes once there is room', async () => {
    const msgs = await collectMessages(ppu);
    const big = writeImage(ppu.detectorRamdisks['1MF']!, 'full/big.cbf', 1536 * 1024);
    await eventually(() => msgs.messages.some((m) => m[0] === 'COPY_ERROR' && m[1].includes('full/big.cbf') && /ENOSPC|no space/i.test(m[2])),
      30_000, 'COPY_ERROR for the full storage');
    const original = path.join(ppu.ppuRamdisk, '1mf/900_901/full/big.cbf');
    assert.ok(lstatSync(original).isFile(), 'the original stays on the ramdisk');
    const r = await row(ppu, 900, 'small');
    assert.ok((r?.[6] ?? 0n) >= 1n, 'counted as failed while it cannot be written');
    assert.deepEqual(listFiles(path.join(small, 'data')).filter((f) => f.includes('big.cbf')), [], 'no partial file under the final name');
    // The administrator makes room: a larger filesystem in the same place.
    unmount(small);
    mountTmpfs(small, 8 * 1024 * 1024);
    await eventually(() => existsSync(path.join(small, 'data/1mf/900_901/full/big.cbf')), 90_000, 'the retried copy');
    assert.equal(sha256File(readFileSync(path.join(small, 'data/1mf/900_901/full/big.cbf'))), big.sha256);
    await eventually(async () => (await row(ppu, 900, 'small'))?.[6] === 0n, 20_000, 'failed back to 0 once copied');
    msgs.stop();
  });
});

describe('adding files: AddFile and the FIFO (G8)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-add' }).start();
  });
  after(async () => ppu?.stop());

  it('copies a path written to the FIFO, replicating the part after ./', async () => {
    const dir = path.join(ppu.work, 'op', 'a', 'b');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'x.dat'), 'fifo data');
    const fifo = path.join(ppu.work, 'run', 'files');
    assert.ok(lstatSync(fifo).isFIFO(), 'grimseld created its FIFO');
    writeFileSync(fifo, `${ppu.work}/op/./a/b/x.dat\n`);
    const copy = path.join(ppu.storageRoot, 'internal', 'a/b/x.dat');
    await eventually(() => existsSync(copy), 20_000, 'the FIFO file copied');
    assert.equal(readFileSync(copy, 'utf8'), 'fifo data');
  });

  it('refuses ten kinds of bad input by name, keeps running, and copies the next good file', async () => {
    const grimsel = await ppu.grimsel();
    const base = path.join(ppu.work, 'bad');
    mkdirSync(base, { recursive: true });
    writeFileSync(path.join(base, 'real.dat'), 'x');
    symlinkSync(path.join(base, 'real.dat'), path.join(base, 'link.dat'));
    execFileSync('mkfifo', [path.join(base, 'pipe')]);
    const cases: Array<[string, RegExp]> = [
      ['relative/path.dat', /not absolute/],
      ['', /empty path/],
      [`${base}/missing.dat`, /does not exist/],
      [base, /not a regular file/],
      ['/dev/null', /not a regular file/],
      [`${base}/pipe`, /not a regular file/],
      [`${base}/link.dat`, /symbolic link/],
      [`${base}/real\u0007.dat`, /control characters/],
      [`${base}/./../../etc/passwd`, /must stay below/],
      [`${base}/./`, /marker is at its end/],
    ];
    for (const [p, why] of cases) {
      await assert.rejects(() => callMethod(grimsel, 'AddFile', p), (e: { type?: string; text?: string }) =>
        e.type === 'org.ppu.Error.InvalidArgs' && why.test(e.text ?? ''), `AddFile(${JSON.stringify(p)}) refused with ${why}`);
    }
    // The same lines on the FIFO are logged and dropped; the good one after them is copied.
    const fifo = path.join(ppu.work, 'run', 'files');
    writeFileSync(fifo, cases.map(([p]) => p.replace(/\n/g, '')).join('\n') + `\n${base}/./real.dat\n`);
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'internal', 'real.dat')), 20_000, 'the good file after the bad ones');
    assert.ok(!existsSync(path.join(ppu.storageRoot, 'internal', 'etc')), 'nothing escaped');
    assert.ok((await ppu.queryStatus(1)).length > 0, 'still answering');
    await ppu.grimseld!.proc.said(/file refused: path 'relative\/path.dat' is not absolute/);
  });
});

describe('stale copy temp files on the storages (G3, G12)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  after(async () => ppu?.stop());

  it('removes temp files grimseld made in a storage root unchanged for temp_max_age_s, at start and later, and nothing else', async () => {
    ppu = new Ppu({ prefix: 'ppu-temps', grimseld: { temp_max_age_s: 10 } });
    const t = (s: string) => path.join(ppu.storageRoot, s);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: t('internal'), n_copy_processes: 2 },
      'storage.external': { type: 'EXTERNAL', target: t('external'), n_copy_processes: 1 },
    };
    const root = t('internal');
    mkdirSync(root, { recursive: true });
    // The key a killed grimseld made its temp names with, kept in state_dir for the next one.
    const state = path.join(ppu.work, 'state');
    mkdirSync(state, { recursive: true });
    const key = loadTempKey(state, pino({ level: 'silent' }));
    const old = path.join(root, tempName(key, 'img_0001.cbf'));
    writeFileSync(old, 'half a copy from a killed grimseld');
    // Named like temp files but not grimseld's: a final name, another suffix, the form of a release before the key,
    // the present form with a MAC not made with the key, a link (never followed).
    const keep = ['img_0002.cbf', '.img_0003.cbf.grimsel-nothex!', '.notes.txt', '.img_0006.cbf.grimsel-0123abcd',
      `.img_0007.cbf.grimsel-${'0123abcd'.repeat(3)}`].map((n) => path.join(root, n));
    for (const k of keep) writeFileSync(k, 'keep');
    const link = path.join(root, tempName(key, 'img_0004.cbf'));
    symlinkSync(keep[0]!, link);
    await new Promise((r) => setTimeout(r, 11_000)); // older than temp_max_age_s by its ctime
    const fresh = path.join(root, tempName(key, 'img_0005.cbf'));
    writeFileSync(fresh, 'a copy in progress');
    await ppu.start();
    await eventually(() => !existsSync(old), 10_000, 'the stale temp file removed at start');
    assert.ok(existsSync(fresh), 'a temp file changed within temp_max_age_s stays (a copy may be writing it)');
    await ppu.grimseld!.proc.said(/removed 1 stale grimseld temp file\(s\) left by copies that never finished/);
    await ppu.grimseld!.proc.said(/left 1 file\(s\) named like copy temp files of a grimseld release before keyed temp names/);

    // G12: a user's files named like temp files, delivered (added without './': to the storages' roots) and copied,
    // stay on every storage however old they get.
    const users = ['.b.cbf.grimsel-0123abcd', `.c.cbf.grimsel-${'89abcdef'.repeat(3)}`];
    mkdirSync(path.join(ppu.work, 'op'), { recursive: true });
    for (const n of users) writeFileSync(path.join(ppu.work, 'op', n), `image ${n}`);
    writeFileSync(path.join(ppu.work, 'run', 'files'), users.map((n) => `${ppu.work}/op/${n}\n`).join(''));
    const copies = users.flatMap((n) => ['internal', 'external'].map((s) => path.join(t(s), n)));
    await eventually(() => copies.every((c) => existsSync(c)), 20_000, "the user's files copied to both storages");
    await eventually(() => !existsSync(fresh), 30_000, 'the other temp file, once it is as old, by a later sweep');
    await new Promise((r) => setTimeout(r, 21_000)); // the copies older than temp_max_age_s, and a sweep since
    for (const c of copies) assert.equal(readFileSync(c, 'utf8'), `image ${path.basename(c)}`, `${c} kept`);
    for (const k of keep) assert.ok(existsSync(k), `${k} kept`);
    assert.ok(lstatSync(link).isSymbolicLink(), 'a link with a temp name is left alone');
    assert.equal(ppu.grimseld!.proc.output().match(/removed \d+ stale grimseld temp file/g)?.length, 2, 'nothing else removed');
  });
});

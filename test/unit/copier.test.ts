// A copy against a user who changes their directories while grimseld copies (G3; docs/threat-model.md): the
// source and the copy's directory are held from the moment they are reached, so a directory swapped for a
// link, or a hard link to someone else's file swapped in, never makes grimseld copy another file or write
// elsewhere. The in-process tests swap at a known step of the copy (its progress callback); the last one
// runs the user's loop of the issue against a stream of copies.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, existsSync, lstatSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync,
  unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyMany, sameFile, SourceChanged, type CopyResult } from '../../src/grimseld/copier.js';
import { toMicrosecond } from '../../src/common/file-times.js';
import type { CopyWork as CopyJob } from '../../src/grimseld/copy-job.js';
import { prepareCopies } from '../../src/grimseld/copy-check.js';
import { flip } from '../fixtures/flip.js';
import { NODE_READS_PRE_1970 } from '../fixtures/files.js';
import { mountIdOf, NotMounted, RefusedDir, type MountId } from '../../src/grimseld/copy-dirs.js';
import { tempPrefix } from '../../src/common/name-max.js';
import { SUFFIX_HEX, tempName } from '../../src/grimseld/temp-names.js';
import type { Stats } from 'node:fs';
import { mountImage, mountTmpfs, unmount, unmountAll } from '../fixtures/tmpfs.js';
import { randomBytes } from 'node:crypto';

/** The key of copy temp names (temp-names.ts). */
const tempKey = randomBytes(32);

const opts = { preserveUid: false, preserveGid: false, tempKey };
const WHEN = new Date('2026-03-01T12:00:00Z');

describe('a copy while the user swaps their directories (G3, docs/threat-model.md)', () => {
  before(prepareCopies);
  let root: string;
  let ramdisk: string;
  let storage: string;
  let victim: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'copier-'));
    ramdisk = path.join(root, 'ramdisk');
    storage = path.join(root, 'storage');
    victim = path.join(root, 'victim');
    mkdirSync(path.join(ramdisk, 'u', 'run10'), { recursive: true });
    mkdirSync(victim);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A file of `text` at `p` with the mtime every file here has, so only content and inode tell them apart. */
  const file = (p: string, text: string, mode = 0o644): void => {
    writeFileSync(p, text, { mode });
    chmodSync(p, mode);
    utimesSync(p, WHEN, WHEN);
  };
  /** A job for `rel` below the ramdisk, as the dispatcher makes one (`ino`: an original; without, a copy read back). */
  const job = (rel: string, ino: boolean): CopyJob => {
    const src = path.join(ramdisk, rel);
    const st = statSync(src);
    return { src, root: ramdisk, dest: path.join(storage, rel), expect: { size: st.size, mtimeMs: st.mtimeMs, ...(ino ? { ino: st.ino, dev: st.dev } : {}) }, sweep: false };
  };
  const secret = 'root only secret!';

  it('reads every file of a batch from the directory it reached, also after that directory became a link', () => {
    file(path.join(ramdisk, 'u/run10/a.img'), 'image a, long enough');
    file(path.join(ramdisk, 'u/run10/b.img'), 'the user image b!');
    // Same name, size and mtime in the victim: only where it is read from tells them apart.
    file(path.join(victim, 'b.img'), secret, 0o600);
    const jobs = [job('u/run10/a.img', false), job('u/run10/b.img', false)];
    let swapped = false;
    const out = copyMany(jobs, storage, opts, () => {
      if (swapped) return;
      swapped = true;
      renameSync(path.join(ramdisk, 'u/run10'), path.join(ramdisk, 'u/run10.x'));
      symlinkSync(victim, path.join(ramdisk, 'u/run10'));
    });
    assert.deepEqual(out.map((o) => (o instanceof Error ? o.message : o.outcome)), ['copied', 'copied']);
    assert.equal(readFileSync(path.join(storage, 'u/run10/b.img'), 'utf8'), 'the user image b!', 'the user\'s file, not the victim\'s');
  });

  it("refuses a hard link to another's file swapped in under the delivered name, by inode or by its second link", () => {
    file(path.join(victim, 'secret'), secret, 0o600);
    for (const withIno of [true, false]) {
      const name = `u/run10/c-${withIno}.img`;
      file(path.join(ramdisk, name), 'the user image c!'); // as long as the secret
      const j = job(name, withIno);
      unlinkSync(j.src);
      linkSync(path.join(victim, 'secret'), j.src);
      const [r] = copyMany([j], storage, opts);
      assert.ok(r instanceof SourceChanged && (withIno ? /another inode/ : /\d links to it/).test(r.message), String(r));
      assert.ok(!existsSync(j.dest), 'no copy');
    }
    assert.equal(existsSync(path.join(storage, 'u')), false, 'nothing made for them');
  });

  it("gives the copy its original's mtime to the microsecond, on a millisecond's edge too (G3; the copy was 1 µs low)", () => {
    const times: bigint[] = [];
    for (const [i, at] of ['1796230921.708000000', '1796230921.708001000', '1796230921.707999999', '1796230921.500000000'].entries()) {
      const rel = `u/run10/t${i}.cbf`;
      file(path.join(ramdisk, rel), `frame ${i}`);
      execFileSync('touch', ['-m', '-d', `@${at}`, path.join(ramdisk, rel)]); // nanoseconds, as rsync sets them
      const j = job(rel, true);
      const [r] = copyMany([j], storage, opts);
      assert.equal(r instanceof Error ? r.message : r!.outcome, 'copied');
      const ns = statSync(path.join(ramdisk, rel), { bigint: true }).mtimeNs;
      times.push(statSync(j.dest, { bigint: true }).mtimeNs - (ns - (ns % 1000n)));
    }
    assert.deepEqual(times, [0n, 0n, 0n, 0n], 'each copy at its original\'s microsecond');
  });

  it('gives the copy a time before 1970 to the microsecond, not the time of the copy (F3, G3; Node takes a negative number for now)', function () {
    if (!NODE_READS_PRE_1970) this.skip();
    const off: string[] = [];
    // The tester's files (touch -d '@-1', '1969-12-31 12:00'), one of 1938 with nanoseconds, and 1 ns before the epoch.
    for (const [i, at] of ['-1', '-43200', '-1009843199.876543219', '-0.000000001'].entries()) {
      const rel = `u/run10/old${i}.cbf`;
      file(path.join(ramdisk, rel), `frame ${i}`);
      execFileSync('touch', ['-m', '-d', `@${at}`, path.join(ramdisk, rel)]);
      const j = job(rel, true);
      const [r] = copyMany([j], storage, opts);
      assert.equal(r instanceof Error ? r.message : r!.outcome, 'copied');
      assert.equal(r instanceof Error ? undefined : r!.mtimeClamped, undefined, 'nothing clamped');
      const ns = statSync(j.src, { bigint: true }).mtimeNs;
      const got = statSync(j.dest, { bigint: true }).mtimeNs;
      if (got !== toMicrosecond(ns)) off.push(`${at}: ${got}`);
      assert.ok(sameFile(statSync(j.dest), statSync(j.src)), 'G3 takes it for the copy (G5 then cleans its original up)');
      // Delivered again: the same file, not copied again (G3).
      const [again] = copyMany([j], storage, opts);
      assert.equal(again instanceof Error ? again.message : again!.outcome, 'identical');
    }
    assert.deepEqual(off, [], 'each copy at its original\'s microsecond');
  });

  it('copies a file whose name is as long as Linux allows (255 bytes), and sweeps its temp file as any other (G3)', () => {
    const name = `${'n'.repeat(251)}.cbf`;
    file(path.join(ramdisk, 'u/run10', name), 'a long name');
    const j = job(`u/run10/${name}`, true);
    const [r] = copyMany([j], storage, opts);
    assert.equal(r instanceof Error ? r.message : r!.outcome, 'copied');
    assert.equal(readFileSync(j.dest, 'utf8'), 'a long name');
    assert.deepEqual(readdirSync(path.join(storage, 'u/run10')), [name], 'no temp file left');
    // Copied again (replayed after a kill): its killed attempt's temp file is swept; the temp file of a
    // different long name with the same beginning, a copy of it in progress, is not; nor is a file of the
    // temp names' form that grimseld did not make (a user's file named so, copied there: G12).
    rmSync(j.dest);
    const own = tempName(tempKey, name);
    const other = tempName(tempKey, `${'n'.repeat(251)}.img`);
    const users = [`${tempPrefix(name, '.grimsel-', 8)}0badf00d`, `${tempPrefix(name, '.grimsel-', SUFFIX_HEX)}${'0'.repeat(SUFFIX_HEX)}`,
      tempName(randomBytes(32), name)];
    for (const t of [own, other, ...users]) writeFileSync(path.join(storage, 'u/run10', t), 'part of a copy');
    const [again] = copyMany([{ ...j, sweep: true }], storage, opts);
    assert.equal(again instanceof Error ? again.message : again!.outcome, 'copied');
    assert.deepEqual(readdirSync(path.join(storage, 'u/run10')).sort(), [name, other, ...users].sort());
  });

  it('refuses a link or a FIFO swapped in for the file, without waiting on the FIFO', () => {
    file(path.join(ramdisk, 'u/run10/d.img'), 'image d');
    file(path.join(ramdisk, 'u/run10/e.img'), 'image e');
    const d = job('u/run10/d.img', true);
    const e = job('u/run10/e.img', false);
    unlinkSync(d.src);
    symlinkSync(path.join(victim, 'anything'), d.src);
    unlinkSync(e.src);
    execFileSync('mkfifo', [e.src]);
    const out = copyMany([d, e], storage, opts);
    assert.ok(out[0] instanceof SourceChanged && /symbolic link/.test(out[0].message), String(out[0]));
    assert.ok(out[1] instanceof SourceChanged && /not a regular file/.test(out[1].message), String(out[1]));
  });

  it('writes a batch into the storage directory it made, also after the user swapped it for a link, and nothing elsewhere', () => {
    file(path.join(ramdisk, 'u/run10/f.img'), 'image f');
    file(path.join(ramdisk, 'u/run10/g.img'), 'image g');
    const jobs = [job('u/run10/f.img', true), job('u/run10/g.img', true)];
    let swapped = false;
    const out = copyMany(jobs, storage, opts, () => {
      if (swapped) return;
      swapped = true;
      renameSync(path.join(storage, 'u'), path.join(storage, 'u.moved'));
      symlinkSync(victim, path.join(storage, 'u'));
    });
    assert.deepEqual(out.map((o) => (o instanceof Error ? o.message : o.dest)), jobs.map((j) => j.dest));
    assert.deepEqual(readdirSync(path.join(storage, 'u.moved/run10')).sort(), ['f.img', 'g.img']);
    assert.deepEqual(readdirSync(victim), [], 'nothing in the victim');
  });

  it("never copies another's file while the user flips the run directory with a link to it (the issue's loop)", async function () {
    this.timeout(30_000);
    const run = path.join(ramdisk, 'u/run10');
    const n = 1000;
    for (let i = 0; i < n; i++) {
      file(path.join(run, `e_${i}.img`), `user frame ${String(i).padStart(4, '0')}`);
      file(path.join(victim, `e_${i}.img`), `SECRET fram ${String(i).padStart(4, '0')}`, 0o600); // the same size
    }
    // As the dispatcher makes them, before the flipping starts (the delivered inode is known).
    const jobs = Array.from({ length: n }, (_, i) => job(`u/run10/e_${i}.img`, true));
    symlinkSync(victim, path.join(ramdisk, 'u/run10.lnk'));
    const flipper = await flip(run, path.join(ramdisk, 'u/run10.lnk'));
    const outcomes: Array<string> = [];
    try {
      // One file a batch, as a live stream is copied: each walks the directory anew.
      for (const j of jobs) {
        const [r] = copyMany([j], storage, opts);
        outcomes.push(r instanceof Error ? r.message : r!.outcome);
      }
    } finally {
      await flipper.stop();
    }
    const leaked = [];
    for (const dir of ['u/run10', 'u/run10.lnk']) {
      const d = path.join(storage, dir);
      for (const f of existsSync(d) ? readdirSync(d) : []) if (readFileSync(path.join(d, f), 'utf8').startsWith('SECRET')) leaked.push(`${dir}/${f}`);
    }
    assert.deepEqual(leaked, [], 'no copy holds a secret');
    assert.ok(outcomes.includes('copied'), `some copies made: ${JSON.stringify(outcomes.slice(0, 20))}`);
  });
});

describe("the owners of a copy's directories with preserve_uid/gid (G3, G4)", () => {
  before(prepareCopies);
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'copier-owners-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("mirror the source directories' owners, also for a directory the user removed and grimseld makes again", () => {
    const ramdisk = path.join(root, 'ramdisk');
    const storage = path.join(root, 'storage');
    const run = path.join(ramdisk, '1mf/500_501/run');
    mkdirSync(run, { recursive: true });
    for (const d of ['1mf/500_501', '1mf/500_501/run']) chownSync(path.join(ramdisk, d), 500, 501);
    const copy = (name: string): void => {
      const src = path.join(run, name);
      writeFileSync(src, name);
      chownSync(src, 500, 501);
      const st = statSync(src);
      const [r] = copyMany([{ src, root: ramdisk, dest: path.join(storage, '1mf/500_501/run', name), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false }],
        storage, { preserveUid: true, preserveGid: true, tempKey });
      assert.ok(!(r instanceof Error), String(r));
    };
    const owners = (): Array<[number, number]> => ['1mf', '1mf/500_501', '1mf/500_501/run', '1mf/500_501/run/a.img'].map((p) => {
      const st = lstatSync(path.join(storage, p), { throwIfNoEntry: false });
      return [st?.uid ?? -1, st?.gid ?? -1];
    });
    copy('a.img');
    assert.deepEqual(owners(), [[0, 0], [500, 501], [500, 501], [500, 501]]);
    rmSync(path.join(storage, '1mf/500_501/run'), { recursive: true });
    copy('a.img');
    assert.deepEqual(owners(), [[0, 0], [500, 501], [500, 501], [500, 501]], 'made again, and given to the user again');
  });

  it("leaves a user's storage directory theirs when a file of another user's in their ramdisk directory is copied through it", () => {
    // Seen after a restart of furkad: user 500's staged file placed into user 1000's usrdir made 1000's storage usrdir root's.
    const ramdisk = path.join(root, 'ramdisk');
    const storage = path.join(root, 'storage');
    mkdirSync(path.join(ramdisk, '1mf/1000_1000'), { recursive: true });
    chownSync(path.join(ramdisk, '1mf/1000_1000'), 1000, 1000);
    const copy = (name: string, owner: [number, number]): void => {
      const src = path.join(ramdisk, '1mf/1000_1000', name);
      writeFileSync(src, name);
      chownSync(src, ...owner);
      const st = statSync(src);
      const [r] = copyMany([{ src, root: ramdisk, dest: path.join(storage, '1mf/1000_1000', name), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false }],
        storage, { preserveUid: true, preserveGid: true, tempKey });
      assert.ok(!(r instanceof Error), String(r));
    };
    copy('own.img', [1000, 1000]);
    copy('other.img', [500, 501]);
    const owner = (p: string): number[] => {
      const st = lstatSync(path.join(storage, p));
      return [st.uid, st.gid];
    };
    assert.deepEqual(owner('1mf/1000_1000'), [1000, 1000], "the usrdir still the user's");
    assert.deepEqual(owner('1mf/1000_1000/other.img'), [500, 501], 'the copy its owner\'s (preserve_uid)');
    assert.deepEqual(owner('1mf'), [0, 0]);
  });

  it("never hands a user the shared or another user's directories when an operator adds a tree of theirs (AddFile a/./1mf/500_501/...)", () => {
    const ramdisk = path.join(root, 'ramdisk');
    const storage = path.join(root, 'storage');
    const copy = (srcRoot: string, rel: string, owner: [number, number]): void => {
      const src = path.join(srcRoot, rel);
      mkdirSync(path.dirname(src), { recursive: true });
      writeFileSync(src, rel);
      chownSync(src, ...owner);
      const st = statSync(src);
      const [r] = copyMany([{ src, root: srcRoot, dest: path.join(storage, rel), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false }],
        storage, { preserveUid: true, preserveGid: true, tempKey });
      assert.ok(!(r instanceof Error), String(r));
    };
    // User 500's shift: its copies in 1mf/500_501/u1, the usrdir and below theirs (as on the ramdisk).
    mkdirSync(path.join(ramdisk, '1mf/500_501/u1'), { recursive: true });
    for (const d of ['1mf/500_501', '1mf/500_501/u1']) chownSync(path.join(ramdisk, d), 500, 501);
    copy(ramdisk, '1mf/500_501/u1/img_01.cbf', [500, 501]);
    // nobody's tree of the same shape, added by an operator: every directory of it is nobody's. And a
    // usrdir nobody names for a shift that has not started yet (700_701): made before its owner's copies.
    const mal = path.join(root, 'mal');
    mkdirSync(path.join(mal, '1mf/500_501/u1'), { recursive: true });
    mkdirSync(path.join(mal, '1mf/700_701'), { recursive: true });
    for (const d of ['1mf', '1mf/500_501', '1mf/500_501/u1', '1mf/700_701']) chownSync(path.join(mal, d), 65534, 65534);
    copy(mal, '1mf/500_501/u1/evil.txt', [65534, 65534]);
    copy(mal, '1mf/700_701/early.txt', [65534, 65534]);
    const uid = (p: string): number => lstatSync(path.join(storage, p)).uid;
    assert.deepEqual(['1mf', '1mf/500_501', '1mf/500_501/u1'].map(uid), [0, 0, 0], "neither the shared directory nor user 500's are nobody's");
    assert.equal(uid('1mf/500_501/u1/evil.txt'), 65534, 'the added file is its owner\'s');
    assert.equal(uid('1mf/700_701'), 65534, 'made for the added file');
    // User 700's shift starts: its copies do not go into a directory nobody owns.
    mkdirSync(path.join(ramdisk, '1mf/700_701'), { recursive: true });
    chownSync(path.join(ramdisk, '1mf/700_701'), 700, 701);
    copy(ramdisk, '1mf/700_701/img_01.cbf', [700, 701]);
    assert.equal(uid('1mf/700_701'), 0, 'taken from nobody: root\'s');
  });

  it("refuses an operator's copy into another user's storage directories or a shared one, and changes nothing there (hostile tester h6)", () => {
    const ramdisk = path.join(root, 'ramdisk');
    const storage = path.join(root, 'storage');
    const copy = (srcRoot: string, rel: string, owner: [number, number], byOperator: boolean): CopyResult | Error => {
      const src = path.join(srcRoot, rel);
      mkdirSync(path.dirname(src), { recursive: true });
      writeFileSync(src, rel);
      chownSync(src, ...owner);
      const st = statSync(src);
      return copyMany([{ src, root: srcRoot, dest: path.join(storage, rel), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev },
        sweep: false, ...(byOperator ? { byOperator: true as const } : {}) }], storage, { preserveUid: true, preserveGid: true, tempKey })[0]!;
    };
    // User 500's shift: its storage directories theirs.
    mkdirSync(path.join(ramdisk, '1mf/500_501/u1'), { recursive: true });
    for (const d of ['1mf/500_501', '1mf/500_501/u1']) chownSync(path.join(ramdisk, d), 500, 501);
    assert.ok(!(copy(ramdisk, '1mf/500_501/u1/img_01.cbf', [500, 501], false) instanceof Error));
    const mal = path.join(root, 'mal');
    mkdirSync(path.join(mal, '1mf/500_501/u1'), { recursive: true });
    mkdirSync(path.join(mal, 'own'), { recursive: true });
    for (const d of ['1mf', '1mf/500_501', '1mf/500_501/u1', 'own']) chownSync(path.join(mal, d), 65534, 65534);
    const state = (): string[] => ['1mf', '1mf/500_501', '1mf/500_501/u1'].map((d) => {
      const st = lstatSync(path.join(storage, d));
      return `${d} ${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
    });
    const before = state();
    // nobody's tree of the same shape, added by an operator: user 500's directories are neither taken nor written into.
    const into = copy(mal, '1mf/500_501/u1/img_02.cbf', [65534, 65534], true);
    assert.ok(into instanceof RefusedDir, String(into));
    assert.match(into.message, new RegExp(`${path.join(storage, '1mf/500_501')} is uid 500's, not the owner's of the directory it stands for`));
    // Nor a file of theirs in the shared directory, or in the storage's target beside its mark.
    const shared = copy(mal, '1mf/img_03.cbf', [65534, 65534], true);
    assert.ok(shared instanceof RefusedDir && shared.message.startsWith(`${path.join(storage, '1mf')} is root's, and the file uid 65534's`), String(shared));
    assert.ok(copy(mal, '.grimsel-storage', [65534, 65534], true) instanceof RefusedDir);
    assert.deepEqual(state(), before, 'nothing there changed');
    for (const f of ['1mf/500_501/u1/img_02.cbf', '1mf/img_03.cbf', '.grimsel-storage']) assert.equal(existsSync(path.join(storage, f)), false, f);
    assert.deepEqual(readdirSync(path.join(storage, '1mf/500_501/u1')), ['img_01.cbf'], 'no temp file left either');
    // A directory of their own is made theirs; user 500's own file, added by an operator, goes into user 500's.
    assert.ok(!(copy(mal, 'own/notes.txt', [65534, 65534], true) instanceof Error));
    assert.equal(lstatSync(path.join(storage, 'own')).uid, 65534);
    assert.ok(!(copy(ramdisk, '1mf/500_501/u1/img_04.cbf', [500, 501], true) instanceof Error));
    assert.deepEqual(state(), before);
  });

  it("refuses grimseld's own mark from an operator with the owner options off too, where every copy is root's as the mark is (r2)", () => {
    const mal = path.join(root, 'mal2');
    const storage = path.join(root, 'storage2');
    mkdirSync(mal, { recursive: true });
    mkdirSync(storage, { recursive: true });
    const copy = (rel: string, owner: [number, number], byOperator: boolean): CopyResult | Error => {
      const src = path.join(mal, rel);
      writeFileSync(src, `${rel} of the operator`);
      chownSync(src, ...owner);
      const st = statSync(src);
      return copyMany([{ src, root: mal, dest: path.join(storage, rel), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev },
        sweep: false, ...(byOperator ? { byOperator: true as const } : {}) }], storage, { preserveUid: false, preserveGid: false, tempKey })[0]!;
    };
    for (const owner of [[65534, 65534], [0, 0]] as Array<[number, number]>) {
      const refused = copy('.grimsel-storage', owner, true);
      assert.ok(refused instanceof RefusedDir && /grimseld's own mark/.test(refused.message), String(refused));
      assert.equal(existsSync(path.join(storage, '.grimsel-storage')), false);
    }
    // Another name there is the operator's to add (root's as every copy with the options off).
    assert.ok(!(copy('notes.txt', [65534, 65534], true) instanceof Error));
  });
});

describe('a time the storage cannot store (G3, G5)', function () {
  // Real file systems: a tmpfs ramdisk keeps any time; ext4 keeps 1901-12-13 … 2446-05-10 with 256-byte inodes,
  // clamping beyond, and with 128-byte ones whole seconds within 32 bits.
  this.timeout(60_000);
  before(prepareCopies);
  let root: string;
  let ramdisk: string;
  const ext4 = (inodeBytes: number): string => {
    const image = path.join(root, `ext4-${inodeBytes}.img`);
    writeFileSync(image, '');
    execFileSync('truncate', ['-s', '16M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-I', String(inodeBytes), image]);
    return mountImage(image, path.join(root, `storage-${inodeBytes}`));
  };
  beforeEach(function () {
    try {
      execFileSync('which', ['mkfs.ext4'], { stdio: 'ignore' });
    } catch {
      this.skip();
    }
    root = mkdtempSync(path.join(os.tmpdir(), 'copier-times-'));
    ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 1 << 20);
    mkdirSync(path.join(ramdisk, 'u'));
  });
  afterEach(() => {
    unmountAll();
    rmSync(root, { recursive: true, force: true });
  });
  const copyAt = (storage: string, name: string, at: string): { r: Awaited<ReturnType<typeof copyMany>>[number]; src: string; dest: string } => {
    const src = path.join(ramdisk, 'u', name);
    writeFileSync(src, `frame ${name}`);
    execFileSync('touch', ['-m', '-d', `@${at}`, src]);
    const st = statSync(src);
    const dest = path.join(storage, 'u', name);
    const [r] = copyMany([{ src, root: ramdisk, dest, expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false }], storage, opts);
    return { r: r!, src, dest };
  };

  it('takes a copy the kernel clamped to the edge of its file system for the copy, says so, and copies it once (the year 2500, 1800)', () => {
    const storage = ext4(256);
    const cases = [['y2500.cbf', '16725225600', 15032385535n], ['y1800.cbf', '-5364662400.5', -2147483648n]] as const;
    for (const [name, at, edge] of cases.filter(([, t]) => NODE_READS_PRE_1970 || !t.startsWith('-'))) {
      const { r, src, dest } = copyAt(storage, name, at);
      assert.ok(!(r instanceof Error), String(r));
      assert.equal(r.outcome, 'copied');
      assert.equal(statSync(dest, { bigint: true }).mtimeNs, edge * 1_000_000_000n, 'the edge of ext4');
      assert.deepEqual(r.mtimeClamped, { wanted: String(toMicrosecond(statSync(src, { bigint: true }).mtimeNs)), stored: String(edge * 1_000_000_000n) });
      assert.ok(sameFile(statSync(dest), statSync(src)), 'G3 takes it for the copy: its original is cleaned up (G5), not a DEL_ERROR for ever');
      const st = statSync(src);
      const [again] = copyMany([{ src, root: ramdisk, dest, expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: false }], storage, opts);
      assert.equal(again instanceof Error ? again.message : again!.outcome, 'identical', 'not copied again');
    }
    if (!NODE_READS_PRE_1970) return;
    const { r, dest } = copyAt(storage, 'y1938.cbf', '-1009843199.876543219');
    assert.equal(r instanceof Error ? r.message : r.mtimeClamped, undefined, 'ext4 keeps 1938');
    assert.equal(statSync(dest, { bigint: true }).mtimeNs, -1009843199876544000n);
  });

  it('keeps on a file system with whole seconds only (128-byte inodes, as ext3) the mtime cut to the second, as cp -p does: counted, the copy of its original, copied once (G3, G5)', () => {
    const storage = ext4(128);
    // early.cbf: 4 ms after an even second, which exFAT's 10 ms, a second and FAT's 2 s all cut to that second; one
    // file cannot tell which, and the step said was 10 ms about once in a hundred copies (the first one is said).
    const cases = [['now.cbf', '1796230921.707812345', 1796230921n], ['early.cbf', '1796230920.004812345', 1796230920n],
      ['y1938.cbf', '-1009843199.876543219', -1009843200n]] as const;
    for (const [name, at, sec] of cases.filter(([, t]) => NODE_READS_PRE_1970 || !t.startsWith('-'))) {
      const { r, src, dest } = copyAt(storage, name, at);
      assert.ok(!(r instanceof Error), String(r));
      assert.equal(r.outcome, 'copied');
      assert.equal(statSync(dest, { bigint: true }).mtimeNs, sec * 1_000_000_000n, 'cut down to its second');
      assert.deepEqual(r.mtimeClamped, { wanted: String(toMicrosecond(statSync(src, { bigint: true }).mtimeNs)), stored: String(sec * 1_000_000_000n), stepMs: 1000 });
      assert.ok(sameFile(statSync(dest), statSync(src)), 'G3 takes it for the copy: its original is cleaned up (G5), not a DEL_ERROR for ever');
      assert.ok(!sameFile(statSync(src), statSync(dest)), 'one way round only');
      const st = statSync(src);
      const [again] = copyMany([{ src, root: ramdisk, dest, expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: false }], storage, opts);
      assert.equal(again instanceof Error ? again.message : again!.outcome, 'identical', 'not copied again');
      assert.deepEqual(readdirSync(path.join(storage, 'u')).filter((n) => n.startsWith(name) || n.includes(`.${name}.`)), [name], 'no numbered name, no temp file');
    }
    const clamped = copyAt(storage, 'y2100.cbf', '4102444800').r;
    assert.equal(clamped instanceof Error ? clamped.message : clamped.mtimeClamped?.stored, String(BigInt(2 ** 31 - 1) * 1_000_000_000n), '2100: 2038-01-19');
  });
});

describe('a storage unmounted between the mount check and the copy (G13)', () => {
  before(prepareCopies);
  let root: string;
  let ramdisk: string;
  let st: Stats;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'copier-mnt-'));
    ramdisk = path.join(root, 'ramdisk');
    mkdirSync(path.join(ramdisk, 'u'), { recursive: true });
    writeFileSync(path.join(ramdisk, 'u/a.img'), 'image a');
    st = statSync(path.join(ramdisk, 'u/a.img'));
  });
  afterEach(() => {
    unmountAll();
    rmSync(root, { recursive: true, force: true });
  });
  /** The job the dispatcher hands out once its check found `point` mounted as `device`. */
  const job = (target: string, point: string, device: MountId): CopyJob => ({ src: path.join(ramdisk, 'u/a.img'), root: ramdisk,
    dest: path.join(target, 'u/a.img'), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }, sweep: false,
    mount: { point, device } });

  it('writes nothing onto the bare mount point, whether the target is left there or missing, and copies once it is mounted again', () => {
    const mnt = mountTmpfs(path.join(root, 'usb'), 1 << 20);
    const device = mountIdOf(statSync(mnt));
    unmount(mnt);
    // The target left on the bare mount point (made there once by hand, say), and a missing one.
    mkdirSync(path.join(mnt, 'data'));
    for (const target of [path.join(mnt, 'data'), path.join(mnt, 'missing')]) {
      const [r] = copyMany([job(target, mnt, device)], target, opts);
      assert.ok(r instanceof NotMounted && /nothing written/.test(r.message), String(r));
    }
    assert.deepEqual(readdirSync(mnt), ['data'], 'nothing made on the bare mount point');
    assert.deepEqual(readdirSync(path.join(mnt, 'data')), []);
    // Mounted again (another device number now): the device the check then finds is the one the job carries.
    mountTmpfs(mnt, 1 << 20);
    const target = path.join(mnt, 'data');
    const [r] = copyMany([job(target, mnt, mountIdOf(statSync(mnt)))], target, opts);
    assert.equal(r instanceof Error ? r.message : r!.outcome, 'copied');
    assert.equal(readFileSync(path.join(mnt, 'data/u/a.img'), 'utf8'), 'image a');
  });

  it('writes nothing onto the bare mount point of a bind of a directory of the same file system, unmounted with umount -l (G13)', () => {
    // The device is the same before and after: only the directory seen there (its inode) tells the bind from the bare
    // mount point. Before, copies went on into the bare directory, hidden once the bind was back.
    const disk = mountTmpfs(path.join(root, 'same-fs'), 1 << 20);
    const real = path.join(disk, 'real');
    const mnt = path.join(disk, 'mnt');
    mkdirSync(path.join(real, 'data'), { recursive: true });
    mkdirSync(mnt);
    execFileSync('mount', ['--bind', real, mnt]);
    const found = mountIdOf(statSync(mnt));
    execFileSync('umount', ['-l', mnt]);
    assert.equal(statSync(mnt).dev, statSync(real).dev, 'the same device');
    const target = path.join(mnt, 'data');
    const [r] = copyMany([job(target, mnt, found)], target, opts);
    assert.ok(r instanceof NotMounted && /nothing written/.test(r.message), String(r));
    assert.deepEqual(readdirSync(mnt), [], 'nothing made on the bare mount point');
    execFileSync('mount', ['--bind', real, mnt]);
    try {
      const [again] = copyMany([job(target, mnt, mountIdOf(statSync(mnt)))], target, opts);
      assert.equal(again instanceof Error ? again.message : again!.outcome, 'copied');
      assert.equal(readFileSync(path.join(real, 'data/u/a.img'), 'utf8'), 'image a');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('copies into a target that is a file system of its own below the mount point (a subvolume, a second disk)', () => {
    const mnt = mountTmpfs(path.join(root, 'data'), 1 << 20);
    const images = mountTmpfs(path.join(mnt, 'images'), 1 << 20);
    assert.notEqual(statSync(images).dev, statSync(mnt).dev);
    const [r] = copyMany([job(images, mnt, mountIdOf(statSync(mnt)))], images, opts);
    assert.equal(r instanceof Error ? r.message : r!.outcome, 'copied');
    assert.equal(readFileSync(path.join(images, 'u/a.img'), 'utf8'), 'image a');
  });
});

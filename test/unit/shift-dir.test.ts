// Placing a complete file from staging (F2, F3): never over a different file of the same name, never
// through a directory its user swapped for a link (docs/threat-model.md).
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, closeSync, existsSync, openSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, linkSync, unlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ShiftDir } from '../../src/furkad/shift-dir.js';
import { initProvenance, writeProvenance } from '../../src/common/provenance.js';
import type { Logger } from '../../src/common/logger.js';
import { startFlip } from '../fixtures/flip.js';
import { fillInodes, mountTmpfs, unmount } from '../fixtures/tmpfs.js';

describe('placing a file in the shift directory (F2)', () => {
  let work: string;
  let staging: string;
  let dir: ShiftDir;
  let warnings: string[];
  const log = { warn: (_o: unknown, msg: string) => { warnings.push(msg); } } as unknown as Logger;
  const stage = (rel: string, text: string, mtime = new Date(1_700_000_000_000)): string => {
    const f = path.join(staging, rel);
    mkdirSync(path.dirname(f), { recursive: true });
    writeFileSync(f, text);
    utimesSync(f, mtime, mtime);
    return f;
  };
  const final = (rel: string): string => path.join(work, 'target', '500_501', rel);

  before(() => initProvenance());
  beforeEach(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'shift-dir-'));
    staging = path.join(work, 'staging');
    warnings = [];
    dir = new ShiftDir(path.join(work, 'target'), '500_501', process.getuid!(), process.getgid!(), log);
    await dir.prepare();
  });
  afterEach(() => {
    dir.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('places a file under its name and returns it', async () => {
    assert.equal(await dir.place(stage('s/x.img', 'A'), 's/x.img'), 's/x.img');
    assert.equal(readFileSync(final('s/x.img'), 'utf8'), 'A');
    assert.ok(!existsSync(path.join(staging, 's/x.img')), 'moved, not copied');
    assert.deepEqual(warnings, []);
  });

  it('keeps a different file under the name and places the new one as NAME.~1~, then .~2~, saying so', async () => {
    await dir.place(stage('s/x.img', 'A'), 's/x.img');
    assert.equal(await dir.place(stage('s/x.img', 'B', new Date(1_700_000_001_000)), 's/x.img'), 's/x.img.~1~');
    assert.equal(await dir.place(stage('s/x.img', 'C', new Date(1_700_000_002_000)), 's/x.img'), 's/x.img.~2~');
    assert.deepEqual(['s/x.img', 's/x.img.~1~', 's/x.img.~2~'].map((r) => readFileSync(final(r), 'utf8')), ['A', 'B', 'C']);
    assert.equal(warnings.length, 2);
    assert.ok(warnings[0]!.includes(final('s/x.img')) && warnings[0]!.includes(final('s/x.img.~1~')), warnings[0]);
  });

  it('takes the same file placed again (killed after placing, before staging was cleared) as placed, once', async () => {
    const staged = stage('s/y.img', 'A');
    await dir.place(staged, 's/y.img');
    linkSync(final('s/y.img'), staged); // as a furkad killed between link() and unlink() leaves it
    assert.equal(await dir.place(staged, 's/y.img'), 's/y.img');
    assert.ok(!existsSync(staged) && !existsSync(final('s/y.img.~1~')));
    // A copy with the same size and mtime (G3's measure of "the same file") counts too.
    assert.equal(await dir.place(stage('s/y.img', 'A'), 's/y.img'), 's/y.img');
    assert.ok(!existsSync(final('s/y.img.~1~')));
  });

  it('places a second version with the same size and mtime but another checksum beside the first, and drops one with the same checksum (F2, I3)', async () => {
    // A file rewritten in place within one tick of the detector's coarse clock: the same size and mtime.
    const staged = (text: string, checksum: string): string => {
      const f = stage('s/z.img', text);
      const fd = openSync(f, 'r');
      try {
        writeProvenance(fd, { checksum });
      } finally {
        closeSync(fd);
      }
      return f;
    };
    assert.equal(await dir.place(staged('AAAA', 'a'.repeat(32)), 's/z.img'), 's/z.img');
    assert.equal(await dir.place(staged('BBBB', 'b'.repeat(32)), 's/z.img'), 's/z.img.~1~', 'another version: beside it');
    assert.deepEqual(['s/z.img', 's/z.img.~1~'].map((r) => readFileSync(final(r), 'utf8')), ['AAAA', 'BBBB']);
    assert.equal(await dir.place(staged('BBBB', 'b'.repeat(32)), 's/z.img'), 's/z.img.~1~', 'the second version placed again: the same file');
    assert.ok(!existsSync(final('s/z.img.~2~')));
    // Without checksums the bytes decide.
    const plain = stage('s/z.img', 'CCCC');
    assert.equal(await dir.place(plain, 's/z.img'), 's/z.img.~2~', 'other bytes: beside them');
    assert.equal(await dir.place(stage('s/z.img', 'CCCC'), 's/z.img'), 's/z.img.~2~', 'the same bytes: the same file');
    // A restarted furkad's question "is it there already?" (ShiftDir.holds) asks by checksum too.
    const root = final('');
    const { size, mtimeMs } = lstatSync(final('s/z.img'));
    assert.ok(ShiftDir.holds(root, 's/z.img', size, mtimeMs, 'b'.repeat(32)), 'the second version, as NAME.~1~');
    assert.ok(!ShiftDir.holds(root, 's/z.img', size, mtimeMs, 'd'.repeat(32)), 'a version never placed');
    assert.ok(ShiftDir.holds(root, 's/z.img', size, mtimeMs), 'by size and mtime alone (an intent of an older furkad)');
  });

  it('never writes through a link planted under the name', async () => {
    const victim = path.join(work, 'victim');
    writeFileSync(victim, 'root file');
    mkdirSync(path.dirname(final('s/z.img')), { recursive: true });
    symlinkSync(victim, final('s/z.img'));
    assert.equal(await dir.place(stage('s/z.img', 'B'), 's/z.img'), 's/z.img.~1~');
    assert.equal(readFileSync(victim, 'utf8'), 'root file');
    assert.ok(lstatSync(final('s/z.img')).isSymbolicLink());
  });

  it("never gives a user a shift directory that holds furkad's staging (an earlier target), and changes nothing there (threat model)", async () => {
    const t = path.join(work, 'ramdisk', '1mf');
    mkdirSync(path.join(t, '960_960', '.furkad-staging', '1MF'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(t, '960_960', '500_501'));
    const dir = new ShiftDir(t, '960_960', 960, 960, log, path.join(work, 'ramdisk'));
    await assert.rejects(dir.prepare(), /960_960 holds furkad's \.furkad-staging: it is \(or was\) a detector's target, not given to a shift/);
    dir.close();
    assert.equal(lstatSync(path.join(t, '960_960')).uid, 0, 'still root\'s');
  });

  it("never gives a user a shift directory furkad made, root's, on the way to another target, with root's directories in it (threat model)", async () => {
    const t = path.join(work, 'ramdisk', '1mf');
    mkdirSync(path.join(t, '53403_100', 'run1', '.furkad-staging'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(t, '53403_100', 'run1', '99999_100'));
    const dir = new ShiftDir(t, '53403_100', 53403, 100, log, path.join(work, 'ramdisk'));
    await assert.rejects(dir.prepare(), /53403_100 is root's and holds 'run1' of root, not of this shift: furkad made it on the way to a detector's target, not given to a shift/);
    dir.close();
    assert.equal(lstatSync(path.join(t, '53403_100')).uid, 0, 'still root\'s');
  });

  it('gives a root shift (allow_root_shift) its own directory again after a restart, its directories root\'s as all its files (review h4)', async () => {
    const t = path.join(work, 'ramdisk', '1mf');
    const first = new ShiftDir(t, '0_0', 0, 0, log, path.join(work, 'ramdisk'));
    await first.prepare();
    assert.equal(await first.place(stage('r/x.img', 'X'), 'run1/x.img'), 'run1/x.img');
    first.close();
    const again = new ShiftDir(t, '0_0', 0, 0, log, path.join(work, 'ramdisk'));
    await again.prepare();
    again.close();
  });

  it("keeps the target, the directories above it up to its './' and the usrdir's parents root's; only the usrdir is the shift's (F4)", async () => {
    // As a first user of an earlier version left them: theirs and writable by all.
    const ramdisk = path.join(work, 'ramdisk');
    for (const d of ['imgdir', 'imgdir/1mf', 'imgdir/1mf/users']) {
      mkdirSync(path.join(ramdisk, d), { recursive: true });
      chownSync(path.join(ramdisk, d), 65534, 65534);
      chmodSync(path.join(ramdisk, d), 0o777);
    }
    const shared = new ShiftDir(path.join(ramdisk, 'imgdir/1mf'), 'users/500_501', 500, 501, log, ramdisk);
    await shared.prepare();
    const owner = (p: string): [number, number, string] => {
      const st = lstatSync(path.join(ramdisk, p));
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    assert.deepEqual(owner('imgdir'), [0, 0, '755']);
    assert.deepEqual(owner('imgdir/1mf'), [0, 0, '755']);
    assert.deepEqual(owner('imgdir/1mf/users'), [0, 0, '755']);
    assert.deepEqual(owner('imgdir/1mf/users/500_501').slice(0, 2), [500, 501]);
    // What the user had in imgdir while it was theirs is moved aside, their 1mf and users with it: furkad made its own.
    assert.deepEqual(owner('imgdir/1mf.moved-aside-uid65534'), [65534, 65534, '777']);
    assert.ok(lstatSync(path.join(ramdisk, 'imgdir/1mf.moved-aside-uid65534/users')).isDirectory());
    assert.equal(warnings.length, 2, 'given back, and moved aside: each said once');
    assert.match(warnings[1]!, /imgdir was open to others until furkad gave it back to root: .*moved aside \(kept, never used by furkad\): 1mf \(directory of uid 65534\) -> .*imgdir\/1mf\.moved-aside-uid65534$/);
    await shared.prepare();
    assert.equal(warnings.length, 2, 'nothing to say the second time');
  });

  it("moves aside what a user put into a target they made first, keeping the shift's own directory and root's entries (F4)", async () => {
    // A 1777 ramdisk after boot: user 65534 made the target and filled it before furkad first prepared it.
    const ramdisk = path.join(work, 'ramdisk');
    mkdirSync(ramdisk, { mode: 0o755 });
    chmodSync(ramdisk, 0o1777);
    const t = path.join(ramdisk, 'r');
    for (const d of ['r', 'r/500_501/run1', 'r/.furkad-staging', 'r/540_541']) mkdirSync(path.join(ramdisk, d), { recursive: true, mode: 0o777 });
    writeFileSync(path.join(t, '500_501/run1/x.img'), 'fake');
    symlinkSync('/etc', path.join(t, '600_601'));
    for (const d of ['r', 'r/500_501', 'r/500_501/run1', 'r/500_501/run1/x.img', 'r/.furkad-staging', 'r/540_541']) chownSync(path.join(ramdisk, d), 65534, 65534);
    lchownSync(path.join(t, '600_601'), 65534, 65534);
    mkdirSync(path.join(t, '700_701'), { mode: 0o755 }); // the shift's own (700:701): kept
    chownSync(path.join(t, '700_701'), 700, 701);
    mkdirSync(path.join(t, 'other-detector'), { mode: 0o755 }); // root's: kept
    const shared = new ShiftDir(t, '700_701', 700, 701, log, ramdisk);
    try {
      await shared.prepare();
      assert.equal(await shared.place(stage('run1/x.img', 'real'), 'run1/x.img'), 'run1/x.img');
      assert.equal(readFileSync(path.join(t, '700_701/run1/x.img'), 'utf8'), 'real');
      assert.deepEqual(readdirSync(t).sort(), ['.furkad-staging.moved-aside-uid65534', '500_501.moved-aside-uid65534', '540_541.moved-aside-uid65534',
        '600_601.moved-aside-uid65534', '700_701', 'other-detector']);
      assert.equal(readFileSync(path.join(t, '500_501.moved-aside-uid65534/run1/x.img'), 'utf8'), 'fake', 'kept as it was');
      assert.ok(lstatSync(path.join(t, '600_601.moved-aside-uid65534')).isSymbolicLink());
      const st = lstatSync(t);
      assert.deepEqual([st.uid, st.gid, (st.mode & 0o7777).toString(8)], [0, 0, '755']);
      const said = warnings.filter((w) => /moved aside/.test(w));
      assert.equal(said.length, 1, 'said once, in one line');
      assert.match(said[0]!, /4 entries moved aside.*500_501 \(directory of uid 65534\) -> .*500_501\.moved-aside-uid65534.*600_601 \(symbolic link of uid 65534\)/);
      // The shift 500:501 later finds no leftover of the user's in its place.
      const later = new ShiftDir(t, '500_501', 500, 501, log, ramdisk);
      await later.prepare();
      assert.equal(await later.place(stage('run1/x.img', 'real 500'), 'run1/x.img'), 'run1/x.img');
      later.close();
      const u = lstatSync(path.join(t, '500_501'));
      assert.deepEqual([u.uid, u.gid, (u.mode & 0o7777).toString(8)], [500, 501, '755']);
    } finally {
      shared.close();
    }
  });

  it("gives a shift directory, and one below it, that another user had the shift's owner and no group or other write (F4)", async () => {
    // Left from when the target was open (taken back by an earlier furkad, which left what was in it).
    const t = path.join(work, 'target');
    const u = path.join(t, '500_501');
    mkdirSync(path.join(u, 'run1'), { recursive: true });
    for (const d of [u, path.join(u, 'run1')]) {
      chownSync(d, 65534, 65534);
      chmodSync(d, 0o777);
    }
    mkdirSync(path.join(u, 'mine'), { mode: 0o755 });
    chownSync(path.join(u, 'mine'), 500, 600); // the shift user's own, another group of theirs
    chmodSync(path.join(u, 'mine'), 0o2775);
    const shift = new ShiftDir(t, '500_501', 500, 501, log);
    const owner = (p: string): [number, number, string] => {
      const st = lstatSync(p);
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    try {
      await shift.prepare();
      assert.deepEqual(owner(u), [500, 501, '755']);
      await shift.place(stage('run1/a.img', 'A'), 'run1/a.img');
      assert.deepEqual(owner(path.join(u, 'run1')), [500, 501, '755']);
      await shift.place(stage('mine/b.img', 'B'), 'mine/b.img');
      assert.deepEqual(owner(path.join(u, 'mine')), [500, 501, '2775'], "the shift user's own directory keeps its mode");
      assert.equal(warnings.filter((w) => /was uid 65534's and writable by everyone: given to the shift \(500:501\) without group and other write/.test(w)).length, 2);
    } finally {
      shift.close();
    }
  });

  it("moves aside a user's link or file where furkad makes a shift directory in a target only root can change (F4)", async () => {
    const t = path.join(work, 'target');
    symlinkSync('/etc', path.join(t, '540_541'));
    lchownSync(path.join(t, '540_541'), 65534, 65534);
    writeFileSync(path.join(t, '550_551'), 'x');
    chownSync(path.join(t, '550_551'), 65534, 65534);
    for (const [uid, gid] of [[540, 541], [550, 551]] as const) {
      const shift = new ShiftDir(t, `${uid}_${gid}`, uid, gid, log);
      try {
        await shift.prepare();
        assert.equal(await shift.place(stage('a.img', 'A'), 'a.img'), 'a.img');
      } finally {
        shift.close();
      }
      const st = lstatSync(path.join(t, `${uid}_${gid}`));
      assert.ok(st.isDirectory());
      assert.deepEqual([st.uid, st.gid], [uid, gid]);
    }
    assert.ok(lstatSync(path.join(t, '540_541.moved-aside-uid65534')).isSymbolicLink());
    assert.equal(readFileSync(path.join(t, '550_551.moved-aside-uid65534'), 'utf8'), 'x');
    assert.ok(!existsSync('/etc/a.img'));
  });

  it('places files only in the directory it holds while its user swaps it for a link to a root directory, in a loop (docs/threat-model.md)', async function () {
    this.timeout(60_000);
    const u = path.join(work, 'target', '500_501');
    const victim = path.join(work, 'victim');
    mkdirSync(victim, { mode: 0o755 });
    mkdirSync(path.join(u, 'run8'));
    symlinkSync(victim, path.join(u, 'run8x'));
    const flip = await startFlip(path.join(u, 'run8'), path.join(u, 'run8x'));
    let placed = 0;
    try {
      for (let i = 0; i < 400; i++) {
        try {
          await dir.place(stage(`run8/f_${i}`, String(i)), `run8/f_${i}`);
          placed++;
        } catch (e) {
          // Met as the link: refused, and the file stays in staging for a later try.
          assert.match((e as Error).message, /refusing to (?:follow|write through) .*500_501\/run8: it is (a symbolic link|being swapped with a symbolic link)/);
          assert.ok(existsSync(path.join(staging, `run8/f_${i}`)));
        }
      }
    } finally {
      await flip.stop(1000);
    }
    assert.deepEqual(readdirSync(victim), [], 'nothing placed in the victim');
    const real = lstatSync(path.join(u, 'run8')).isDirectory() ? 'run8' : 'run8x';
    assert.equal(readdirSync(path.join(u, real)).length, placed, 'every placed file in the real directory, whatever its name now');
    assert.ok(placed > 0);
  });

  it("follows a link on the way to the target only when it is root's in a directory only root can change; a user's there is moved aside", async () => {
    const ramdisk = path.join(work, 'ramdisk');
    const elsewhere = path.join(work, 'elsewhere');
    mkdirSync(ramdisk, { mode: 0o755 });
    mkdirSync(elsewhere, { mode: 0o755 });
    const link = path.join(ramdisk, 'imgdir');
    symlinkSync(elsewhere, link);
    lchownSync(link, 65534, 65534); // a user's, left from when the ramdisk was open
    const shared = new ShiftDir(path.join(ramdisk, 'imgdir/1mf'), 'users/500_501', 500, 501, log, ramdisk);
    try {
      await shared.prepare();
      assert.equal(await shared.place(stage('x.img', 'A'), 'x.img'), 'x.img');
      assert.deepEqual(readdirSync(elsewhere), [], 'nothing made through the link');
      assert.ok(lstatSync(path.join(ramdisk, 'imgdir.moved-aside-uid65534')).isSymbolicLink(), 'the link moved aside, as it was');
      assert.equal(readFileSync(path.join(ramdisk, 'imgdir/1mf/users/500_501/x.img'), 'utf8'), 'A');
      assert.match(warnings.join('\n'), /imgdir, where furkad needs a directory of its own, is a user's symbolic link: moved aside/);
      // The administrator's own link is followed.
      shared.close();
      rmSync(path.join(ramdisk, 'imgdir'), { recursive: true });
      symlinkSync(elsewhere, link);
      await shared.prepare();
      assert.equal(await shared.place(stage('y.img', 'B'), 'y.img'), 'y.img');
      assert.equal(readFileSync(path.join(elsewhere, '1mf/users/500_501/y.img'), 'utf8'), 'B');
    } finally {
      shared.close();
    }
  });

  it("refuses a user's link on the way to the target in a directory its user can change, and moves nothing there", async () => {
    const ramdisk = path.join(work, 'ramdisk');
    const elsewhere = path.join(work, 'elsewhere');
    mkdirSync(ramdisk, { mode: 0o755 });
    chownSync(ramdisk, 65534, 65534);
    mkdirSync(elsewhere, { mode: 0o755 });
    const link = path.join(ramdisk, 'imgdir');
    symlinkSync(elsewhere, link);
    lchownSync(link, 65534, 65534);
    const shared = new ShiftDir(path.join(ramdisk, 'imgdir/1mf'), 'users/500_501', 500, 501, log, ramdisk);
    try {
      await assert.rejects(shared.prepare(), /refusing to follow .*ramdisk\/imgdir: it is a symbolic link/);
      await assert.rejects(shared.place(stage('x.img', 'A'), 'x.img'), /refusing to follow/);
      assert.deepEqual(readdirSync(elsewhere), [], 'nothing made through the link');
      assert.deepEqual(readdirSync(ramdisk), ['imgdir']);
    } finally {
      shared.close();
    }
  });

  it('refuses a link planted below the shift directory between two placings, and makes the shift directory again if root deleted it', async () => {
    const u = path.join(work, 'target', '500_501');
    const victim = path.join(work, 'victim');
    mkdirSync(victim);
    assert.equal(await dir.place(stage('run1/a.img', 'A'), 'run1/a.img'), 'run1/a.img');
    rmSync(path.join(u, 'run1'), { recursive: true });
    symlinkSync(victim, path.join(u, 'run1'));
    await assert.rejects(dir.place(stage('run1/b.img', 'B'), 'run1/b.img'), /refusing to (?:follow|write through) .*500_501\/run1: it is a symbolic link/);
    assert.deepEqual(readdirSync(victim), []);
    rmSync(u, { recursive: true });
    assert.equal(await dir.place(stage('c.img', 'C'), 'c.img'), 'c.img');
    assert.equal(readFileSync(final('c.img'), 'utf8'), 'C');
  });

  it('names the directories of a placing that failed as they are, not /proc/self/fd/N (a PPU ramdisk out of inodes: lastError, F10)', async () => {
    const ramdisk = mountTmpfs(path.join(work, 'ramdisk'), 1 << 20, { inodes: 64 });
    const onRamdisk = new ShiftDir(path.join(ramdisk, 'target'), '500_501', process.getuid!(), process.getgid!(), log);
    try {
      await onRamdisk.prepare();
      const held = path.join(ramdisk, 'staging');
      mkdirSync(held);
      writeFileSync(path.join(held, 'x.img'), 'X');
      fillInodes(ramdisk);
      // Staged below a held directory (as the loop places), linked into the held shift directory: both named.
      await assert.rejects(onRamdisk.place({ root: held, rel: 'x.img' }, 'x.img'), (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'ENOSPC');
        assert.doesNotMatch(e.message, /\/proc\/self\/fd/);
        assert.ok(e.message.includes(`'${path.join(held, 'x.img')}' -> '${path.join(ramdisk, 'target', '500_501', 'x.img')}'`), e.message);
        return true;
      });
    } finally {
      onRamdisk.close();
      unmount(ramdisk);
    }
  });

  it("reaches a target an operator asked for below the configured one from there, never through a user's link on the way (S2)", async () => {
    const ramdisk = path.join(work, 'ramdisk');
    const userDir = path.join(ramdisk, '1mf', '65534_65534');
    const elsewhere = path.join(work, 'elsewhere');
    mkdirSync(userDir, { recursive: true, mode: 0o755 });
    chownSync(userDir, 65534, 65534);
    mkdirSync(elsewhere);
    // StartShift checked '<ramdisk>/1mf/65534_65534/sub/./x' as a real path; then the user swapped 'sub' for a link.
    const sub = path.join(userDir, 'sub');
    symlinkSync(elsewhere, sub);
    lchownSync(sub, 65534, 65534);
    const asked = new ShiftDir(path.join(sub, 'x'), '500_501', 500, 501, log, sub, ramdisk);
    try {
      await assert.rejects(asked.prepare(), /refusing to follow .*65534_65534\/sub: it is a symbolic link/);
      assert.deepEqual(readdirSync(elsewhere), [], 'nothing made through the link');
      unlinkSync(sub); // the link
      mkdirSync(sub);
      chownSync(sub, 65534, 65534);
      await asked.prepare();
      const owner = (p: string): number[] => { const st = lstatSync(p); return [st.uid, st.gid]; };
      assert.deepEqual(owner(userDir), [65534, 65534], 'directories above the replicated part keep their owners');
      assert.deepEqual(owner(sub), [65534, 65534]);
      assert.deepEqual(owner(path.join(sub, 'x')), [0, 0]);
      assert.deepEqual(owner(path.join(sub, 'x', '500_501')), [500, 501]);
    } finally {
      asked.close();
    }
  });
});

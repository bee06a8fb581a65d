// StartShift arguments → a shift (F6): defaults, overrides, refusals.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/common/config-file.js';
import { validateFurkadConfig, type FurkadConfig } from '../../src/furkad/config.js';
import { confinement, planShift, ShiftRequestError } from '../../src/furkad/shift.js';

const config = parseConfig('furkad.conf',
  'usrdir = $UID_$GID\n[detector.1MF]\nremoteIP = a\ntarget = /ramdisk/./1mf\nsource = /d1\n[detector.2MF]\nremoteIP = b\ntarget = /ramdisk/2mf\n',
  validateFurkadConfig);

const reason = (fn: () => unknown): string => {
  try { fn(); } catch (e) { assert.ok(e instanceof ShiftRequestError); return `${e.reason}: ${e.message}`; }
  return 'accepted';
};

describe('shift planning (F4, F6)', () => {
  // A configuration whose ramdisk exists here: /ramdisk need not on a test machine.
  let work: string;
  let ramdisk: string;
  let local: FurkadConfig;
  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'shift-plan-'));
    ramdisk = path.join(work, 'ramdisk');
    mkdirSync(path.join(ramdisk, 'sub'), { recursive: true });
    mkdirSync(path.join(work, 'outside'));
    symlinkSync(path.join(work, 'outside'), path.join(ramdisk, 'out'));
    local = parseConfig('furkad.conf', `usrdir = $UID_$GID\n[detector.1MF]\nremoteIP = a\ntarget = ${ramdisk}/./1mf\nsource = /d1\n` +
      `[detector.2MF]\nremoteIP = b\ntarget = ${ramdisk}/2mf\n`, validateFurkadConfig);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('an empty list serves every configured detector with its defaults', () => {
    const s = planShift(config, 500, 501, []);
    assert.equal(s.usrdir, '500_501');
    assert.deepEqual(s.detectors.map((d) => [d.id, d.source, d.target]),
      [['1MF', '/d1', '/ramdisk/./1mf'], ['2MF', '/', '/ramdisk/2mf/./']]);
  });

  it('empty fields fall back to the configuration; given ones override it', () => {
    // An override's parent must exist (F6), and lie where the configured target is replicated from (S2).
    const s = planShift(local, 500, 501, [['1MF', '', `${ramdisk}/other`], ['2MF', '/sub', '']]);
    assert.deepEqual(s.detectors.map((d) => [d.id, d.source, d.target]),
      [['1MF', '/d1', `${ramdisk}/other/./`], ['2MF', '/sub', `${ramdisk}/2mf/./`]]);
  });

  it('a non-empty list serves only the listed detectors', () => {
    assert.deepEqual(planShift(config, 1, 2, [['2MF', '', '']]).detectors.map((d) => d.id), ['2MF']);
  });

  it('refuses unknown detectors, duplicates, relative targets and ".." sources with a reason', () => {
    assert.match(reason(() => planShift(config, 1, 2, [['9M', '', '']])), /^UnknownDetector: unknown detector '9M', configured: 1MF, 2MF/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', ''], ['1MF', '', '']])), /^InvalidArgs: .*listed twice/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', 'rel/dir']])), /^InvalidArgs: .*absolute/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '../x', '']])), /^InvalidArgs: .*'\.\.'/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', '/no/such/./dir']])), /^NotFound: .*\/no\/such is not an existing directory/);
    assert.match(reason(() => planShift(config, 0, 2, [])), /^NotAllowed: .*allow_root_shift = no/);
  });

  it("refuses '*', '?' and '[' in an rsync detector's StartShift source, naming it; the agent's takes them (F1, S2)", () => {
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '/run?', '']])),
      /^InvalidArgs: source of detector '1MF': '\/run\?' holds '\?', which the detector's rsync daemon expands as a pattern/);
    assert.match(reason(() => planShift(local, 1, 2, [['2MF', '/r[12]', '']])), /^InvalidArgs: source of detector '2MF': '\/r\[12\]' holds '\['/);
    const agent = parseConfig<FurkadConfig>('furkad.conf', `[detector.1MF]\ntransport = agent\nremoteIP = a\ntarget = ${ramdisk}/./1mf\n`, validateFurkadConfig);
    assert.equal(planShift(agent, 1, 2, [['1MF', '/run?', '']]).detectors[0]!.source, '/run?');
  });

  it('refuses a control character in a target or source: grimseld would never copy what is placed there (F1, G2)', () => {
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/./nl\nx`]])), /^InvalidArgs: target of detector '1MF' holds a control character: ".*nl\\nx"/);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '/d\u0001', '']])), /^InvalidArgs: source of detector '1MF' holds a control character/);
  });

  it('refuses a target or source too long for the files below it, before making any directory (F6)', () => {
    const deep = `${ramdisk}/./${'a/'.repeat(600)}x`;
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', deep]])), /^InvalidArgs: target of detector '1MF' is \d+ bytes long, at most 1024/);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/./${'n'.repeat(300)}`]])),
      /^InvalidArgs: target of detector '1MF' has a name of 300 bytes, at most 255/);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', `/${'s'.repeat(256)}`, '']])), /^InvalidArgs: source of detector '1MF' has a name of 256 bytes/);
    assert.equal(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/./${'n'.repeat(255)}`]])), 'accepted');
  });

  it('refuses uid and gid beyond the config schema: 4294967295 is chown\'s "no change" (S2)', () => {
    assert.match(reason(() => planShift(config, 4294967295, 4294967295, [])), /^InvalidArgs: uid 4294967295 is out of range \(0 to 4294967294/);
    assert.match(reason(() => planShift(config, 500, 4294967295, [])), /^InvalidArgs: gid 4294967295 is out of range/);
    assert.match(reason(() => planShift(config, -1, 2, [])), /^InvalidArgs: uid -1/);
    assert.match(reason(() => planShift(config, 1.5, 2, [])), /^InvalidArgs: uid 1\.5/);
    assert.equal(planShift(config, 4294967294, 4294967294, []).usrdir, '4294967294_4294967294');
  });

  it("confines targets to where the configured target is replicated from: no '..', nothing outside, no link out (F6, S2)", () => {
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', '/r/../../../../etc/./x']])), /^InvalidArgs: .*must not contain '\.\.'/);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/../x`]])), /^InvalidArgs: .*'\.\.'/);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', '/etc/./']])), new RegExp(`^NotAllowed: .*'/etc/\\./' is outside ${ramdisk}`));
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', '/etc']])), /^NotAllowed: /);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', work]])), /^NotAllowed: /, 'the parent of the root');
    // A link below the root that leads out counts where it leads (mkdir would follow it).
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/out/./1mf`]])), /^NotAllowed: /);
    assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/out/x`]])), /^NotAllowed: /);
    // At the root, below it, with a marker anywhere below it, and not yet existing below an existing part.
    for (const t of [ramdisk, `${ramdisk}/./`, `${ramdisk}/1mf`, `${ramdisk}/./a/b`, `${ramdisk}/sub/./x`, `${ramdisk}/new`, `${ramdisk}/..x`]) {
      assert.doesNotThrow(() => planShift(local, 1, 2, [['1MF', '', t]]), t);
    }
  });

  it('with usrdir empty, refuses a target at, in or above another detector\'s, served or not; with a usrdir it may (threat model)', () => {
    const none = { ...local, usrdir: '' };
    assert.match(reason(() => planShift(none, 1, 2, [['1MF', '', `${ramdisk}/./`]])), /^NotAllowed: targets of detectors '1MF' and '2MF' lie one in the other/);
    mkdirSync(path.join(ramdisk, '2mf'));
    try {
      assert.match(reason(() => planShift(none, 1, 2, [['1MF', '', `${ramdisk}/2mf/./x`]])), /^NotAllowed: /);
    } finally {
      rmSync(path.join(ramdisk, '2mf'), { recursive: true });
    }
    assert.match(reason(() => planShift(none, 1, 2, [['1MF', '', ''], ['2MF', '', `${ramdisk}/./1mf`]])), /^NotAllowed: /);
    assert.doesNotThrow(() => planShift(none, 1, 2, [['1MF', '', `${ramdisk}/./1mf-b`]]));
    assert.doesNotThrow(() => planShift(local, 1, 2, [['1MF', '', `${ramdisk}/./`]]), 'with a usrdir each shift has a directory of its own');
  });

  it("refuses a target in furkad's staging, in a user's directory, or at a directory others may write; says which (S2, threat model)", () => {
    const users = path.join(ramdisk, 'users');
    mkdirSync(path.join(users, '1002_1002', 'full'), { recursive: true });
    chownSync(path.join(users, '1002_1002'), 1002, 1002);
    mkdirSync(path.join(ramdisk, '1mf', '.furkad-staging', '1MF'), { recursive: true, mode: 0o700 });
    const open = path.join(ramdisk, 'open');
    mkdirSync(open);
    chmodSync(open, 0o1777);
    const refused: Array<[string, RegExp]> = [
      // Its content is removed when a detector starts: a shift's files there would go before any copy.
      [`${ramdisk}/./1mf/.furkad-staging/1MF`, /lies in furkad's staging directory \.furkad-staging/],
      [`${ramdisk}/1mf/.furkad-staging/./x`, /staging/],
      // furkad would take user 1002's directories from them (made root's, as shared directories are).
      [`${ramdisk}/./users/1002_1002`, new RegExp(`${users}/1002_1002 is owned by uid 1002`)],
      [`${ramdisk}/users/1002_1002/./full`, /is owned by uid 1002/],
      [`${ramdisk}/users/1002_1002/full/new`, /is owned by uid 1002/],
      // ... or make a directory everyone may write (a ramdisk's mount point, 1777) 0755 under every user.
      [`${open}/./`, /open is writable by everyone \(mode 1777\)/],
      [`${open}/x`, /writable by everyone/],
    ];
    for (const [t, why] of refused) assert.match(reason(() => planShift(local, 1, 2, [['1MF', '', t]])), new RegExp(`^NotAllowed: .*${why.source}`), t);
    assert.equal(statSync(open).mode & 0o7777, 0o1777, 'nothing changed');
    // Below a shared directory that is root's and writable by root alone, as before.
    for (const t of [`${ramdisk}/./users/new`, `${ramdisk}/users/./x`]) assert.doesNotThrow(() => planShift(local, 1, 2, [['1MF', '', t]]), t);
  });

  it("refuses a shift whose directory is an earlier shift's target, holding furkad's staging (threat model)", () => {
    // Found by a hostile tester: target .../1mf/960_960 served shift 500:501; then shift 960:960 of the configured
    // target .../1mf was given .../1mf/960_960, staging and 500_501's directory in it, for uid 960 to rename.
    mkdirSync(path.join(ramdisk, '1mf', '960_960', '.furkad-staging', '1MF'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(ramdisk, '1mf', '960_960', '500_501'));
    assert.doesNotThrow(() => planShift(local, 500, 501, [['1MF', '', `${ramdisk}/./1mf/960_960`]]), 'as a target, as before');
    assert.match(reason(() => planShift(local, 960, 960, [['1MF', '', '']])),
      new RegExp(`^NotAllowed: detector '1MF': the shift's directory ${ramdisk}/1mf/960_960 holds furkad's \\.furkad-staging`));
    assert.equal(statSync(path.join(ramdisk, '1mf', '960_960')).uid, 0, 'nothing changed');
    assert.doesNotThrow(() => planShift(local, 961, 961, [['1MF', '', '']]));
  });

  it("refuses a shift whose directory furkad made on the way to another shift's target, root's with what is not the shift's in it; gives an empty one (threat model)", () => {
    // Found by a hostile tester: an operator named the target .../1mf/53403_100/run1 while 53403_100 did not exist;
    // furkad made both root's, staging and shift 99999's files below. Shift 53403:100 then got 53403_100, and
    // its user moved run1 aside: shift 99999's files were never copied.
    mkdirSync(path.join(ramdisk, '1mf', '53403_100', 'run1', '.furkad-staging', '1MF'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(ramdisk, '1mf', '53403_100', 'run1', '99999_100'));
    assert.match(reason(() => planShift(local, 53403, 100, [['1MF', '', '']])),
      new RegExp(`^NotAllowed: detector '1MF': the shift's directory ${ramdisk}/1mf/53403_100 is root's and holds 'run1' of root, not of this shift: ` +
        "furkad made it on the way to a detector's target, and is not given to a user"));
    assert.equal(statSync(path.join(ramdisk, '1mf', '53403_100')).uid, 0, 'nothing changed');
    // The target was that directory itself, with no staging in it (rsync, remove_source = no): another shift's
    // directory, that user's, is in it (found by review h4).
    mkdirSync(path.join(ramdisk, '1mf', '53404_100', '99999_100'), { recursive: true });
    chownSync(path.join(ramdisk, '1mf', '53404_100', '99999_100'), 99999, 100);
    assert.match(reason(() => planShift(local, 53404, 100, [['1MF', '', '']])), /53404_100 is root's and holds '99999_100' of uid 99999, not of this shift/);
    // Root's and empty (made, and a stop before it was given), or the user's own with their directories: given.
    mkdirSync(path.join(ramdisk, '1mf', '600_600'));
    assert.doesNotThrow(() => planShift(local, 600, 600, [['1MF', '', '']]));
    mkdirSync(path.join(ramdisk, '1mf', '601_601', 'run'), { recursive: true });
    chownSync(path.join(ramdisk, '1mf', '601_601', 'run'), 601, 601);
    chownSync(path.join(ramdisk, '1mf', '601_601'), 601, 601);
    assert.doesNotThrow(() => planShift(local, 601, 601, [['1MF', '', '']]));
  });

  it("refuses every StartShift target of a detector whose configured target is replicated from '/', written so or through a link (S2, F6)", () => {
    // Configurations the check refuses (config.test.ts), as a furkad started before that check would hold them.
    for (const t of ['/./ramdisk/1mf', '//./ramdisk/1mf', '/.', '/']) {
      const open = parseConfig('furkad.conf', `usrdir =\n[detector.1MF]\nremoteIP = a\ntarget = ${t}\n`, validateFurkadConfig);
      assert.match(reason(() => planShift(open, 1002, 1003, [['1MF', '', '/etc/profile.d']])),
        /^NotAllowed: target of detector '1MF': '\/etc\/profile\.d' refused: .* is replicated from \/, so a StartShift target would not be confined at all/, t);
      assert.equal(planShift(open, 1002, 1003, [['1MF', '', '']]).detectors.length, 1, 'the configured target itself is the administrator\'s');
    }
    // A link to '/' as the directory before './': the real path is '/'.
    symlinkSync('/', path.join(work, 'toroot'));
    const linked = parseConfig('furkad.conf', `[detector.1MF]\nremoteIP = a\ntarget = ${work}/toroot/./1mf\n`, validateFurkadConfig);
    assert.match(reason(() => planShift(linked, 1002, 1003, [['1MF', '', `${work}/toroot/etc/./profile.d`]])),
      new RegExp(`^NotAllowed: .*is replicated from ${work}/toroot, which leads to /`));
  });

  it("confinement: before the './' of the configured target, else its parent, never '/' for a target just below it", () => {
    assert.equal(confinement('/ramdisk/./1mf'), '/ramdisk');
    assert.equal(confinement('/data/ramdisk/./imgdir/1mf'), '/data/ramdisk');
    assert.equal(confinement('/ramdisk/ppu/1mf'), '/ramdisk/ppu');
    assert.equal(confinement('/ramdisk/ppu/1mf/'), '/ramdisk/ppu');
    assert.equal(confinement('/ramdisk'), '/ramdisk');
    assert.equal(confinement('/ramdisk/.'), '/ramdisk');
  });

  it('gives every shift a distinct, increasing start time in µs', () => {
    const a = planShift(config, 1, 2).usertime;
    const b = planShift(config, 1, 2).usertime;
    assert.ok(b > a);
    assert.ok(Math.abs(Number(a / 1000n) - Date.now()) < 60_000, 'µs since the epoch');
  });
});

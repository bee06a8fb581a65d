// Empty directories of ended shifts are removed from the ramdisk; nothing of the current shift, nothing with a
// file in it, no shared root-owned parent, and nothing reached through a link (F4, G5).
import { strict as assert } from 'node:assert';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sweepEndedShifts } from '../../src/furkad/shift-sweep.js';

describe('sweeping empty directories of ended shifts', () => {
  let target: string;
  const dir = (rel: string, uid = 500): string => {
    const p = path.join(target, rel);
    mkdirSync(p, { recursive: true });
    chownSync(p, uid, uid);
    return p;
  };
  beforeEach(() => { target = mkdtempSync(path.join(os.tmpdir(), 'sweep-')); });
  afterEach(() => rmSync(target, { recursive: true, force: true }));

  it('removes empty ended usrdirs and their empty subdirectories, keeps the current one and any with a file', () => {
    dir('500_501'); dir('500_501/run1'); dir('500_501/run1/deep');
    dir('600_601'); dir('600_601/run2');
    writeFileSync(path.join(dir('600_601/run3'), 'not-yet-copied.cbf'), 'x');
    dir('700_701'); dir('700_701/empty-run'); // current
    dir('.furkad-staging', 0); dir('.furkad-staging/1MF', 0);
    const r = sweepEndedShifts(target, '700_701');
    assert.deepEqual(r.errors, []);
    assert.equal(r.removed, 4, '500_501/run1/deep, 500_501/run1, 500_501, 600_601/run2');
    assert.equal(existsSync(path.join(target, '500_501')), false);
    assert.equal(existsSync(path.join(target, '600_601', 'run2')), false);
    assert.ok(existsSync(path.join(target, '600_601', 'run3', 'not-yet-copied.cbf')), 'a directory with a file stays');
    assert.ok(existsSync(path.join(target, '700_701', 'empty-run')), "the current shift's directories stay");
    assert.ok(existsSync(path.join(target, '.furkad-staging', '1MF')), 'staging stays');
  });

  it('with a usrdir of several components keeps the shared root-owned parents and sweeps beside the current one', () => {
    dir('users', 0); dir('users/500', 500); dir('users/600', 600); dir('users/600/r', 600);
    const r = sweepEndedShifts(target, 'users/500');
    assert.equal(r.removed, 2);
    assert.ok(existsSync(path.join(target, 'users', '500')));
    assert.equal(existsSync(path.join(target, 'users', '600')), false);
    assert.equal(sweepEndedShifts(target, 'other/1').removed, 1, 'users/500 has ended now');
    assert.ok(existsSync(path.join(target, 'users')), "'users' is root's, shared: never removed, even empty");
  });

  it('never follows a link a user planted, and sweeps nothing without a usrdir', () => {
    const victim = mkdtempSync(path.join(os.tmpdir(), 'sweep-victim-'));
    try {
      mkdirSync(path.join(victim, 'empty'));
      chownSync(path.join(victim, 'empty'), 500, 500);
      dir('500_501');
      symlinkSync(victim, path.join(target, '500_501', 'link'));
      sweepEndedShifts(target, '700_701');
      assert.ok(existsSync(path.join(victim, 'empty')), 'nothing removed through the link');
      assert.ok(existsSync(path.join(target, '500_501')), 'the usrdir holding the link is not empty');
      dir('600_601');
      assert.equal(sweepEndedShifts(target, '').removed, 0);
    } finally {
      rmSync(victim, { recursive: true, force: true });
    }
  });
});

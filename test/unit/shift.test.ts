// StartShift arguments → a shift (F6): defaults, overrides, refusals.
import { strict as assert } from 'node:assert';
import { parseConfig } from '../../src/common/config-file.js';
import { validateFurkadConfig } from '../../src/furkad/config.js';
import { planShift, ShiftRequestError } from '../../src/furkad/shift.js';

const config = parseConfig('furkad.conf',
  'usrdir = $UID_$GID\n[detector.1MF]\nremoteIP = a\ntarget = /ramdisk/./1mf\nsource = /d1\n[detector.2MF]\nremoteIP = b\ntarget = /ramdisk/2mf\n',
  validateFurkadConfig);

describe('shift planning (F4, F6)', () => {
  it('an empty list serves every configured detector with its defaults', () => {
    const s = planShift(config, 500, 501, []);
    assert.equal(s.usrdir, '500_501');
    assert.deepEqual(s.detectors.map((d) => [d.id, d.source, d.target]),
      [['1MF', '/d1', '/ramdisk/./1mf'], ['2MF', '/', '/ramdisk/2mf/./']]);
  });

  it('empty fields fall back to the configuration; given ones override it', () => {
    // An override's parent must exist (F6): /tmp does, /ramdisk need not on a test machine.
    const s = planShift(config, 500, 501, [['1MF', '', '/tmp/other'], ['2MF', '/sub', '']]);
    assert.deepEqual(s.detectors.map((d) => [d.id, d.source, d.target]),
      [['1MF', '/d1', '/tmp/other/./'], ['2MF', '/sub', '/ramdisk/2mf/./']]);
  });

  it('a non-empty list serves only the listed detectors', () => {
    assert.deepEqual(planShift(config, 1, 2, [['2MF', '', '']]).detectors.map((d) => d.id), ['2MF']);
  });

  it('refuses unknown detectors, duplicates, relative targets and ".." sources with a reason', () => {
    const reason = (fn: () => unknown): string => {
      try { fn(); } catch (e) { assert.ok(e instanceof ShiftRequestError); return `${e.reason}: ${e.message}`; }
      return 'accepted';
    };
    assert.match(reason(() => planShift(config, 1, 2, [['9M', '', '']])), /^UnknownDetector: unknown detector '9M', configured: 1MF, 2MF/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', ''], ['1MF', '', '']])), /^InvalidArgs: .*listed twice/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', 'rel/dir']])), /^InvalidArgs: .*absolute/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '../x', '']])), /^InvalidArgs: .*'\.\.'/);
    assert.match(reason(() => planShift(config, 1, 2, [['1MF', '', '/no/such/./dir']])), /^NotFound: .*\/no\/such is not an existing directory/);
    assert.match(reason(() => planShift(config, 0, 2, [])), /^NotAllowed: .*allow_root_shift = no/);
  });

  it('gives every shift a distinct, increasing start time in µs', () => {
    const a = planShift(config, 1, 2).usertime;
    const b = planShift(config, 1, 2).usertime;
    assert.ok(b > a);
    assert.ok(Math.abs(Number(a / 1000n) - Date.now()) < 60_000, 'µs since the epoch');
  });
});

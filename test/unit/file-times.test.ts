// Times set to the microsecond (F3, G3; common/file-times.ts): Node hands libuv seconds as a double, which
// lands a microsecond low about half the time without care; a copy 1 µs low across a millisecond's edge was
// never recognised as its original's copy (found by a hostile tester: originals that never left the ramdisk).
// Times before 1970: Node takes a negative number of seconds for "now"; setFileTimes hands them over as strings.
import { strict as assert } from 'node:assert';
import { closeSync, fstatSync, futimesSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cutToStep, sameCopyOf, sameSizeAndMtime, setFileTimes, storeableMtime, toMicrosecond, utimesSeconds } from '../../src/common/file-times.js';
import { NODE_READS_PRE_1970 } from '../fixtures/files.js';

describe('file times to the microsecond (F3, G3)', () => {
  let dir: string;
  let fd: number;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'file-times-'));
    fd = openSync(path.join(dir, 'f'), 'w');
  });
  after(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  const setAndRead = (ns: bigint): bigint => {
    const s = utimesSeconds(ns);
    futimesSync(fd, s, s);
    return fstatSync(fd, { bigint: true }).mtimeNs;
  };

  it("gives a file exactly the microsecond of a time, also on a millisecond's edge (the tester's file)", () => {
    assert.equal(setAndRead(1796230921708000000n), 1796230921708000000n);
    assert.equal(setAndRead(1796230921708001000n), 1796230921708001000n);
    assert.equal(setAndRead(1796230921707999999n), 1796230921707999000n, 'below the microsecond: dropped');
  });

  it('for 20 000 random times of this decade and the next, none a microsecond off', () => {
    const off: bigint[] = [];
    for (let i = 0; i < 20_000; i++) {
      const ns = 1_600_000_000_000_000_000n + BigInt(Math.floor(Math.random() * 4e8)) * 1_000_000_000n + BigInt(Math.floor(Math.random() * 1e9));
      const got = setAndRead(ns);
      if (got !== ns - (ns % 1000n)) off.push(ns);
    }
    assert.deepEqual(off.slice(0, 5), [], `${off.length} of 20000 off`);
  });

  it('gives a file a time before 1970 to the microsecond, not the current time (F3, G3; the copies got "now")', function () {
    if (!NODE_READS_PRE_1970) this.skip();
    // The tester's files: touch -d @-1, 1969-12-31 12:00 UTC, one in 1938 with nanoseconds, and 1 ns before the epoch.
    const times = [-1_000_000_000n, -43_200_000_000_000n, -1_009_843_199_876_543_219n, -1n, -999n, -1_000_001n];
    assert.deepEqual(times.map((ns) => setFileTimes(fd, ns, ns)), times.map(toMicrosecond));
    assert.deepEqual(times.map((ns) => setFileTimes(fd, ns, ns) - fstatSync(fd, { bigint: true }).mtimeNs), times.map(() => 0n), 'what the file has');
    assert.deepEqual([-1n, -999n, -1000n, -1001n, 1999n].map(toMicrosecond), [-1000n, -1000n, -1000n, -2000n, 1000n], 'the microsecond at or before');
  });

  it('for 20 000 random times from 1901 to 1970, none a microsecond off', function () {
    if (!NODE_READS_PRE_1970) this.skip();
    const off: bigint[] = [];
    for (let i = 0; i < 20_000; i++) {
      const ns = -BigInt(Math.floor(Math.random() * 2 ** 31)) * 1_000_000_000n + BigInt(Math.floor(Math.random() * 1e9));
      if (setFileTimes(fd, ns, ns) !== toMicrosecond(ns)) off.push(ns);
    }
    assert.deepEqual(off.slice(0, 5), [], `${off.length} of 20000 off`);
  });

  it('says whether a file system stored the time it was given (2 µs: what a double resolves in the year 2500)', () => {
    assert.ok(storeableMtime(-1_000_000_001n, -1_000_001_000n));
    assert.ok(storeableMtime(16_725_225_600_123_456_789n, 16_725_225_600_123_455_000n));
    assert.ok(!storeableMtime(16_725_225_600_000_000_000n, 15_032_385_535_000_000_000n), 'ext4 clamps the year 2500 to 2446');
    assert.ok(!storeableMtime(-1_000_000_000n, 1_796_230_921_708_000_000n), '"now" for a time before 1970');
  });

  it("takes a copy whose file system clamped its original's time to its edge for its copy, and nothing else (G3, G5)", () => {
    const s = (sec: number, ms = 0): { size: number; mtimeMs: number } => ({ size: 1, mtimeMs: sec * 1000 + ms });
    assert.ok(sameSizeAndMtime(s(16725225600), s(15032385535)), 'the year 2500 on ext4 (2446-05-10)');
    assert.ok(sameSizeAndMtime(s(15032385535), s(16725225600.5)), 'either way round');
    assert.ok(sameSizeAndMtime(s(4102444800), s(2 ** 31 - 1)), '2100 on a 32-bit time (2038-01-19)');
    assert.ok(sameSizeAndMtime(s(-5364662400), s(-(2 ** 31))), '1800 on ext4 (1901-12-13)');
    assert.ok(sameSizeAndMtime(s(-1), s(-1, 0.000999)) && sameSizeAndMtime(s(-43200), s(-43200)), 'before 1970 as after');
    assert.ok(!sameSizeAndMtime(s(-1), s(1796230921)), '"now" for a time before 1970 is not its copy');
    assert.ok(!sameSizeAndMtime(s(16725225600), s(15032385535, 1)), 'not a whole second: no clamp');
    assert.ok(!sameSizeAndMtime(s(2 ** 31 - 2), s(2 ** 31 - 3)), 'within 32 bits nothing is clamped');
    assert.ok(!sameSizeAndMtime(s(-5364662400), s(2 ** 31 - 1)), 'not across the epoch');
    assert.ok(!sameSizeAndMtime(s(16725225600), { size: 2, mtimeMs: 15032385535000 }), 'another size');
    assert.ok(!sameSizeAndMtime(s(16725225600), s(4000000000)), 'a whole second between 2038 and the original is no edge');
    assert.ok(sameSizeAndMtime(s(17000000000), s(16299260424)), 'xfs bigtime (2486-07-02)');
  });

  it('takes an original and its copy cut to the microsecond for the same file, across a millisecond edge too (G3)', () => {
    // As Node reads them: 1796230921.707999999 s is 1796230921708 ms as a double, its copy's .707999 is 1796230921707.999.
    assert.ok(sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 1, mtimeMs: 1796230921707.999 }));
    assert.ok(sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708.5 }, { size: 1, mtimeMs: 1796230921708.001 }), 'the same millisecond');
    assert.ok(!sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 1, mtimeMs: 1796230921707.99 }), '10 µs and another millisecond: another file');
    assert.ok(!sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 2, mtimeMs: 1796230921708 }), 'another size');
  });

  it("takes a copy whose file system keeps coarse times (exFAT, ext3, FAT) for its original's, and nothing else (G3, G5)", () => {
    const f = (ms: number, size = 1): { size: number; mtimeMs: number } => ({ size, mtimeMs: ms });
    const t = 1796230921707.8125; // .7078125 s, as a double exactly
    assert.equal(cutToStep(t, 1796230921700), 10, 'exFAT: 10 ms');
    assert.equal(cutToStep(t, 1796230921000), 1000, 'ext3, ext4 with 128-byte inodes: whole seconds');
    assert.equal(cutToStep(t, 1796230920000), 2000, 'FAT: even seconds');
    assert.equal(cutToStep(-1009843199876.544, -1009843200000), 1000, 'before 1970: cut down as well');
    assert.equal(cutToStep(t, 1796230922000), undefined, 'a time after the original is no cut of it');
    assert.equal(cutToStep(t, 1796230921701), undefined, 'nor one off every step');
    assert.equal(cutToStep(t + 2000, 1796230921000), undefined, 'nor one more than a step below it');
    assert.ok(sameCopyOf(f(1796230921000), f(t)), 'a copy on ext3 is the copy of its original');
    assert.ok(sameCopyOf(f(1796230921707.812), f(t)), 'as is an exact one');
    assert.ok(!sameCopyOf(f(t), f(1796230921000)), 'but an original with whole seconds is not the copy of a finer file (one way round only)');
    assert.ok(!sameCopyOf(f(1796230921000, 2), f(t)), 'another size');
    assert.ok(!sameSizeAndMtime(f(1796230921000), f(t)), 'the measure of two originals stays exact (furkad)');
  });
});

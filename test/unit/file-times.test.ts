// Times set to the microsecond (F3, G3; common/file-times.ts): Node hands libuv seconds as a double, which
// lands a microsecond low about half the time without care; a copy 1 µs low across a millisecond's edge was
// never recognised as its original's copy (found by a hostile tester: originals that never left the ramdisk).
import { strict as assert } from 'node:assert';
import { closeSync, fstatSync, futimesSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sameSizeAndMtime, utimesSeconds } from '../../src/common/file-times.js';

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

  it('takes an original and its copy cut to the microsecond for the same file, across a millisecond edge too (G3)', () => {
    // As Node reads them: 1796230921.707999999 s is 1796230921708 ms as a double, its copy's .707999 is 1796230921707.999.
    assert.ok(sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 1, mtimeMs: 1796230921707.999 }));
    assert.ok(sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708.5 }, { size: 1, mtimeMs: 1796230921708.001 }), 'the same millisecond');
    assert.ok(!sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 1, mtimeMs: 1796230921707.99 }), '10 µs and another millisecond: another file');
    assert.ok(!sameSizeAndMtime({ size: 1, mtimeMs: 1796230921708 }, { size: 2, mtimeMs: 1796230921708 }), 'another size');
  });
});

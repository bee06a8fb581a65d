// Which rsync compares mtimes to the nanosecond with --modify-window=-1 (mtime-precision.ts, F2): 3.1.3 and later.
// 3.1.1 and 3.1.2 accept -1 and then take any two times for the same, so a file rewritten at the same size would
// never be sent again: they must never get it (CentOS 7 ships 3.1.2).
import { strict as assert } from 'node:assert';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { comparesNanoseconds, keepsNanoseconds, rsyncComparesNanoseconds } from '../../src/furkad/mtime-precision.js';

describe('mtime precision: which rsync and which file system compare to the nanosecond (F2)', () => {
  it('takes rsync 3.1.3 and later, never 3.1.2 or before, nor what it cannot read', () => {
    for (const v of ['rsync  version 3.1.3  protocol version 31', 'rsync  version 3.2.7  protocol version 31', 'rsync  version v3.2.3  protocol version 31',
      'rsync  version 3.5.0  protocol version 32', 'rsync  version 4.0.0  protocol version 33']) assert.equal(comparesNanoseconds(v), true, v);
    for (const v of ['rsync  version 3.1.2  protocol version 31', 'rsync  version 3.1.1  protocol version 31', 'rsync  version 3.0.9  protocol version 30',
      'rsync  version 2.6.9  protocol version 29', 'openrsync: protocol version 29', '']) assert.equal(comparesNanoseconds(v), false, v);
  });

  it("asks the rsync furkad runs (rsync_path) for its version, once; one that cannot say gets whole seconds", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mtime-rsync-'));
    try {
      const fake = (name: string, version: string): string => {
        const p = path.join(dir, name);
        writeFileSync(p, `#!/bin/sh\necho "${version}" >> '${p}.asked'\necho "${version}"\n`);
        chmodSync(p, 0o755);
        return p;
      };
      const old = fake('rsync-3.1.2', 'rsync  version 3.1.2  protocol version 31');
      const recent = fake('rsync-3.2.7', 'rsync  version 3.2.7  protocol version 31');
      assert.equal(rsyncComparesNanoseconds(old), false, 'CentOS 7');
      assert.equal(rsyncComparesNanoseconds(old), false);
      assert.equal(rsyncComparesNanoseconds(recent), true);
      assert.equal(rsyncComparesNanoseconds(path.join(dir, 'no-such-rsync')), false);
      assert.equal(readFileSync(`${old}.asked`, 'utf8').split('\n').length - 1, 1, 'asked once');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves nothing of its probe in the directory it asks about', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mtime-fs-'));
    try {
      keepsNanoseconds(dir);
      assert.deepEqual(readdirSync(dir), [], 'no probe left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

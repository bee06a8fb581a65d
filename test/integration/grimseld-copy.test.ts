// One copy as grimseld makes it, on the real file system: faithful, and never a set-id program (G3).
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../fixtures/ppu.js';
import { copyAtomic } from '../../src/grimseld/copier.js';

describe('a copy to a storage (G3)', () => {
  let work: string;
  before(() => { work = tempDir('grimseld-copy'); });
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const preserve of [false, true]) {
    it(`keeps content, mtime and permissions but drops setuid/setgid bits (preserve_uid = ${preserve ? 'yes' : 'no'})`, async () => {
      const src = path.join(work, `ramdisk-${preserve}`, 'img.cbf');
      mkdirSync(path.dirname(src), { recursive: true });
      writeFileSync(src, 'a user file that claims to be a program');
      chownSync(src, 4321, 4322);
      chmodSync(src, 0o6755);
      utimesSync(src, new Date(1_700_000_000_000), new Date(1_700_000_000_000));
      const base = path.join(work, `storage-${preserve}`);
      mkdirSync(base);
      const dest = path.join(base, 'u', 'img.cbf');
      const st = statSync(src);
      const outcome = await copyAtomic(src, dest, base, { preserveUid: preserve, preserveGid: preserve }, { size: st.size, mtimeMs: st.mtimeMs });
      assert.equal(outcome, 'copied');
      const d = statSync(dest);
      assert.equal(readFileSync(dest, 'utf8'), 'a user file that claims to be a program');
      assert.equal(d.mtimeMs, st.mtimeMs);
      assert.equal(d.mode & 0o7777, 0o755, `mode ${(d.mode & 0o7777).toString(8)}: no set-id bits`);
      assert.equal(d.uid, preserve ? 4321 : 0);
    });
  }
});

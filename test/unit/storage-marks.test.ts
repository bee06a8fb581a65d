// The mark that tells a storage's disk (storage-marks.ts, G13): only root's counts.
import { strict as assert } from 'node:assert';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MARK_FILE, readMark } from '../../src/grimseld/storage-marks.js';

describe('storage marks (G13)', () => {
  let target: string;
  beforeEach(() => {
    target = mkdtempSync(path.join(os.tmpdir(), 'storage-marks-'));
  });
  afterEach(() => rmSync(target, { recursive: true, force: true }));

  it("reads root's mark, and takes a user's file of that name for none (an operator's AddFile once put one there, h6)", async () => {
    const mark = '0123456789abcdef0123456789abcdef';
    writeFileSync(path.join(target, MARK_FILE), `grimsel-storage-mark 1\n${mark}\n`);
    assert.equal(await readMark(target), mark);
    chownSync(path.join(target, MARK_FILE), 65534, 65534);
    assert.equal(await readMark(target), 'none');
  });
});

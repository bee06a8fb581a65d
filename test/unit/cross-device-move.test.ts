// A staged file moved to a keeping place on another file system (A5, I1, I3): two real tmpfs mounts, where rename(2)
// gives EXDEV. The copy is the file (bytes, owner, mode, mtime, provenance) and the staged file goes only once it is
// there; a copy that cannot be made (no room, bytes not the recorded ones) leaves the staged file as it was and no
// file under the final name.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { moveAcross, CopyMismatch } from '../../src/furkad/cross-device-move.js';
import { initProvenance, readProvenance, writeProvenance } from '../../src/common/provenance.js';
import { Checksum, prepareChecksums } from '../../src/common/checksum.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const WHEN = new Date('2026-03-01T12:00:00.123Z');

describe('moving a staged file to another file system (cross-device-move.ts; A5, I3)', () => {
  let root: string;
  let staging: string;
  let keep: string;
  before(async () => {
    await initProvenance();
    await prepareChecksums(1);
  });
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'xdev-'));
    staging = mountTmpfs(path.join(root, 'new'), 4 << 20);
    keep = mountTmpfs(path.join(root, 'old'), 1 << 20);
  });
  afterEach(() => {
    unmountAll();
    rmSync(root, { recursive: true, force: true });
  });

  /** A staged file of `data`, the old shift's (uid 500, gid 501), with its provenance: `sum` recorded as its checksum. */
  const staged = (rel: string, data: Buffer, sum = hex(data)): string => {
    const p = path.join(staging, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, data);
    chownSync(p, 500, 501);
    chmodSync(p, 0o640);
    const fd = openSync(p, 'r');
    writeProvenance(fd, { checksum: sum, shift: { startUs: 1234n, uid: 500, gid: 501 }, detector: '1MF' });
    closeSync(fd);
    utimesSync(p, WHEN, WHEN);
    return p;
  };
  const hex = (b: Buffer): string => {
    const c = new Checksum();
    c.update(b);
    return c.hexSync();
  };

  it('gives the kept copy the bytes, owner, mode, mtime and provenance of the staged file, then removes that', async () => {
    const data = randomBytes(300_000);
    const src = staged('run1/img_1.cbf', data);
    // The rename it stands in for fails here.
    assert.throws(() => renameSync(src, path.join(keep, 'x')), /EXDEV/);
    const dest = path.join(keep, 'img_1.cbf');
    await moveAcross(src, dest, path.join(keep, 'copying'));
    assert.equal(existsSync(src), false, 'the staged file removed');
    assert.deepEqual(readFileSync(dest), data);
    const st = lstatSync(dest);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777, st.mtime.getTime()], [500, 501, 0o640, WHEN.getTime()]);
    const fd = openSync(dest, 'r');
    const p = readProvenance(fd);
    closeSync(fd);
    assert.deepEqual([p?.checksum, p?.shift, p?.detector], [hex(data), { startUs: 1234n, uid: 500, gid: 501 }, '1MF']);
    assert.deepEqual(readdirSync(path.join(keep, 'copying')), [], 'no temp file left');
  });

  it('leaves the staged file as it was, and nothing under the final name, when the other file system has no room', async () => {
    const src = staged('img_2.cbf', randomBytes(2 << 20));
    const dest = path.join(keep, 'img_2.cbf');
    await assert.rejects(moveAcross(src, dest, path.join(keep, 'copying')), /ENOSPC/);
    assert.equal(lstatSync(src).size, 2 << 20);
    assert.equal(existsSync(dest), false);
    assert.deepEqual(readdirSync(path.join(keep, 'copying')), [], 'the partial copy removed');
  });

  it('moves nothing whose bytes are not those its recorded checksum says (I2)', async () => {
    const data = randomBytes(1000);
    const src = staged('img_3.cbf', data, hex(randomBytes(1000)));
    const dest = path.join(keep, 'img_3.cbf');
    await assert.rejects(moveAcross(src, dest, path.join(keep, 'copying')), CopyMismatch);
    assert.deepEqual(readFileSync(src), data);
    assert.equal(existsSync(dest), false);
  });
});

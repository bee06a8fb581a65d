// The checksum each image carries (I1) and the extended attributes that record it (I3): the same value
// `xxhsum -H2` prints, whatever pieces the bytes come in; attributes written through the open file, in the
// user namespace where the file system takes it and the trusted one on a tmpfs that does not.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checksum, checksumOfFdInPool, checksumOfFile, prepareChecksums, tagged, untagged } from '../../src/common/checksum.js';
import { initProvenance, readProvenance, writeProvenance } from '../../src/common/provenance.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const xxhsum = (file: string): string => execFileSync('xxhsum', ['-H2', file], { encoding: 'utf8' }).split(/\s+/)[0]!;

describe('checksums (I1) and provenance attributes (I3)', () => {
  let dir: string;
  before(async () => {
    await prepareChecksums(2);
    await initProvenance();
  });
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'checksum-')); });
  afterEach(() => {
    unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives each of several files hashed at once its own checksum: no read buffer is shared between them', async () => {
    // Larger than one read buffer (1 MB), so that each hash reads several times while the others do.
    const files = [3_500_001, 2_100_000, 1_048_577, 4_000_000].map((size, i) => {
      const file = path.join(dir, `many${i}`);
      writeFileSync(file, randomBytes(size));
      return file;
    });
    for (let round = 0; round < 3; round++) {
      const fds = files.map((f) => openSync(f, 'r'));
      try {
        const sums = await Promise.all(fds.map((fd) => checksumOfFdInPool(fd)));
        assert.deepEqual(sums, files.map(xxhsum));
      } finally {
        fds.forEach((fd) => closeSync(fd));
      }
    }
  });

  it('equals xxhsum -H2 for files of many sizes, fed in any pieces, with and without a prepared hasher', async () => {
    for (const size of [0, 1, 15, 16, 17, 128, 240, 241, 1023, 65_536, 1_000_003]) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}`);
      writeFileSync(file, data);
      const want = xxhsum(file);
      assert.equal(await checksumOfFile(file), want, `whole file of ${size} bytes`);
      for (let round = 0; round < 6; round++) { // more hashers than prepared: some made on demand
        const sum = new Checksum();
        for (let at = 0; at < size;) {
          const n = Math.min(size - at, 1 + Math.floor(Math.random() * 70_000));
          sum.update(data.subarray(at, at + n));
          at += n;
        }
        assert.equal(await sum.hex(), want, `${size} bytes in random pieces`);
      }
    }
  });

  it('is right for checksums made while every prepared hasher is in use, fed before and after their hasher exists', async () => {
    // A large file sent in pieces keeps its hasher for minutes: a checksum started meanwhile has none at first
    // and must take its own as soon as it exists, not keep every piece until the end.
    const data = randomBytes(3_000_001);
    const file = path.join(dir, 'f');
    writeFileSync(file, data);
    const want = xxhsum(file);
    const held = [new Checksum(), new Checksum(), new Checksum(), new Checksum()]; // two prepared, two made
    const dropped = new Checksum();
    dropped.update(data.subarray(0, 10)); // discarded before its hasher exists: that one goes to the pool, clean
    dropped.discard();
    for (const sum of held) sum.update(data.subarray(0, 1_000_000));
    await new Promise((r) => setTimeout(r, 50)); // the hashers made on demand exist now
    for (const sum of held) sum.update(data.subarray(1_000_000));
    for (const sum of held) assert.equal(await sum.hex(), want);
    const after = new Checksum();
    after.update(data);
    assert.equal(await after.hex(), want, 'a hasher from the pool afterwards starts clean');
  });

  it('tells a changed byte', async () => {
    const data = randomBytes(100_000);
    const a = new Checksum();
    a.update(data);
    data[54_321] = data[54_321]! ^ 1;
    const b = new Checksum();
    b.update(data);
    assert.notEqual(await a.hex(), await b.hex());
  });

  it('writes checksum, shift and detector as user.ppu.* on ext4 and trusted.ppu.* on tmpfs, read back the same', () => {
    const tmpfs = mountTmpfs(path.join(dir, 'tmpfs'), 1 << 20);
    for (const [where, fs] of [[dir, 'ext4'], [tmpfs, 'tmpfs']] as const) {
      const file = path.join(where, 'img.cbf');
      writeFileSync(file, 'image');
      const fd = openSync(file, 'r');
      try {
        const ns = writeProvenance(fd, { checksum: 'ab'.repeat(16), shift: { startUs: 1764500000123456n, uid: 500, gid: 501 }, detector: '1MF' });
        const kernelTakesUser = fs === 'ext4' || Number(os.release().split('.')[0]) * 100 + Number(os.release().split('.')[1]) >= 606;
        assert.equal(ns, kernelTakesUser ? 'user' : 'trusted', fs);
        const got = readProvenance(fd);
        assert.deepEqual(got, { checksum: 'ab'.repeat(16), recorded: `xxh128:${'ab'.repeat(16)}`, namespace: ns,
          shift: { startUs: 1764500000123456n, uid: 500, gid: 501 }, detector: '1MF' });
        const shown = execFileSync('getfattr', ['-d', '-m', '-', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        assert.match(shown, new RegExp(`${ns}\\.ppu\\.checksum="xxh128:${'ab'.repeat(16)}"`), `getfattr shows it on ${fs}`);
      } finally {
        closeSync(fd);
      }
    }
  });

  it('finds no provenance on a plain file, and never reads through a link', async () => {
    const file = path.join(dir, 'plain');
    writeFileSync(file, 'x');
    symlinkSync(file, path.join(dir, 'link'));
    const fd = openSync(file, 'r');
    try { assert.equal(readProvenance(fd), undefined); } finally { closeSync(fd); }
    await assert.rejects(checksumOfFile(path.join(dir, 'link')), /ELOOP/);
  });

  it('tags and untags', () => {
    assert.equal(tagged('0f'.repeat(16)), `xxh128:${'0f'.repeat(16)}`);
    assert.equal(untagged(` xxh128:${'0f'.repeat(16)}\n`), '0f'.repeat(16));
    assert.equal(untagged(`sha256:${'0f'.repeat(32)}`), undefined);
    assert.equal(untagged('xxh128:abc'), undefined);
  });
});

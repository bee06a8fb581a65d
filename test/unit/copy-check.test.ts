// A copy's bytes checked against the file's checksum (I2) and its provenance on it (I3), in the copier itself:
// a source changed in place (same size and mtime) is refused, named as the source; a copy damaged after it was
// written is refused when it is read back, named as the copy (the copier's progress callback, called after
// every chunk written and every copy flushed, is where the test damages the temp file); verify_copies = no
// checks the source as it is read instead; a file without a checksum gets the one of its read; a file of the
// same size and mtime already there is taken only when it has the file's checksum; a storage that takes no
// attributes gets its copies anyway.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChecksumMismatch, copyMany, SourceChanged, type CopyResult } from '../../src/grimseld/copier.js';
import type { CopyWork as CopyJob } from '../../src/grimseld/copy-job.js';
import { prepareCopies } from '../../src/grimseld/copy-check.js';

/** The key of copy temp names (temp-names.ts). */
const tempKey = randomBytes(32);

const WHEN = new Date('2026-03-01T12:00:00Z');
const SHIFT = { startUs: 1_772_366_400_000_000n, uid: 500, gid: 501 };

/** What `xxhsum -H2` says of a file: the value a facility computes without this project. */
function xxhsum(file: string): string {
  return execFileSync('xxhsum', ['-H2', file], { encoding: 'utf8' }).split(/\s+/)[0]!;
}

/** The ppu.* attributes of a file, by full name (root sees user.* and trusted.*). */
function attributes(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  const text = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '^(user|trusted)\\.ppu\\.', file], { encoding: 'utf8' });
  for (const line of text.split('\n')) {
    const m = /^((?:user|trusted)\.ppu\.\w+)="(.*)"$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

function result(r: CopyResult | Error | undefined): CopyResult {
  if (!r || r instanceof Error) throw r ?? new Error('no result');
  return r;
}

describe('copies checked against the checksum and stamped with their provenance (I2, I3)', () => {
  let root: string;
  let ramdisk: string;
  let storage: string;
  before(prepareCopies);
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'copy-check-'));
    ramdisk = path.join(root, 'ramdisk');
    storage = path.join(root, 'storage');
    mkdirSync(path.join(ramdisk, 'run'), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** An image of `size` random bytes; its job as the dispatcher makes it, with its checksum (`xxhsum`) unless `known` is false. */
  const image = (name: string, size: number, known = true): { job: CopyJob; sum: string; data: Buffer } => {
    const src = path.join(ramdisk, 'run', name);
    const data = randomBytes(size);
    writeFileSync(src, data);
    utimesSync(src, WHEN, WHEN);
    const st = statSync(src);
    const sum = xxhsum(src);
    return {
      sum, data,
      job: { src, root: ramdisk, dest: path.join(storage, 'run', name), expect: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev },
        sweep: false, ...(known ? { checksum: sum } : {}), provenance: { shift: SHIFT, detector: '1MF' } },
    };
  };
  const opts = { preserveUid: false, preserveGid: false, tempKey };
  /** Temp files of copies left in the storage directory of `job`. */
  const temps = (job: CopyJob): string[] => (existsSync(path.dirname(job.dest))
    ? readdirSync(path.dirname(job.dest)).filter((n) => n.startsWith(`.${path.basename(job.dest)}.grimsel-`)) : []);
  /** Changes byte 0 of the temp file being written for `job`, in place. */
  const damageTemp = (job: CopyJob): boolean => {
    const [tmp] = temps(job);
    if (!tmp) return false;
    const file = path.join(path.dirname(job.dest), tmp);
    const first = readFileSync(file).subarray(0, 1);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from([first[0]! ^ 0x01]), 0, 1, 0);
    closeSync(fd);
    return true;
  };

  it('copies, reads back, and puts checksum, shift and detector on the copy as user.ppu.* (the value xxhsum -H2 prints)', () => {
    const { job, sum, data } = image('a.cbf', 700_001);
    const r = result(copyMany([job], storage, opts)[0]);
    assert.deepEqual([r.outcome, r.dest, r.checksum, r.verified, r.attributes], ['copied', job.dest, sum, true, 'user']);
    assert.ok(readFileSync(job.dest).equals(data));
    assert.deepEqual(attributes(job.dest), {
      'user.ppu.checksum': `xxh128:${sum}`, 'user.ppu.shift': `${SHIFT.startUs}:500:501`, 'user.ppu.detector': '1MF',
    });
    assert.equal(xxhsum(job.dest), sum);
  });

  it('refuses a source changed in place with the same size and mtime: no copy, no temp file, both checksums named', () => {
    const { job, sum, data } = image('b.cbf', 300_000);
    data[150_000] = data[150_000]! ^ 0xff;
    writeFileSync(job.src, data); // the same inode, size and (below) mtime: only the bytes tell
    utimesSync(job.src, WHEN, WHEN);
    const now = xxhsum(job.src);
    const [r] = copyMany([job], storage, opts);
    assert.ok(r instanceof ChecksumMismatch, String(r));
    assert.deepEqual([r.at, r.expected, r.got], ['source', sum, now]);
    assert.match(r.message, new RegExp(`${job.src}: expected xxh128:${sum} got xxh128:${now}`));
    assert.ok(!existsSync(job.dest), 'no copy under its name');
    assert.deepEqual(temps(job), [], 'the temp copy removed');
  });

  it('refuses a copy damaged between its write and its read-back, in a batch whose other copies go through', () => {
    const a = image('c1.cbf', 100_000);
    const b = image('c2.cbf', 100_000);
    let damaged = false;
    // The first step after b's data is written: damage b's temp file, as a bad controller or memory would.
    const out = copyMany([a.job, b.job], storage, opts, () => {
      if (!damaged && temps(b.job).length > 0 && statSync(path.join(path.dirname(b.job.dest), temps(b.job)[0]!)).size === 100_000) damaged = damageTemp(b.job);
    });
    assert.ok(damaged, 'the test damaged the temp file');
    assert.equal(result(out[0]).verified, true, 'the other copy of the batch is made');
    const r = out[1];
    assert.ok(r instanceof ChecksumMismatch, String(r));
    assert.deepEqual([r.at, r.expected], ['copy', b.sum]);
    assert.notEqual(r.got, b.sum);
    assert.match(r.message, /reading back the copy for .*c2\.cbf: expected xxh128:[0-9a-f]{32} got xxh128:[0-9a-f]{32}/);
    assert.ok(!existsSync(b.job.dest), 'never under its name');
    assert.deepEqual(temps(b.job), [], 'the temp copy removed');
    assert.ok(existsSync(b.job.src), 'the source is left alone');
  });

  it('takes a source rewritten with a new mtime while it is read for a changed source (failed for good), not a mismatch', () => {
    const { job } = image('b2.cbf', 600_000);
    let rewritten = false;
    const [r] = copyMany([job], storage, opts, () => {
      if (rewritten) return;
      rewritten = true;
      writeFileSync(job.src, randomBytes(600_000)); // the same size, a new mtime: a writer at work
    });
    assert.ok(r instanceof SourceChanged && !(r instanceof ChecksumMismatch), String(r));
    assert.match(r.message, /changed while it was copied/);
    assert.deepEqual(temps(job), []);
  });

  it('with verify_copies = no reads nothing back: the source is checked as it is read, the copy not', () => {
    const a = image('d1.cbf', 50_000);
    let damaged = false;
    const [r] = copyMany([a.job], storage, { ...opts, verifyCopies: false }, () => { if (!damaged) damaged = damageTemp(a.job); });
    assert.ok(damaged);
    assert.deepEqual([result(r).outcome, result(r).verified], ['copied', false], 'not read back: not verified, and not caught');
    const b = image('d2.cbf', 50_000);
    writeFileSync(b.job.src, randomBytes(50_000));
    utimesSync(b.job.src, WHEN, WHEN);
    const [s] = copyMany([b.job], storage, { ...opts, verifyCopies: false });
    assert.ok(s instanceof ChecksumMismatch && s.at === 'source', String(s));
  });

  it("gives a file without a checksum the one of its read, checks the copy against it and puts it on the copy (an operator's file)", () => {
    const { job, sum } = image('e.cbf', 12_345, false);
    const r = result(copyMany([job], storage, opts)[0]);
    assert.deepEqual([r.checksum, r.verified], [sum, true]);
    assert.equal(attributes(job.dest)['user.ppu.checksum'], `xxh128:${sum}`);
  });

  it('takes a file of the same size and mtime already there only when it has the checksum; else the copy goes beside it', () => {
    const { job, sum, data } = image('f.cbf', 4096);
    mkdirSync(path.dirname(job.dest), { recursive: true });
    const other = Buffer.from(data);
    other[0] = other[0]! ^ 1;
    writeFileSync(job.dest, other); // another image of the same size and mtime (or a damaged copy)
    utimesSync(job.dest, WHEN, WHEN);
    const r = result(copyMany([job], storage, opts)[0]);
    assert.deepEqual([r.outcome, r.dest, r.verified], ['copied', `${job.dest}.~1~`, true]);
    assert.ok(readFileSync(job.dest).equals(other), 'the other file is kept as it was');
    const again = result(copyMany([{ ...job, sweep: true }], storage, opts)[0]);
    assert.deepEqual([again.outcome, again.dest, again.verified], ['identical', `${job.dest}.~1~`, true], 'the right copy is found, read and taken');
    const unchecked = result(copyMany([{ ...job, checksum: undefined }], storage, opts)[0]);
    // Without a checksum (an operator's file), size and mtime do not decide: the file is read, and the copy found is its own,
    // not the other file of its size and mtime, whose original would otherwise be cleaned up with no copy anywhere (G3, G12).
    assert.deepEqual([unchecked.outcome, unchecked.dest, unchecked.verified, unchecked.checksum], ['identical', `${job.dest}.~1~`, true, sum],
      'without a checksum, the read of the file finds its copy, and its checksum becomes the file\'s');
    assert.equal(xxhsum(`${job.dest}.~1~`), sum);
  });

  // Found by a hostile tester: a second version of an operator's file (or one furkad delivered without a checksum), of
  // the same name, size and mtime, was counted copied onto the first one's copy without a byte read; its original was
  // then cleaned up (G5, G6), and the new bytes were nowhere (G3, G12).
  for (const verifyCopies of [true, false]) {
    it(`reads a file without a checksum before taking a file of its size and mtime there for its copy: another version goes beside it (verify_copies = ${verifyCopies ? 'yes' : 'no'})`, () => {
      const one = image('v.cbf', 4096, false);
      const first = result(copyMany([one.job], storage, { ...opts, verifyCopies })[0]);
      assert.deepEqual([first.outcome, first.dest, first.checksum], ['copied', one.job.dest, one.sum]);
      // Version TWO: a new file of the same name, size and mtime.
      const two = image('v.cbf', 4096, false);
      const r = result(copyMany([two.job], storage, { ...opts, verifyCopies })[0]);
      assert.deepEqual([r.outcome, r.dest, r.checksum], ['copied', `${one.job.dest}.~1~`, two.sum], 'copied beside the first version, with its own checksum');
      assert.equal(xxhsum(one.job.dest), one.sum, 'the first version kept');
      assert.equal(xxhsum(`${one.job.dest}.~1~`), two.sum, 'the second version copied');
      // Delivered again (a retry, a resume after a kill): its own copy is found, read, and not made a third time.
      const again = result(copyMany([{ ...two.job, sweep: true }], storage, { ...opts, verifyCopies })[0]);
      assert.deepEqual([again.outcome, again.dest, again.checksum], ['identical', `${one.job.dest}.~1~`, two.sum], 'its own copy found');
      assert.equal(existsSync(`${one.job.dest}.~2~`), false, 'copied once');
    });
  }

  it('reads the bytes of a file of the same size and mtime on a storage without attributes (ramfs) before taking it for the copy of a file without a checksum', () => {
    const ramfs = path.join(root, 'ramfs-same');
    mkdirSync(ramfs);
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]);
    try {
      const base = path.join(ramfs, 'data');
      const dest = path.join(base, 'run', 'w.cbf');
      const one = image('w.cbf', 5000, false);
      assert.equal(result(copyMany([{ ...one.job, dest }], base, { ...opts, verifyCopies: false })[0]).outcome, 'copied');
      const two = image('w.cbf', 5000, false);
      const r = result(copyMany([{ ...two.job, dest }], base, { ...opts, verifyCopies: false })[0]);
      assert.deepEqual([r.outcome, r.dest], ['copied', `${dest}.~1~`], 'nothing recorded on the copy: its bytes tell');
      assert.deepEqual([xxhsum(dest), xxhsum(`${dest}.~1~`)], [one.sum, two.sum]);
      const again = result(copyMany([{ ...two.job, dest }], base, { ...opts, verifyCopies: false })[0]);
      assert.deepEqual([again.outcome, again.dest], ['identical', `${dest}.~1~`]);
    } finally {
      execFileSync('umount', ['-l', ramfs]);
    }
  });

  it('copies to a storage whose file system takes no extended attributes (ramfs), and says so', () => {
    const ramfs = path.join(root, 'ramfs');
    mkdirSync(ramfs);
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]);
    try {
      const { job, sum } = image('g.cbf', 10_000);
      const r = result(copyMany([{ ...job, dest: path.join(ramfs, 'data', 'run', 'g.cbf') }], path.join(ramfs, 'data'), opts)[0]);
      assert.deepEqual([r.outcome, r.verified, r.attributes], ['copied', true, 'none']);
      assert.equal(xxhsum(path.join(ramfs, 'data', 'run', 'g.cbf')), sum);
      const again = image('h.cbf', 10_000);
      const s = result(copyMany([{ ...again.job, dest: path.join(ramfs, 'data', 'run', 'h.cbf') }], path.join(ramfs, 'data'), opts)[0]);
      assert.equal(s.attributes, 'none', 'remembered for the storage');
    } finally {
      execFileSync('umount', ['-l', ramfs]);
    }
  });
});

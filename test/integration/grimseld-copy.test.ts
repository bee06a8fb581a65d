// One copy as grimseld makes it, on the real file system: faithful, and never a set-id program (G3); the
// threads that make them (BENCHMARKS.md); and a source that shrinks or grows while it is copied (G3, G12).
import { strict as assert } from 'node:assert';
import { appendFileSync, chmodSync, chownSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { callMethod } from '../../src/dbus/bus.js';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';
import { copyAtomic, copyMany, SourceChanged, type CopyResult } from '../../src/grimseld/copier.js';
import { prepareCopies } from '../../src/grimseld/copy-check.js';
import { CopyThreads } from '../../src/grimseld/copy-threads.js';
import { UnsafePath } from '../../src/common/dir-fd.js';
import { randomBytes } from 'node:crypto';

import { tempName } from '../../src/grimseld/temp-names.js';
/** The key of copy temp names (temp-names.ts). */
const tempKey = randomBytes(32);

/** Where a copy went and how (checksum and provenance: integrity.test.ts, unit/copy-check.test.ts). */
const placed = (r: CopyResult | Error): { outcome: string; dest: string } | Error => (r instanceof Error ? r : { outcome: r.outcome, dest: r.dest });

describe('a copy to a storage (G3)', () => {
  let work: string;
  before(async () => {
    work = tempDir('grimseld-copy');
    await prepareCopies();
  });
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
      const outcome = copyAtomic(src, path.dirname(src), dest, base, { preserveUid: preserve, preserveGid: preserve, tempKey }, { size: st.size, mtimeMs: st.mtimeMs });
      assert.deepEqual(placed(outcome), { outcome: 'copied', dest });
      const d = statSync(dest);
      assert.equal(readFileSync(dest, 'utf8'), 'a user file that claims to be a program');
      assert.equal(d.mtimeMs, st.mtimeMs);
      assert.equal(d.mode & 0o7777, 0o755, `mode ${(d.mode & 0o7777).toString(8)}: no set-id bits`);
      assert.equal(d.uid, preserve ? 4321 : 0);
    });
  }
});

describe('copy threads (G3, BENCHMARKS.md)', () => {
  let work: string;
  let threads: CopyThreads;
  let base: string;
  before(() => {
    work = tempDir('grimseld-threads');
    base = path.join(work, 'storage');
    mkdirSync(base);
  });
  afterEach(async () => threads.close());
  after(() => rmSync(work, { recursive: true, force: true }));

  const source = (name: string, text: string): { src: string; root: string; expect: { size: number; mtimeMs: number } } => {
    const src = path.join(work, 'ramdisk', name);
    mkdirSync(path.dirname(src), { recursive: true });
    writeFileSync(src, text);
    chownSync(src, 4321, 4322);
    utimesSync(src, new Date(1_600_000_000_000), new Date(1_600_000_000_123));
    const st = statSync(src);
    return { src, root: path.dirname(src), expect: { size: st.size, mtimeMs: st.mtimeMs } };
  };

  it('make the copy, owner and mtime kept, and report a changed source as not worth retrying', async () => {
    threads = new CopyThreads({ base, options: { preserveUid: true, preserveGid: true, tempKey } });
    const { src, root, expect } = source('a.cbf', 'frame 1');
    const dest = path.join(base, 'u', 'a.cbf');
    assert.deepEqual(placed(await threads.copy({ src, root, dest, expect, sweep: false })), { outcome: 'copied', dest });
    const d = statSync(dest);
    assert.deepEqual([readFileSync(dest, 'utf8'), d.uid, d.gid], ['frame 1', 4321, 4322]);
    assert.ok(Math.abs(d.mtimeMs - statSync(src).mtimeMs) < 0.001, `mtime ${d.mtimeMs} kept to the microsecond`);
    assert.deepEqual(placed(await threads.copy({ src, root, dest, expect, sweep: false })), { outcome: 'identical', dest });
    writeFileSync(src, 'frame 1, rewritten');
    await assert.rejects(threads.copy({ src, root, dest: path.join(base, 'u', 'b.cbf'), expect, sweep: false }), SourceChanged);
    assert.equal(readFileSync(dest, 'utf8'), 'frame 1', 'the good copy stays');
  });

  it('refuse a directory a user replaced by a link, naming it, and write nothing outside', async () => {
    threads = new CopyThreads({ base, options: { preserveUid: false, preserveGid: false, tempKey } });
    mkdirSync(path.join(work, 'elsewhere'));
    symlinkSync(path.join(work, 'elsewhere'), path.join(base, 'trap'));
    const { src, root, expect } = source('c.cbf', 'frame 3');
    await assert.rejects(threads.copy({ src, root, dest: path.join(base, 'trap', 'c.cbf'), expect, sweep: false }),
      (e: Error) => e instanceof UnsafePath && e.message.includes(path.join(base, 'trap')));
    assert.deepEqual(readdirSync(path.join(work, 'elsewhere')), []);
  });

  it('end a thread that has had nothing to do, and start one again for the next copy', async () => {
    threads = new CopyThreads({ base, options: { preserveUid: false, preserveGid: false, tempKey } }, 200);
    const { src, root, expect } = source('d.cbf', 'frame 4');
    await threads.copy({ src, root, dest: path.join(base, 'v', 'd.cbf'), expect, sweep: false });
    assert.equal(threads.size, 1);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(threads.size, 0, 'an idle copy thread costs memory: it must end');
    assert.equal((await threads.copy({ src, root, dest: path.join(base, 'v', 'e.cbf'), expect, sweep: false })).outcome, 'copied');
  });

  it('run as many copies at once as it is given', async () => {
    threads = new CopyThreads({ base, options: { preserveUid: false, preserveGid: false, tempKey } });
    const jobs = Array.from({ length: 4 }, (_, i) => ({ ...source(`p${i}.cbf`, `frame p${i}`), dest: path.join(base, 'w', `p${i}.cbf`), sweep: false }));
    assert.deepEqual((await Promise.all(jobs.map((j) => threads.copy(j)))).map((r) => r.outcome), ['copied', 'copied', 'copied', 'copied']);
    assert.equal(threads.size, 4);
    for (const j of jobs) assert.equal(readFileSync(j.dest, 'utf8'), readFileSync(j.src, 'utf8'));
  });
});

describe('a batch of copies (G3, BENCHMARKS.md)', () => {
  let work: string;
  before(async () => {
    work = tempDir('grimseld-batch');
    await prepareCopies();
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('copies the good files of a batch, fails only the changed one, and leaves no temp file', () => {
    const ramdisk = path.join(work, 'ramdisk');
    const base = path.join(work, 'storage');
    mkdirSync(ramdisk);
    const jobs = ['a', 'b', 'c', 'd'].map((n) => {
      const src = path.join(ramdisk, `${n}.cbf`);
      writeFileSync(src, `frame ${n}`);
      const st = statSync(src);
      return { src, root: ramdisk, dest: path.join(base, 'u', `${n}.cbf`), expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: false };
    });
    writeFileSync(jobs[2]!.src, 'frame c, rewritten after delivery');
    const outcomes = copyMany(jobs, base, { preserveUid: false, preserveGid: false, tempKey });
    assert.deepEqual(outcomes.map((o) => (o instanceof Error ? o.constructor.name : o.outcome)), ['copied', 'copied', 'SourceChanged', 'copied']);
    assert.deepEqual(readdirSync(path.join(base, 'u')).sort(), ['a.cbf', 'b.cbf', 'd.cbf'], 'no temp name, no copy of the changed file');
    for (const j of [jobs[0]!, jobs[1]!, jobs[3]!]) assert.equal(readFileSync(j.dest, 'utf8'), readFileSync(j.src, 'utf8'));
    assert.deepEqual(copyMany(jobs.filter((_, i) => i !== 2), base, { preserveUid: false, preserveGid: false, tempKey }).map((o) => (o instanceof Error ? o : o.outcome)), ['identical', 'identical', 'identical']);
  });

  it('never renames a copy into place when its source changed after it was read (G3)', () => {
    // Job 2's source is rewritten once both are written and before they are renamed into place, exactly
    // what a writer rewriting a file while grimseld copies it does.
    const dir = path.join(work, 'overlap');
    mkdirSync(dir);
    const a = path.join(dir, 'a.cbf');
    const b = path.join(dir, 'b.cbf');
    writeFileSync(a, 'frame a, longer than b');
    writeFileSync(b, 'frame b');
    const id = (f: string): { size: number; mtimeMs: number } => { const st = statSync(f); return { size: st.size, mtimeMs: st.mtimeMs }; };
    const jobs = [
      { src: a, root: dir, dest: path.join(dir, 'copies', 'a.cbf'), expect: id(a), sweep: false },
      { src: b, root: dir, dest: path.join(dir, 'copies', 'b.cbf'), expect: id(b), sweep: false },
    ];
    let steps = 0;
    const outcomes = copyMany(jobs, dir, { preserveUid: false, preserveGid: false, tempKey }, () => {
      if (++steps === 2) writeFileSync(b, 'frame b, rewritten');
    });
    assert.equal((outcomes[0] as { outcome: string }).outcome, 'copied');
    assert.ok(outcomes[1] instanceof SourceChanged && /changed while it was copied/.test(outcomes[1].message), String(outcomes[1]));
    assert.deepEqual(readdirSync(path.join(dir, 'copies')), ['a.cbf'], 'no b.cbf and no temp file');
  });

  it('never replaces a different file under the destination: the copy goes beside it as NAME.~1~ (G3, G12)', () => {
    const dir = path.join(work, 'taken');
    const copies = path.join(dir, 'storage', 'u');
    mkdirSync(copies, { recursive: true });
    const frame = (name: string, text: string, mtimeMs: number): { src: string; root: string; expect: { size: number; mtimeMs: number } } => {
      const src = path.join(dir, name);
      writeFileSync(src, text);
      utimesSync(src, new Date(mtimeMs), new Date(mtimeMs));
      const st = statSync(src);
      return { src, root: dir, expect: { size: st.size, mtimeMs: st.mtimeMs } };
    };
    const dest = path.join(copies, 'x_00000.img');
    writeFileSync(dest, 'shift A: frame 0');
    const b = { ...frame('b', 'shift B: frame 0', 1_700_000_001_000), dest, sweep: false };
    const opts = { preserveUid: false, preserveGid: false, tempKey };
    assert.deepEqual(copyMany([b], path.join(dir, 'storage'), opts).map(placed), [{ outcome: 'copied', dest: `${dest}.~1~` }]);
    assert.deepEqual([readFileSync(dest, 'utf8'), readFileSync(`${dest}.~1~`, 'utf8')], ['shift A: frame 0', 'shift B: frame 0']);
    // Copied again (killed after linking it into place, before its temp name was removed and its result
    // journaled): found beside the other file, not copied a third time, and the temp name swept.
    linkSync(`${dest}.~1~`, path.join(copies, tempName(tempKey, 'x_00000.img')));
    assert.deepEqual(copyMany([{ ...b, sweep: true }], path.join(dir, 'storage'), opts).map(placed), [{ outcome: 'identical', dest: `${dest}.~1~` }]);
    assert.deepEqual(readdirSync(copies).sort(), ['x_00000.img', 'x_00000.img.~1~']);
    // Two pending files of one destination in one batch: both written, the second takes the next name.
    const c = { ...frame('c', 'shift C: frame 0', 1_700_000_002_000), dest, sweep: false };
    const d = { ...frame('d', 'shift D: frame 0, longer', 1_700_000_003_000), dest, sweep: false };
    assert.deepEqual(copyMany([c, d], path.join(dir, 'storage'), opts).map((o) => (o instanceof Error ? o.message : o.dest)), [`${dest}.~2~`, `${dest}.~3~`]);
    assert.deepEqual(readdirSync(copies).sort(), ['x_00000.img', 'x_00000.img.~1~', 'x_00000.img.~2~', 'x_00000.img.~3~'], 'four files, no temp file');
    assert.equal(readFileSync(`${dest}.~3~`, 'utf8'), 'shift D: frame 0, longer');
    // Not a regular file under the name (a link planted, or one grimseld made, G7): kept, the copy beside it.
    const linked = path.join(copies, 'y.img');
    symlinkSync(path.join(dir, 'b'), linked);
    assert.deepEqual(copyMany([{ ...c, dest: linked }], path.join(dir, 'storage'), opts).map(placed), [{ outcome: 'copied', dest: `${linked}.~1~` }]);
    assert.equal(readFileSync(path.join(dir, 'b'), 'utf8'), 'shift B: frame 0', 'nothing written through the link');
  });
});

describe('a source that changes size while it is copied (G3, G12)', () => {
  let work: string;
  before(async () => {
    work = tempDir('grimseld-resize');
    await prepareCopies();
  });
  after(() => rmSync(work, { recursive: true, force: true }));
  const opts = { preserveUid: false, preserveGid: false, tempKey };
  const job = (name: string, bytes: number): { src: string; root: string; dest: string; expect: { size: number; mtimeMs: number }; sweep: boolean } => {
    const src = path.join(work, 'ramdisk', name);
    mkdirSync(path.dirname(src), { recursive: true });
    writeFileSync(src, Buffer.alloc(bytes, 1));
    const st = statSync(src);
    return { src, root: path.dirname(src), dest: path.join(work, 'storage', name), expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: false };
  };

  it('ends the copy of a file truncated after its first chunk as a changed source, leaving nothing', () => {
    const j = job('shrinks.img', 4 << 20);
    let steps = 0;
    const [r] = copyMany([j], path.join(work, 'storage'), opts, () => { if (steps++ === 0) truncateSync(j.src, 1000); });
    assert.ok(r instanceof SourceChanged && /ended after \d+ of its 4194304 bytes/.test(r.message), String(r));
    assert.deepEqual(readdirSync(path.join(work, 'storage')), [], 'no copy, no temp file');
  });

  it('copies no more than the delivered size of a file that grows meanwhile, and does not rename it into place', () => {
    const j = job('grows.img', 4 << 20);
    let steps = 0;
    const [r] = copyMany([j], path.join(work, 'storage'), opts, () => {
      steps++;
      appendFileSync(j.src, Buffer.alloc(1 << 20, 2)); // a writer faster than the copy: it would never catch up
    });
    assert.ok(r instanceof SourceChanged && /changed while it was copied/.test(r.message), String(r));
    assert.ok(steps <= 36, `${steps} steps: the copy stopped at the delivered 4 MB (16 chunks written, a flush, 16 read back, I2)`);
    assert.ok(!existsSync(j.dest));
  });

  it('ends the copy of a /sys file that reports more bytes than it has', () => {
    const st = statSync('/sys/kernel/uevent_seqnum');
    const r = copyMany([{ src: '/sys/kernel/uevent_seqnum', root: '/sys/kernel', dest: path.join(work, 'storage', 'seqnum'), expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: false }],
      path.join(work, 'storage'), opts)[0];
    assert.ok(r instanceof SourceChanged, String(r));
  });
});

describe('a source that shrinks while grimseld copies it (G3, G12)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  const internal = (): string => path.join(ppu.storageRoot, 'internal');
  /** This shift's row for the internal storage: [pending, copied, failed]. */
  const counts = async (): Promise<bigint[]> => {
    const row = (await ppu.queryStatus(1)).find((r) => r[3] === 'internal');
    return row ? [row[4], row[5], row[6]] : [];
  };
  before(async () => {
    // One writer: a copy thread that never comes back would hold every later file of the storage.
    ppu = new Ppu({ prefix: 'ppu-shrink' });
    ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target: internal(), n_copy_processes: 1 } };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('ends the copy of a /sys file that claims more bytes than it has, and of a file truncated mid-copy, then copies the next file', async () => {
    const grimsel = await ppu.grimsel();
    const [pending0, copied0, failed0] = await counts();
    // A 200 MB file on a tmpfs, truncated by its owner once grimseld's copy of it has begun.
    const big = path.join(mountTmpfs(path.join(ppu.work, 'user-tmpfs'), 256 << 20), 'big.img');
    writeFileSync(big, Buffer.alloc(200 << 20, 7));
    await callMethod(grimsel, 'AddFile', `${path.dirname(big)}/./big.img`);
    const copying = (): boolean => {
      const tmp = (existsSync(internal()) ? readdirSync(internal()) : []).find((n) => n.startsWith('.big.img.grimsel-'));
      return tmp !== undefined && (statSync(path.join(internal(), tmp), { throwIfNoEntry: false })?.size ?? 0) > 0;
    };
    // Polled without a pause: the copy takes a fraction of a second.
    for (const end = Date.now() + 20_000; !copying(); await new Promise(setImmediate)) {
      assert.ok(Date.now() < end, 'the copy of big.img began within 20 s');
    }
    truncateSync(big, 1 << 20);
    // sysfs says 4096 bytes and gives a few: the copy used to wait for the rest, at 100 % CPU, for ever.
    assert.equal(statSync('/sys/kernel/uevent_seqnum').size, 4096, 'this kernel still reports a sysfs attribute as 4096 bytes');
    await callMethod(grimsel, 'AddFile', '/sys/kernel/./uevent_seqnum');

    await eventually(async () => {
      const [pending, , failed] = await counts();
      return pending === pending0 && failed === failed0! + 2n;
    }, 30_000, 'both copies to end as failed (the sources are not the delivered files any more)');
    assert.ok(!existsSync(path.join(internal(), 'uevent_seqnum')) && !existsSync(path.join(internal(), 'big.img')),
      'no copy of a source that changed under a final name');
    assert.deepEqual(listFiles(internal()).filter((f) => f.includes('.grimsel-')), [], 'no temp file left');
    await ppu.grimseld!.proc.said(/big\.img ended after \d+ of its 209715200 bytes/); // big.img shrank mid-copy

    // A later ordinary file of the same storage (one writer) is copied: nothing is left wedged.
    const dir = path.join(ppu.work, 'op');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'after.dat'), 'the next file');
    await callMethod(grimsel, 'AddFile', `${dir}/./after.dat`);
    await eventually(() => existsSync(path.join(internal(), 'after.dat')), 20_000, 'the next file copied');
    assert.equal(readFileSync(path.join(internal(), 'after.dat'), 'utf8'), 'the next file');
    assert.equal((await counts())[1], copied0! + 1n);
  });
});

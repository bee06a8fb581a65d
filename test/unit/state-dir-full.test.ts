// A full state directory (a full /var) on a real tmpfs: an append that does not fit is refused whole and leaves
// the file ending with a complete line; a compaction that does not fit never replaces the journal. A bare write()
// stored part of a batch and said nothing: the records behind the tear were lost while their callers were told
// "stored", the next append glued onto the torn line, and the journal refused every later start (G12).
import { strict as assert } from 'node:assert';
import { closeSync, existsSync, ftruncateSync, fstatSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog, type NewFile } from '../../src/grimseld/catalog.js';
import { Outbox } from '../../src/furkad/outbox.js';
import { keepRunningShift } from '../../src/furkad/shift-resume.js';
import type { Shift } from '../../src/furkad/shift.js';
import type { DeliveredFile } from '../../src/dbus/intake-interface.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const PAGE = 4096;
const longName = (n: number): string => `/ramdisk/1mf/${'sample-'.repeat(12)}/f${String(n).padStart(5, '0')}.cbf`;
const file = (n: number): NewFile => ({ src: longName(n), rel: longName(n).slice('/ramdisk/'.length), size: n, mtimeMs: n, ino: n, dev: 1 });

/** Fills the file system of `dir` with `dir/filler`, then gives back one page: the next append fits only in part. */
function fillAllButOnePage(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = openSync(filler, 'w');
  const block = Buffer.alloc(PAGE, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  }
  ftruncateSync(fd, Math.max(0, fstatSync(fd).size - PAGE));
  closeSync(fd);
  return filler;
}

/** Every line of `file` is complete JSON. */
function readLines(file: string): Array<Record<string, unknown>> {
  const text = readFileSync(file, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), `${file} ends in a torn line`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('a full state directory (G12)', () => {
  let base: string;
  let dir: string;
  beforeEach(() => {
    base = mkdtempSync(path.join(os.tmpdir(), 'state-full-'));
    dir = mountTmpfs(path.join(base, 'state'), 256 * 1024);
  });
  afterEach(() => {
    unmountAll();
    rmSync(base, { recursive: true, force: true });
  });

  const openCatalog = async (): Promise<{ journal: Journal; catalog: Catalog }> => {
    const { journal, records } = await Journal.open(dir);
    const catalog = new Catalog(journal, { storages: ['internal'], historyMaxEntries: 50, ramdiskRoot: '/ramdisk', hasExternal: false });
    catalog.replay(records);
    return { journal, catalog };
  };
  const pending = (c: Catalog): number => Number(c.shifts.query(-1)[0]![4]);

  it('grimseld refuses a batch of deliveries that does not fit, keeps the journal whole, and starts again', async () => {
    const a = await openCatalog();
    await a.catalog.shift(1n, 500, 500);
    await a.catalog.accept(1n, [file(1), file(2)]);
    const filler = fillAllButOnePage(dir);
    const batch = Array.from({ length: 100 }, (_, i) => file(100 + i));
    await assert.rejects(a.catalog.accept(1n, batch), /ENOSPC/, 'furkad is told: it keeps the files and delivers them again');
    const lines = readLines(path.join(dir, 'journal.jsonl'));
    assert.deepEqual(lines.filter((l) => l.t === 'file').map((l) => l.size), [1, 2], 'no record of the refused batch');
    assert.equal(pending(a.catalog), 2, 'the status counts only what was taken');
    unlinkSync(filler);
    assert.equal((await a.catalog.accept(1n, batch)).length, 100, 'delivered again: taken now, not "known"');
    await a.catalog.accept(1n, [file(3)]);
    assert.equal(pending(a.catalog), 103);
    await a.journal.close();
    const b = await openCatalog();
    assert.equal(pending(b.catalog), 103, 'replayed: the same files');
    await b.journal.close();
  });

  it('grimseld tells a second delivery of the same files what it tells the first when their batch does not fit', async () => {
    const a = await openCatalog();
    await a.catalog.shift(1n, 500, 500);
    const filler = fillAllButOnePage(dir);
    const batch = Array.from({ length: 100 }, (_, i) => file(100 + i));
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    // At once (the second joins the batch still buffered), and two turns later (the batch is being written).
    for (const wait of [async () => undefined, async () => { await turn(); await turn(); }]) {
      const first = a.catalog.accept(1n, batch);
      await wait();
      const second = a.catalog.accept(1n, batch);
      await assert.rejects(first, /ENOSPC/);
      await assert.rejects(second, 'the second caller is not told its files are safe');
    }
    unlinkSync(filler);
    assert.equal((await a.catalog.accept(1n, batch)).length, 100, 'taken once there is room');
    await a.journal.close();
  });

  it('grimseld keeps its journal when the compacted one does not fit, and leaves no half snapshot behind', async () => {
    const a = await openCatalog();
    await a.catalog.shift(1n, 500, 500);
    await a.catalog.accept(1n, Array.from({ length: 300 }, (_, i) => file(i)));
    const before = readFileSync(path.join(dir, 'journal.jsonl'), 'utf8');
    fillAllButOnePage(dir);
    await assert.rejects(a.journal.compact(() => a.catalog.snapshot()), /ENOSPC/);
    assert.equal(readFileSync(path.join(dir, 'journal.jsonl'), 'utf8'), before, 'the journal as it was');
    assert.deepEqual(readdirSync(dir).sort(), ['filler', 'journal.jsonl']);
    await a.journal.close();
    const b = await openCatalog();
    assert.equal(pending(b.catalog), 300);
    await b.journal.close();
  });

  it("furkad keeps the running shift it goes on with on a full state_dir, and leaves no side file when a new one does not fit (F6)", () => {
    const shiftOf = (usertime: bigint): Shift => ({ usertime, uid: 500, gid: 501, usrdir: '500_501', detectors: [], requested: [] } as unknown as Shift);
    keepRunningShift(dir, shiftOf(1n), '2000:2000:$UID_$GID');
    const kept = readFileSync(path.join(dir, 'running-shift.json'), 'utf8');
    const filler = path.join(dir, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(PAGE, 1));
    } catch { /* full */ }
    closeSync(fd);
    keepRunningShift(dir, shiftOf(1n), '2000:2000:$UID_$GID'); // the same shift, as a restarted furkad keeps it: no write
    assert.throws(() => keepRunningShift(dir, shiftOf(2n), '2000:2000:$UID_$GID'), /ENOSPC/);
    assert.equal(readFileSync(path.join(dir, 'running-shift.json'), 'utf8'), kept, 'the kept shift stands');
    assert.deepEqual(readdirSync(dir).sort(), ['filler', 'running-shift.json'], 'no side file left');
  });

  it("furkad's outbox refuses a note that does not fit and still reads every note after a restart", () => {
    const { outbox } = Outbox.open(dir);
    const files = (from: number, n: number): DeliveredFile[] => Array.from({ length: n }, (_, i) => [longName(from + i), '', 'det1']);
    const first = outbox.note(1n, 500, 500, files(0, 2));
    const filler = fillAllButOnePage(dir);
    assert.throws(() => outbox.note(1n, 500, 500, files(100, 200)), /ENOSPC/);
    readLines(path.join(dir, 'outbox.jsonl'));
    unlinkSync(filler);
    const third = outbox.note(1n, 500, 500, files(300, 1));
    outbox.close();
    const { unacked } = Outbox.open(dir);
    assert.deepEqual(unacked.map((u) => [u.id, u.files.length]), [[first, 2], [third, 1]]);
    assert.ok(existsSync(path.join(dir, 'outbox.jsonl')));
  });
});

// G9: the status keeps the last history_max_entries shifts, and an older one only as long as files of it are still
// to be copied (pending, or failed and to be tried again); the same after a restart. One let go that late files come for
// is shown with what it counted before (the last history_max_entries let go), across compaction and restarts.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ShiftBook } from '../../src/grimseld/shift-book.js';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog } from '../../src/grimseld/catalog.js';
import type { NewFile } from '../../src/grimseld/file-record.js';

const shifts = (book: Pick<ShiftBook, 'query'>): bigint[] => [...new Set(book.query(-1).map((r) => r[0]))].reverse();
const file = (n: number): NewFile => ({ src: `/ramdisk/1mf/f${n}.cbf`, rel: `1mf/f${n}.cbf`, size: 1, mtimeMs: 1, ino: n, dev: 1 });

describe('shift book (G9)', () => {
  let dir: string;
  let journal: Journal | undefined;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'shift-book-')); });
  afterEach(async () => {
    await journal?.close();
    journal = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  /** A catalog on the journal in `dir`, as grimseld opens it at start (a second call: a restart). */
  const open = async (max: number, storages = ['internal']): Promise<Catalog> => {
    await journal?.close();
    const opened = await Journal.open(dir);
    journal = opened.journal;
    const catalog = new Catalog(journal, { storages, historyMaxEntries: max, ramdiskRoot: '/ramdisk', hasExternal: false });
    catalog.replay(opened.records);
    return catalog;
  };

  it('keeps the last shifts whatever their files do, and an older one until its last file is copied', () => {
    const book = new ShiftBook(['internal'], 2);
    book.begin(1n, 500, 500);
    book.opened(1n, 1);
    for (const t of [2n, 3n]) {
      book.begin(t, 500, 500);
      book.trim();
    }
    assert.deepEqual(shifts(book), [1n, 2n, 3n], 'shift 1 has a file to copy');
    book.begin(4n, 500, 500);
    book.trim();
    assert.deepEqual(shifts(book), [1n, 3n, 4n], 'shift 2 is older than the last two and has nothing to copy');
    book.opened(1n, -1);
    assert.deepEqual(shifts(book), [3n, 4n], 'shift 1 done: within the limit again');
  });

  it('does not drop a shift among the last ones when its files are done, nor the current one', () => {
    const book = new ShiftBook(['internal'], 2);
    for (const t of [1n, 2n, 3n]) {
      book.begin(t, 500, 500);
      book.opened(t, 1);
      book.trim();
    }
    book.opened(2n, -1);
    assert.deepEqual(shifts(book), [1n, 2n, 3n], 'shift 2 is one of the last two: it stays for its late files');
    const one = new ShiftBook(['internal'], 1);
    one.begin(1n, 500, 500);
    one.begin(2n, 500, 500);
    one.trim();
    assert.deepEqual(shifts(one), [2n]);
    assert.equal(one.current?.usertime, 2n);
  });

  it('counts a late file of a shift it had let go under that shift until copied, without a new shift start', async () => {
    const catalog = await open(1);
    assert.equal(await catalog.shift(1n, 500, 500), true);
    assert.equal(await catalog.shift(2n, 501, 501), true);
    assert.deepEqual(shifts(catalog.shifts), [2n]);
    assert.equal(await catalog.shift(1n, 500, 500), false, 'not a shift start');
    const [rec] = await catalog.accept(1n, [file(1)]);
    assert.deepEqual(catalog.shifts.query(-1).map((r) => [r[0], Number(r[4])]), [[2n, 0], [1n, 1]]);
    assert.equal(catalog.currentShift?.usertime, 2n, 'the current shift stays the current one');
    await catalog.setCopy(rec!, 'internal', 'copied');
    assert.deepEqual(shifts(catalog.shifts), [2n], 'copied: shift 1 goes again');
  });

  it('keeps an older shift while a failed copy is to be tried again, and counts the retry', async () => {
    const catalog = await open(1);
    await catalog.shift(1n, 500, 500);
    const [rec] = await catalog.accept(1n, [file(1)]);
    await catalog.shift(2n, 501, 501);
    await catalog.setCopy(rec!, 'internal', 'failed', { permanent: false });
    assert.deepEqual(catalog.shifts.query(-1).map((r) => [r[0], Number(r[4]), Number(r[5]), Number(r[6])]),
      [[2n, 0, 0, 0], [1n, 0, 0, 1]], 'failed for now, kept');
    await catalog.setCopy(rec!, 'internal', 'copied');
    assert.deepEqual(shifts(catalog.shifts), [2n], 'copied on the retry: shift 1 goes');
    const [late] = await catalog.accept(2n, [file(2)]);
    await catalog.setCopy(late!, 'internal', 'failed', { permanent: true });
    assert.deepEqual(shifts(catalog.shifts), [2n]);
  });

  /** Per shift, newest first: [shift, pending, copied, failed] (one storage). */
  const counts = (c: Catalog): Array<[bigint, number, number, number]> =>
    c.shifts.query(-1).map((r) => [r[0], Number(r[4]), Number(r[5]), Number(r[6])]);
  /** Compacts the journal as grimseld does every 10 s (pruneSettled, then the snapshot) and restarts on it. */
  const compactAndRestart = async (c: Catalog, max: number): Promise<Catalog> => {
    c.pruneSettled();
    await journal!.compact(() => c.snapshot());
    return open(max);
  };

  it('shows a shift it had let go with what it copied before when late files come, across compaction and restarts (G9, G12)', async () => {
    let catalog = await open(1);
    await catalog.shift(1n, 500, 500);
    const [a, b, c] = await catalog.accept(1n, [file(1), file(2), file(3)]);
    await catalog.setCopy(a!, 'internal', 'copied');
    await catalog.setCopy(b!, 'internal', 'copied');
    await catalog.setCopy(c!, 'internal', 'failed', { permanent: true });
    await catalog.setOrigin(a!, 'ramdisk', 'deleted'); // settled; b's original is still on the ramdisk (live)
    await catalog.setOrigin(c!, 'ramdisk', 'gone');
    await catalog.shift(2n, 501, 501);
    assert.deepEqual(shifts(catalog.shifts), [2n], 'shift 1 left the history');
    catalog = await compactAndRestart(catalog, 1);
    assert.deepEqual(shifts(catalog.shifts), [2n], 'and stays out of it after a restart');
    assert.equal(await catalog.shift(1n, 500, 500), false);
    const [late] = await catalog.accept(1n, [file(4)]);
    assert.deepEqual(counts(catalog), [[2n, 0, 0, 0], [1n, 1, 2, 1]], 'the late file beside the copies made before');
    catalog = await compactAndRestart(catalog, 1);
    assert.deepEqual(counts(catalog), [[2n, 0, 0, 0], [1n, 1, 2, 1]], 'the same after a restart');
    await catalog.setCopy(catalog.record(late!.id)!, 'internal', 'copied');
    assert.deepEqual(shifts(catalog.shifts), [2n], 'copied: shift 1 goes again');
    catalog = await compactAndRestart(catalog, 1);
    await catalog.shift(1n, 500, 500);
    await catalog.accept(1n, [file(5)]);
    assert.deepEqual(counts(catalog), [[2n, 0, 0, 0], [1n, 1, 3, 1]], 'back once more, every copy still counted');
  });

  it('keeps the counts of as many shifts that left the history as history_max_entries, no more, across compaction (G9)', async () => {
    let catalog = await open(2);
    for (const t of [1n, 2n, 3n, 4n, 5n, 6n]) {
      await catalog.shift(t, 500, 500);
      const [rec] = await catalog.accept(t, [{ ...file(Number(t)), src: `/elsewhere/f${t}` }]);
      await catalog.setCopy(rec!, 'internal', 'copied');
    }
    catalog.pruneSettled();
    assert.deepEqual(shifts(catalog.shifts), [5n, 6n]);
    catalog = await compactAndRestart(catalog, 2);
    const lines = readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"t":"shift"'));
    assert.equal(lines.length, 4, 'the two shown and the two let go last: the journal does not grow with every shift');
    assert.deepEqual(shifts(catalog.shifts), [5n, 6n], 'the status shows the history only');
    for (const t of [1n, 2n, 3n, 4n]) {
      await catalog.shift(t, 500, 500);
      await catalog.accept(t, [file(10 + Number(t))]);
    }
    assert.deepEqual(counts(catalog), [[6n, 0, 1, 0], [5n, 0, 1, 0], [4n, 1, 1, 0], [3n, 1, 1, 0], [2n, 1, 0, 0], [1n, 1, 0, 0]],
      'shifts 3 and 4 with their earlier copies; 1 and 2 were let go too long ago: their late files only');
  });

  it('shows after a restart the shifts it showed before it (G9, G12)', async () => {
    let catalog = await open(2);
    await catalog.shift(1n, 500, 500);
    const [a] = await catalog.accept(1n, [file(1)]);
    await catalog.shift(2n, 501, 501);
    await catalog.shift(3n, 502, 502);
    const rows = (c: Catalog): Array<[bigint, number]> => c.shifts.query(-1).map((r) => [r[0], Number(r[4])]);
    assert.deepEqual(rows(catalog), [[3n, 0], [2n, 0], [1n, 1]], 'shift 1 kept for its pending file');
    catalog = await open(2);
    assert.deepEqual(rows(catalog), [[3n, 0], [2n, 0], [1n, 1]], 'the same after a restart');
    await catalog.setCopy(catalog.record(a!.id)!, 'internal', 'copied');
    assert.deepEqual(rows(catalog), [[3n, 0], [2n, 0]]);
    catalog = await open(2);
    assert.deepEqual(rows(catalog), [[3n, 0], [2n, 0]], 'and after the next restart');
  });
});

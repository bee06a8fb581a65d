// G9: the status keeps the last history_max_entries shifts; one kept beyond that only for its pending files is
// dropped as soon as the last of them settles, not at some later shift's start.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ShiftBook } from '../../src/grimseld/shift-book.js';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog } from '../../src/grimseld/catalog.js';

describe('shift book (G9)', () => {
  const shifts = (book: ShiftBook): bigint[] => book.shiftsOldestFirst().map(([t]) => t);

  it('keeps a shift with pending files past the limit, and drops it once they are copied or failed', () => {
    const book = new ShiftBook(['internal', 'external'], 2);
    book.begin(1n, 500, 500);
    book.count(1n, 'internal', undefined, 'pending');
    book.count(1n, 'external', undefined, 'pending');
    book.begin(2n, 501, 501);
    book.count(2n, 'internal', undefined, 'pending');
    book.begin(3n, 502, 502);
    book.begin(4n, 503, 503);
    assert.deepEqual(shifts(book), [1n, 2n, 4n], 'shifts 1 and 2 stay while pending; 3 goes');
    book.count(1n, 'internal', 'pending', 'copied');
    assert.deepEqual(shifts(book), [1n, 2n, 4n], 'one storage still pending');
    book.count(1n, 'external', 'pending', 'failed');
    assert.deepEqual(shifts(book), [2n, 4n], 'settled: within the limit again');
    assert.equal(book.query(-1).length, 4, 'two shifts x two storages listed');
  });

  it('never drops the current shift, and keeps every shift within the limit', () => {
    const book = new ShiftBook(['internal'], 1);
    book.begin(1n, 500, 500);
    book.count(1n, 'internal', undefined, 'pending');
    book.count(1n, 'internal', 'pending', 'copied');
    assert.deepEqual(shifts(book), [1n]);
    const big = new ShiftBook(['internal'], 3);
    for (const t of [1n, 2n, 3n]) big.begin(t, 500, 500);
    big.count(1n, 'internal', undefined, 'pending');
    big.count(1n, 'internal', 'pending', 'copied');
    assert.deepEqual(shifts(big), [1n, 2n, 3n]);
  });

  it('a restart keeps a shift whose files are still pending beyond the limit (G9, G12)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'shift-book-'));
    const open = async (): Promise<{ journal: Journal; catalog: Catalog }> => {
      const { journal, records } = await Journal.open(dir);
      const catalog = new Catalog(journal, { storages: ['internal'], historyMaxEntries: 2, ramdiskRoot: '/ramdisk', hasExternal: false });
      catalog.replay(records);
      return { journal, catalog };
    };
    const rows = (c: Catalog): Array<[bigint, number]> => c.shifts.query(-1).map((r) => [r[0], Number(r[4])]);
    try {
      const a = await open();
      await a.catalog.shift(1n, 500, 500);
      await a.catalog.accept(1n, [{ src: '/ramdisk/1mf/f.cbf', rel: '1mf/f.cbf', size: 1, mtimeMs: 1, ino: 1, dev: 1 }]);
      await a.catalog.shift(2n, 501, 501);
      await a.catalog.shift(3n, 502, 502);
      const before = rows(a.catalog);
      assert.deepEqual(before, [[3n, 0], [1n, 1]], 'shift 1 kept for its pending file');
      await a.journal.close();
      const b = await open();
      assert.deepEqual(rows(b.catalog), before, 'the same after a restart');
      await b.journal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

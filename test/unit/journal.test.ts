// The write-ahead journal and the catalog replayed from it (G9, G12): torn tails, idempotent replay,
// compaction, and counts derived from states.
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog, type NewFile } from '../../src/grimseld/catalog.js';
import type { ShiftView } from '../../src/grimseld/shift-book.js';


const file = (n: number): NewFile => ({ src: `/ramdisk/1mf/u/f${n}.cbf`, rel: `1mf/u/f${n}.cbf`, size: 100 + n, mtimeMs: 1000 + n, ino: 10 + n, dev: 1 });

async function openCatalog(dir: string, storages = ['internal', 'extra']): Promise<{ journal: Journal; catalog: Catalog; book: ShiftView }> {
  const { journal, records } = await Journal.open(dir);
  const catalog = new Catalog(journal, { storages, historyMaxEntries: 50, ramdiskRoot: '/ramdisk', hasExternal: false });
  const book = catalog.shifts;
  catalog.replay(records);
  return { journal, catalog, book };
}

describe('journal and catalog (G12)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'journal-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('answers a file delivered twice only once its first record is on disk (G12)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const onDisk = (): boolean => readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').includes('f7.cbf');
    const first = a.catalog.accept(5n, [file(7)]);
    const seenBySecond = await a.catalog.accept(5n, [file(7)]).then((fresh) => ({ fresh: fresh.length, onDisk: onDisk() }));
    assert.deepEqual(seenBySecond, { fresh: 0, onDisk: true }, 'not taken twice, and not answered before the first record is stored');
    assert.equal((await first).length, 1);
    await a.journal.close();
  });

  it('replays accepted files and copy states into the same counts', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const recs = await a.catalog.accept(5n, [file(1), file(2), file(3)]);
    await a.catalog.setCopy(recs[0]!, 'internal', 'copied');
    await a.catalog.setCopy(recs[1]!, 'internal', 'failed');
    await a.catalog.setCopy(recs[0]!, 'extra', 'copied');
    const before = a.book.query(-1);
    await a.journal.close();
    const b = await openCatalog(dir);
    assert.deepEqual(b.book.query(-1), before);
    assert.deepEqual(before.map((r) => [r[3], Number(r[4]), Number(r[5]), Number(r[6])]), [['internal', 1, 1, 1], ['extra', 2, 1, 0]]);
    await b.journal.close();
  });

  it('does not take the same file twice (a hand-over re-sent after a crash)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    assert.equal((await a.catalog.accept(5n, [file(1)])).length, 1);
    assert.equal((await a.catalog.accept(5n, [file(1)])).length, 0);
    assert.equal((await a.catalog.accept(5n, [{ ...file(1), ino: 99 }])).length, 1, 'a new file under the same name is new');
    await a.journal.close();
  });

  it('hands a file known under another replicated path to otherName, and takes it only once (G8)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const renamed: string[] = [];
    const otherName = (f: NewFile, takenAs: string): void => { renamed.push(`${f.rel} ${takenAs}`); };
    assert.equal((await a.catalog.accept(5n, [file(1)], otherName)).length, 1);
    assert.equal((await a.catalog.accept(5n, [file(1)], otherName)).length, 0, 'the same name again: known, not refused');
    assert.deepEqual(renamed, []);
    assert.equal((await a.catalog.accept(5n, [{ ...file(1), rel: 'u/f1.cbf' }, { ...file(2), rel: 'f2.cbf' }, file(2)], otherName)).length, 1);
    assert.deepEqual(renamed, ['u/f1.cbf 1mf/u/f1.cbf', '1mf/u/f2.cbf f2.cbf'], 'within one batch too');
    assert.equal((await a.catalog.accept(5n, [{ ...file(1), rel: 'u/f1.cbf' }])).length, 0, 'without otherName (a delivery): known');
    await a.journal.close();
  });

  it('drops a torn last line (killed mid-write) and refuses a corrupt line in the middle', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    await a.catalog.accept(5n, [file(1)]);
    await a.journal.close();
    const j = path.join(dir, 'journal.jsonl');
    appendFileSync(j, '{"t":"file","id":7,"u":"5","src":"/ramdisk/x');
    const b = await openCatalog(dir);
    assert.equal(b.catalog.size, 1, 'the torn record is not there');
    await b.catalog.accept(5n, [file(2)]);
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.equal(c.catalog.size, 2, 'appending after a torn tail starts a fresh line');
    await c.journal.close();
    const lines = readFileSync(j, 'utf8').split('\n');
    lines.splice(1, 0, 'garbage');
    writeFileSync(j, lines.join('\n'));
    await assert.rejects(() => Journal.open(dir), /line 2 is corrupt.*refusing to guess. Move the file away.*the command that hands them over/);
  });

  it('compacts to a snapshot that replays to the same state, settled files included', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const recs = await a.catalog.accept(5n, Array.from({ length: 20 }, (_, i) => ({ ...file(i), src: `/elsewhere/f${i}` })));
    for (const r of recs.slice(0, 15)) {
      await a.catalog.setCopy(r, 'internal', 'copied');
      await a.catalog.setCopy(r, 'extra', 'copied');
    }
    assert.equal(a.catalog.size, 5, 'files copied everywhere and not on the ramdisk are settled');
    const before = a.book.query(-1);
    await a.journal.compact(() => a.catalog.snapshot());
    await a.catalog.accept(5n, [file(50)]);
    const after = a.book.query(-1);
    await a.journal.close();
    const b = await openCatalog(dir);
    assert.deepEqual(b.book.query(-1), after);
    assert.notDeepEqual(after, before);
    assert.equal(b.catalog.size, 6);
    assert.ok(readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').split('\n').length < 20, 'the snapshot is short');
    await b.journal.close();
  });

  it('keeps each file\'s checksum and detector across replay and compaction; an operator\'s file has none (I1, G12)', async () => {
    const sum = `xxh128:${'0f'.repeat(16)}`;
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const [delivered, added] = await a.catalog.accept(5n, [{ ...file(1), checksum: sum, detector: '1MF' }, file(2)]);
    assert.deepEqual([delivered!.checksum, delivered!.detector, added!.checksum, added!.detector], [sum, '1MF', undefined, undefined]);
    await a.journal.close();
    const lines = readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.filter((l) => l['t'] === 'file').map((l) => [l['c'], l['det']]), [[sum, '1MF'], [undefined, undefined]], 'journaled with the file');
    const check = (c: Catalog, when: string): void => {
      const one = c.latestAt(file(1).src)!;
      const two = c.latestAt(file(2).src)!;
      assert.deepEqual([one.checksum, one.detector, two.checksum, two.detector], [sum, '1MF', undefined, undefined], when);
    };
    const b = await openCatalog(dir);
    check(b.catalog, 'replayed');
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    check(c.catalog, 'kept by the snapshot');
    await c.journal.close();
    // A journal written before checksums were kept: its files have none, and are taken as they are.
    writeFileSync(path.join(dir, 'journal.jsonl'), '{"t":"shift","u":"5","uid":500,"gid":501}\n' +
      '{"t":"file","id":1,"u":"5","src":"/ramdisk/1mf/u/f1.cbf","rel":"1mf/u/f1.cbf","size":101,"mtimeMs":1001,"ino":11,"dev":1}\n');
    const old = await openCatalog(dir);
    assert.deepEqual([old.catalog.size, old.catalog.record(1)!.checksum], [1, undefined]);
    await old.journal.close();
  });

  it('keeps verified counts (I2) across replay and compaction, settled files included, and reads a journal from before them', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const recs = await a.catalog.accept(5n, Array.from({ length: 6 }, (_, i) => ({ ...file(i), src: `/elsewhere/f${i}` })));
    // 0-3 settled (copied on both; 0-2 verified on internal, 0 on extra too); 4 verified on internal, live; 5 not copied.
    for (const [i, r] of recs.slice(0, 4).entries()) {
      await a.catalog.setCopy(r, 'internal', 'copied', { verified: i < 3 });
      await a.catalog.setCopy(r, 'extra', 'copied', { verified: i === 0 });
    }
    await a.catalog.setCopy(recs[4]!, 'internal', 'copied', { verified: true });
    const want = [['internal', 4n, 5n], ['extra', 1n, 4n]];
    const shown = (rows: Array<[bigint, number, number, string, bigint]>, status: ReturnType<ShiftView['query']>) =>
      rows.map((r, i) => [r[3], r[4], status[i]![5]]);
    assert.deepEqual(shown(a.book.queryVerified(-1), a.book.query(-1)), want, 'verified of copied, per storage');
    await a.journal.close();
    const b = await openCatalog(dir);
    assert.deepEqual(shown(b.book.queryVerified(-1), b.book.query(-1)), want, 'replayed');
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.deepEqual(shown(c.book.queryVerified(-1), c.book.query(-1)), want, 'replayed from the snapshot');
    await c.journal.close();
    // A snapshot written before verified counts: [copied, failed] per storage, none verified.
    writeFileSync(path.join(dir, 'journal.jsonl'), '{"t":"shift","u":"5","uid":500,"gid":501,"counts":{"internal":[3,1]}}\n');
    const old = await openCatalog(dir);
    assert.deepEqual(old.book.queryVerified(-1).map((r) => [r[3], r[4]]), [['internal', 0n], ['extra', 0n]]);
    assert.equal(old.book.query(-1)[0]![5], 3n);
    await old.journal.close();
  });

  it("gives a file without a checksum the one its first copy read, journaled before that copy, kept across replay and compaction (I2)", async () => {
    const sum = `xxh128:${'ab'.repeat(16)}`;
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const [rec] = await a.catalog.accept(5n, [file(1)]);
    await a.catalog.setCopy(rec!, 'internal', 'copied', { verified: true, checksum: sum });
    await a.catalog.setCopy(rec!, 'extra', 'failed', { checksum: `xxh128:${'cd'.repeat(16)}` });
    assert.equal(rec!.checksum, sum, 'taken from the copy, not from a failed one');
    await a.journal.close();
    const lines = readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.slice(2).map((l) => l['t']), ['checksum', 'copied', 'failed'], 'the checksum line before its copy');
    const b = await openCatalog(dir);
    assert.equal(b.catalog.record(rec!.id)!.checksum, sum);
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.equal(c.catalog.record(rec!.id)!.checksum, sum, 'in the snapshot, with the file');
    await c.journal.close();
  });

  it('keeps where a copy got a numbered name beside another file, per storage, across replay and compaction (G3, G5, G12)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const [rec] = await a.catalog.accept(5n, [file(1)]);
    await a.catalog.setCopy(rec!, 'internal', 'copied', { rel: '1mf/u/f1.cbf.~1~' });
    await a.catalog.setCopy(rec!, 'extra', 'copied', { rel: '1mf/u/f1.cbf' });
    assert.equal(a.catalog.relOn(rec!, 'internal'), '1mf/u/f1.cbf.~1~');
    assert.equal(a.catalog.relOn(rec!, 'extra'), '1mf/u/f1.cbf', 'its own name where nothing else had it');
    await a.journal.close();
    const b = await openCatalog(dir);
    const replayed = b.catalog.latestAt('/ramdisk/1mf/u/f1.cbf')!;
    assert.equal(b.catalog.relOn(replayed, 'internal'), '1mf/u/f1.cbf.~1~', 'replayed');
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.equal(c.catalog.relOn(c.catalog.latestAt('/ramdisk/1mf/u/f1.cbf')!, 'internal'), '1mf/u/f1.cbf.~1~', 'kept by the snapshot');
    await c.journal.close();
  });

  it('counts copies lost with a swapped disk pending again, forgets their numbered names, and keeps that and the disk\'s mark across replay and compaction (G5, G9, G12)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const recs = await a.catalog.accept(5n, [file(1), file(2), file(3)]);
    for (const r of recs) await a.catalog.setCopy(r, 'internal', 'copied');
    await a.catalog.setCopy(recs[0]!, 'extra', 'copied', { verified: true, rel: '1mf/u/f1.cbf.~1~' });
    await a.catalog.setCopy(recs[1]!, 'extra', 'copied', { verified: true });
    await a.catalog.setMark('extra', 'a'.repeat(32), '/mnt/x');
    const counts = (book: ShiftView) => book.query(-1).map((r) => [r[3], Number(r[4]), Number(r[5]), Number(r[6])]);
    assert.deepEqual(counts(a.book), [['internal', 0, 3, 0], ['extra', 1, 2, 0]]);
    // The disk is swapped: the two copies on it went; the third file was never copied there.
    await a.catalog.setLost(recs, 'extra');
    await a.catalog.setMark('extra', 'b'.repeat(32), '/mnt/x/v2');
    assert.deepEqual(counts(a.book), [['internal', 0, 3, 0], ['extra', 3, 0, 0]], 'pending again, not copied');
    assert.deepEqual(a.book.queryVerified(-1).map((r) => [r[3], Number(r[4])]), [['internal', 0], ['extra', 0]], 'no longer verified either');
    assert.equal(a.catalog.relOn(recs[0]!, 'extra'), '1mf/u/f1.cbf', 'the numbered name went with the disk');
    assert.deepEqual([...a.catalog.copiesOn('extra')], []);
    assert.equal(a.catalog.markOf('extra'), 'b'.repeat(32));
    await a.journal.close();
    const b = await openCatalog(dir);
    assert.deepEqual(counts(b.book), [['internal', 0, 3, 0], ['extra', 3, 0, 0]], 'replayed');
    assert.equal(b.catalog.markOf('extra'), 'b'.repeat(32));
    assert.equal(b.catalog.markTargetOf('extra'), '/mnt/x/v2', 'and the target it was written in');
    assert.equal(b.catalog.relOn(b.catalog.latestAt('/ramdisk/1mf/u/f1.cbf')!, 'extra'), '1mf/u/f1.cbf');
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.deepEqual(counts(c.book), [['internal', 0, 3, 0], ['extra', 3, 0, 0]], 'kept by the snapshot');
    assert.equal(c.catalog.markOf('extra'), 'b'.repeat(32), 'the mark kept by the snapshot');
    assert.equal(c.catalog.markTargetOf('extra'), '/mnt/x/v2', 'with its target');
    await c.journal.close();
  });

  it('names a storage whose section was removed, with how many files held have no copy there, which a restored section copies there', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    const recs = await a.catalog.accept(5n, [file(1), file(2), file(3)]);
    await a.catalog.setMark('extra', 'a'.repeat(32), '/mnt/x');
    await a.catalog.setCopy(recs[0]!, 'extra', 'copied');
    await a.catalog.setCopy(recs[1]!, 'extra', 'copied');
    await a.catalog.setLost([recs[1]!], 'extra');
    await a.catalog.setCopy(recs[2]!, 'internal', 'copied');
    assert.deepEqual(a.catalog.unconfigured, [], 'every storage configured');
    await a.journal.close();
    // Known by its copies alone too (a storage without a mountpoint has no mark).
    const d = path.join(dir, 'unmarked');
    mkdirSync(d);
    writeFileSync(path.join(d, 'journal.jsonl'), readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').split('\n').filter((l) => !l.includes('"t":"mark"')).join('\n'));
    const u = await openCatalog(d, ['internal']);
    assert.deepEqual(u.catalog.unconfigured, [{ storage: 'extra', uncopied: 2 }]);
    await u.journal.close();
    // The section of 'extra' is removed: f2 (its copy lost) and f3 were never copied there.
    const b = await openCatalog(dir, ['internal']);
    assert.deepEqual(b.catalog.unconfigured, [{ storage: 'extra', uncopied: 2 }]);
    assert.equal(b.book.query(-1).map((r) => r[3]).join(), 'internal', 'its row left the status');
    await b.journal.close();
    // Said at the starts before the next compaction only: a storage retired for good is not said for ever.
    const snap = path.join(dir, 'compacted');
    mkdirSync(snap);
    writeFileSync(path.join(snap, 'journal.jsonl'), readFileSync(path.join(dir, 'journal.jsonl')));
    const k = await openCatalog(snap, ['internal']);
    await k.journal.compact(() => k.catalog.snapshot());
    await k.journal.close();
    const k2 = await openCatalog(snap, ['internal']);
    assert.deepEqual(k2.catalog.unconfigured, [], 'forgotten once compacted');
    await k2.journal.close();
    // Restored while grimseld still holds them (their ramdisk originals not cleaned up): copied there (f2 again).
    const c = await openCatalog(dir);
    assert.deepEqual(c.catalog.unconfigured, []);
    assert.deepEqual(['f1', 'f2', 'f3'].map((f) => c.catalog.stateOn(c.catalog.latestAt(`/ramdisk/1mf/u/${f}.cbf`)!, 'extra')), ['copied', 'pending', 'pending']);
    await c.journal.close();
  });

  it('counts a delivered file intake refused as failed on every storage of its shift, once per path, across replay and compaction (G9, G12)', async () => {
    const a = await openCatalog(dir);
    await a.catalog.shift(5n, 500, 501);
    await a.catalog.accept(5n, [file(1)]);
    assert.deepEqual(await a.catalog.refuse(5n, ['/ramdisk/./1mf/u/fifo.cbf', '/ramdisk/./1mf/u/gone.cbf', '/ramdisk/./1mf/u/fifo.cbf']),
      ['/ramdisk/./1mf/u/fifo.cbf', '/ramdisk/./1mf/u/gone.cbf']);
    // furkad hands the same delivery over again (its answer was lost): nothing counted twice.
    assert.deepEqual(await a.catalog.refuse(5n, ['/ramdisk/./1mf/u/gone.cbf']), []);
    const counts = (book: ShiftView) => book.query(-1).map((r) => [r[3], Number(r[4]), Number(r[5]), Number(r[6])]);
    const want = [['internal', 1, 0, 2], ['extra', 1, 0, 2]];
    assert.deepEqual(counts(a.book), want);
    await a.journal.close();
    const b = await openCatalog(dir);
    assert.deepEqual(counts(b.book), want, 'replayed');
    assert.deepEqual(await b.catalog.refuse(5n, ['/ramdisk/./1mf/u/fifo.cbf']), [], 'known after a restart too');
    await b.journal.compact(() => b.catalog.snapshot());
    await b.journal.close();
    const c = await openCatalog(dir);
    assert.deepEqual(counts(c.book), want, 'kept by the snapshot');
    await c.journal.close();
  });
});

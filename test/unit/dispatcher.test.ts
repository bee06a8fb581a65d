// The dispatcher's side of checking copies (I2): a checksum mismatch is a COPY_ERROR naming the file and both
// checksums, counted failed (never copied) and retried; an operator's file gets the checksum of its first read,
// and the other storages wait for that read and are then handed the checksum; a storage without attributes
// is said once (I3).
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog, type FileRecord } from '../../src/grimseld/catalog.js';
import { ShiftBook } from '../../src/grimseld/shift-book.js';
import { Dispatcher } from '../../src/grimseld/dispatcher.js';
import { MessageHub, type Message } from '../../src/grimseld/messages.js';
import { ChecksumMismatch } from '../../src/grimseld/copy-check.js';
import type { CopyReport } from '../../src/grimseld/copy-job.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';

const A = 'a1'.repeat(16);
const B = 'b2'.repeat(16);

describe('the dispatcher checking copies against the checksum (I2, I3, G10)', () => {
  let root: string;
  let journal: Journal;
  let catalog: Catalog;
  let book: ShiftBook;
  let dispatcher: Dispatcher;
  let messages: Message[];
  let logged: string[];
  let storages: StorageInfo[];

  beforeEach(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'dispatcher-'));
    const opened = await Journal.open(root);
    journal = opened.journal;
    book = new ShiftBook(['internal', 'backup'], 50);
    catalog = new Catalog(journal, book, ['internal', 'backup'], '/ramdisk', false);
    catalog.replay(opened.records);
    await catalog.shift(5n, 500, 501);
    logged = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(String((JSON.parse(line) as { msg: string }).msg)); } });
    const hub = new MessageHub(log);
    messages = [];
    hub.subscribe((m) => messages.push(m));
    storages = (['internal', 'backup'] as const).map((id) => ({ id, type: id === 'internal' ? 'INTERNAL' : 'OPTIONAL', target: `/st/${id}`, mountpoint: undefined, writers: 1 }));
    dispatcher = new Dispatcher(catalog, storages, hub, log);
  });
  afterEach(async () => {
    dispatcher.stop();
    await journal.close();
    rmSync(root, { recursive: true, force: true });
  });

  const accept = async (checksum?: string): Promise<FileRecord> => {
    const [rec] = await catalog.accept(5n, [{ src: '/ramdisk/1mf/u/a.cbf', rel: '1mf/u/a.cbf', size: 10, mtimeMs: 1000, ino: 7, dev: 1,
      ...(checksum ? { checksum: `xxh128:${checksum}`, detector: '1MF' } : {}) }]);
    return rec!;
  };
  /** What the dispatcher has queued, by storage. */
  const queued = (): Array<[string, number]> => storages.flatMap((s) => dispatcher.waiting(s.id).map((id): [string, number] => [s.id, id]));
  /** Reports and waits for the journal write it makes. */
  const report = async (r: CopyReport): Promise<void> => {
    dispatcher.report(r);
    await new Promise((res) => setTimeout(res, 50));
  };
  const counts = (storage: string): number[] => {
    const row = book.query(-1).find((x) => x[3] === storage)!;
    const v = book.queryVerified(-1).find((x) => x[3] === storage)!;
    return [Number(row[4]), Number(row[5]), Number(row[6]), Number(v[4])];
  };

  it('hands each copy the checksum, shift and detector, and counts a mismatch failed with a COPY_ERROR naming both checksums', async () => {
    const rec = await accept(A);
    const [internal] = storages;
    const job = dispatcher.resolve(internal!.id, rec.id, false)!;
    assert.deepEqual([job.checksum, job.provenance], [A, { shift: { startUs: 5n, uid: 500, gid: 501 }, detector: '1MF' }]);
    await report({ job, dest: '/st/internal/1mf/u/a.cbf', outcome: ChecksumMismatch.source(job.src, A, B) });
    assert.deepEqual(counts('internal'), [0, 0, 1, 0], 'failed, not copied');
    assert.equal(catalog.stateOn(rec, 'internal'), 'failed');
    assert.ok(!catalog.doneOn(rec, 'internal'), 'not failed for good: retried');
    const [m] = messages;
    assert.deepEqual([m?.errcode, m?.shortMessage], ['COPY_ERROR', '/ramdisk/1mf/u/a.cbf:/st/internal/1mf/u/a.cbf']);
    assert.match(m!.longMessage, new RegExp(`/ramdisk/1mf/u/a\\.cbf: expected xxh128:${A} got xxh128:${B}.*retried until it succeeds`));
    // The retry reads it right: copied and verified.
    await report({ job, dest: '/st/internal/1mf/u/a.cbf', outcome: 'copied',
      result: { outcome: 'copied', dest: '/st/internal/1mf/u/a.cbf', checksum: A, verified: true, attributes: 'user' } });
    assert.deepEqual(counts('internal'), [0, 1, 0, 1]);
  });

  it("lets one storage read an operator's file first, makes that read's checksum the file's, and hands it to the storage that waited", async () => {
    const rec = await accept();
    const [internal, backup] = storages;
    const first = dispatcher.resolve(internal!.id, rec.id, false)!;
    assert.equal(first.checksum, undefined, 'nothing to check against yet');
    assert.equal(dispatcher.resolve(backup!.id, rec.id, false), undefined, 'the other storage waits for the first read');
    await report({ job: first, dest: '/st/internal/1mf/u/a.cbf', outcome: 'copied',
      result: { outcome: 'copied', dest: '/st/internal/1mf/u/a.cbf', checksum: A, verified: true, attributes: 'none' } });
    assert.equal(rec.checksum, `xxh128:${A}`, 'the first read gave the file its checksum');
    assert.deepEqual(queued(), [['backup', rec.id]], 'the waiting storage queued again');
    assert.equal(dispatcher.resolve(backup!.id, rec.id, false)!.checksum, A, 'and checked against it');
    assert.deepEqual(counts('internal'), [0, 1, 0, 1]);
    assert.equal(logged.filter((l) => /checksum kept in the journal only/.test(l)).length, 1);
    await report({ job: first, dest: '/st/internal/1mf/u/a.cbf', outcome: 'identical',
      result: { outcome: 'identical', dest: '/st/internal/1mf/u/a.cbf', verified: false, attributes: 'none' } });
    assert.equal(logged.filter((l) => /checksum kept in the journal only/.test(l)).length, 1, 'said once per storage');
  });

  it("hands the next storage the first read when it failed, and takes no checksum from a failed read", async () => {
    const rec = await accept();
    const [internal, backup] = storages;
    const first = dispatcher.resolve(internal!.id, rec.id, false)!;
    assert.equal(dispatcher.resolve(backup!.id, rec.id, false), undefined);
    await report({ job: first, dest: '/st/internal/1mf/u/a.cbf', outcome: new Error('ENOSPC: no space left on device') });
    assert.equal(rec.checksum, undefined);
    assert.deepEqual(queued().filter(([s]) => s === 'backup'), [['backup', rec.id]]);
    const next = dispatcher.resolve(backup!.id, rec.id, false)!;
    assert.equal(next.checksum, undefined, 'the backup storage reads it first now');
  });
});

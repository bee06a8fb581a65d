// A copy gone from its storage, the disk the same (G3, G5, G9): pending again, made again, said once a minute at most.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LostCopies } from '../../src/grimseld/lost-copies.js';
import type { Catalog, FileRecord } from '../../src/grimseld/catalog.js';
import type { MessageHub } from '../../src/grimseld/messages.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';
import type { Logger } from '../../src/common/logger.js';
import { monotonicMs } from '../../src/common/monotonic.js';

describe('grimseld: copies gone from a storage whose disk is the same (G3, G5, G9)', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'lost-copies-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function setUp(sayEveryMs: number): { lost: LostCopies; said: string[]; again: number[]; copied: Set<number>; st: StorageInfo; rec: (id: number) => FileRecord } {
    const said: string[] = [];
    const again: number[] = [];
    const copied = new Set<number>();
    const st = { id: 'internal', type: 'INTERNAL', target: root } as unknown as StorageInfo;
    const catalog = {
      isLive: () => true,
      copiedOn: (r: FileRecord) => copied.has(r.id),
      relOn: (r: FileRecord) => `run/f${r.id}.cbf`,
      setLost: async (recs: FileRecord[]) => { for (const r of recs) copied.delete(r.id); },
    } as unknown as Catalog;
    const planner = { canCopyAgain: () => true, copyAgain: (r: FileRecord) => { again.push(r.id); } };
    const messages = { publish: (code: string, short: string, long: string) => { said.push(`${code} ${short} ${long}`); } } as unknown as MessageHub;
    const log = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
    const lost = new LostCopies(catalog, planner, messages, log, monotonicMs, sayEveryMs);
    const rec = (id: number): FileRecord => ({ id, src: `/ramdisk/1mf/u/run/f${id}.cbf`, size: 5, mtimeMs: 1_000_000, internal: 'present' } as unknown as FileRecord);
    return { lost, said, again, copied, st, rec };
  }

  it('leaves a copy that is there alone, and makes one that is gone pending and queued again', async () => {
    const { lost, again, copied, st, rec } = setUp(60_000);
    mkdirSync(path.join(root, 'run'));
    writeFileSync(path.join(root, 'run/f1.cbf'), '12345');
    utimesSync(path.join(root, 'run/f1.cbf'), 1000, 1000);
    copied.add(1);
    copied.add(2);
    assert.equal(await lost.copyAgainIfGone(rec(1), st), false, 'there: nothing to do');
    assert.equal(await lost.copyAgainIfGone(rec(2), st), true, 'gone: made again');
    assert.deepEqual(again, [2]);
    assert.equal(copied.has(2), false, 'pending again');
    // Changed by its user (another size): not the copy any more, made again too.
    writeFileSync(path.join(root, 'run/f1.cbf'), '123456');
    assert.equal(await lost.copyAgainIfGone(rec(1), st), true);
  });

  it('says the first at once and the ones found within the interval together once it has passed, naming the first', async () => {
    const { lost, said, copied, st, rec } = setUp(300);
    for (const id of [1, 2, 3, 4]) copied.add(id);
    await lost.copyAgainIfGone(rec(1), st);
    assert.equal(said.length, 1);
    assert.match(said[0]!, /^COPY_ERROR \S+run\/f1\.cbf storage internal: the copy \S+f1\.cbf is not there any more/);
    await lost.copyAgainIfGone(rec(2), st);
    await lost.copyAgainIfGone(rec(3), st);
    await lost.copyAgainIfGone(rec(4), st);
    assert.equal(said.length, 1, 'not within the interval');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(said.length, 2, 'said once the interval passed, without another copy found');
    assert.match(said[1]!, /storage internal: 3 copies \(\S+f2\.cbf among them\) are not there any more/);
  });
});

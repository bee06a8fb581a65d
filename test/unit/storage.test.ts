// A storage is a pool of writers and nothing more (docs/grimseld-design.md): each writer takes a batch from its
// feed, copies it with its copier and hands every result back once; at a stop, a batch in hand is finished first.
import { strict as assert } from 'node:assert';
import { Storage, type Copier } from '../../src/grimseld/storage.js';
import type { JobFeed } from '../../src/grimseld/dispatcher.js';
import type { CopyJob, CopyReport, CopyWork } from '../../src/grimseld/copy-job.js';
import type { CopyResult } from '../../src/grimseld/copier.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';
import { randomBytes } from 'node:crypto';

/** The key of copy temp names (temp-names.ts). */
const tempKey = randomBytes(32);

const info = (writers: number): StorageInfo => ({ id: 'st', type: 'OPTIONAL', target: '/st', mountpoint: undefined, writers });
const job = (id: number): CopyJob => ({ id, storage: 'st', src: `/r/f${id}`, from: 'original', root: '/r', rel: `f${id}`, dest: `/st/f${id}`, expect: { size: 1, mtimeMs: 1 }, sweep: false });

/** A feed that hands out `batches` once each, then nothing (waiting until aborted). */
function feedOf(batches: CopyJob[][]): JobFeed & { reports: CopyReport[] } {
  const reports: CopyReport[] = [];
  return {
    reports,
    next: async (signal) => {
      const b = batches.shift();
      if (b) return b;
      await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
      return [];
    },
    done: (r) => { reports.push(...r); },
  };
}

/** A copier that copies nothing: each job copied, except the ids in `failing`; `gate` holds every batch until opened. */
function fakeCopier(failing: number[] = [], gate?: Promise<void>): Copier & { batches: CopyWork[][]; closed: boolean } {
  const c = {
    batches: [] as CopyWork[][],
    closed: false,
    copyMany: async (jobs: CopyWork[]): Promise<Array<CopyResult | Error>> => {
      c.batches.push(jobs);
      await gate;
      return jobs.map((j) => (failing.some((id) => j.src === `/r/f${id}`) ? new Error(`cannot copy ${j.src}`) : { outcome: 'copied', dest: j.dest, verified: true }));
    },
    stalls: () => [],
    close: async () => { c.closed = true; },
  };
  return c;
}

describe('a storage and its writers (G1)', () => {
  it('copies what its feed hands out and reports each result once, a failure as an error', async () => {
    const feed = feedOf([[job(1), job(2)], [job(3)]]);
    const copier = fakeCopier([2]);
    const stop = new AbortController();
    const running = new Storage(info(2), { preserveUid: false, preserveGid: false, tempKey }, feed, copier).run(stop.signal);
    for (let i = 0; i < 50 && feed.reports.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
    stop.abort();
    await running;
    assert.deepEqual(feed.reports.map((r) => [r.job.id, r.outcome instanceof Error ? 'error' : r.outcome, r.dest]).sort(),
      [[1, 'copied', '/st/f1'], [2, 'error', '/st/f2'], [3, 'copied', '/st/f3']]);
    assert.deepEqual(copier.batches.map((b) => b.length).sort(), [1, 2], 'a batch is copied together');
    assert.ok(copier.closed, 'the copier is closed when the writers are done');
  });

  it('finishes a batch in hand before it stops, and reports it', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const feed = feedOf([[job(1)]]);
    const copier = fakeCopier([], gate);
    const stop = new AbortController();
    const running = new Storage(info(1), { preserveUid: false, preserveGid: false, tempKey }, feed, copier).run(stop.signal);
    while (copier.batches.length === 0) await new Promise((r) => setTimeout(r, 1));
    stop.abort();
    let stopped = false;
    void running.then(() => { stopped = true; });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(stopped, false, 'still copying');
    open();
    await running;
    assert.deepEqual(feed.reports.map((r) => r.job.id), [1]);
  });
});

// The catalog's records in columns (BENCHMARKS.md): every field must read back exactly as taken, whatever order
// records come and go in, a handle must keep naming its own file while rows move, and a settled record must
// never answer for another file.
import { strict as assert } from 'node:assert';
import { RecordStore } from '../../src/grimseld/record-store.js';
import { PathTable } from '../../src/grimseld/path-table.js';
import { RecordGone, type FileRecord, type NewFile } from '../../src/grimseld/file-record.js';
import { allPending, stateAt, withState } from '../../src/grimseld/copy-states.js';

const f: NewFile = { src: '/ramdisk/1mf/500_501/a/f.cbf', rel: '1mf/500_501/a/f.cbf', size: 3, mtimeMs: 1700000000123.25, ino: 2 ** 40, dev: 7 };

/** A file of its own for id `id`; two in three with a checksum and a detector (delivered), the rest without (added, G8). */
function fileOf(id: number): NewFile {
  const delivered = id % 3 !== 0 ? { checksum: `xxh128:${id.toString(16).padStart(32, 'f')}`, detector: `${id % 3}MF` } : {};
  return { src: `/ramdisk/./d${id % 7}/f${id}.cbf`.replace('/./', '/'), rel: `d${id % 7}/f${id}.cbf`, size: id * 10, mtimeMs: id + 0.5, ino: id + 2 ** 33, dev: 64768, ...delivered };
}

function same(rec: FileRecord, want: NewFile): void {
  const { checksum, detector } = rec;
  assert.deepEqual({ src: rec.src, rel: rec.rel, size: rec.size, mtimeMs: rec.mtimeMs, ino: rec.ino, dev: rec.dev,
    ...(checksum !== undefined ? { checksum } : {}), ...(detector !== undefined ? { detector } : {}) }, want, `record ${rec.id}`);
}

describe('record store (BENCHMARKS.md)', () => {
  it('reads back every field as taken', () => {
    const store = new RecordStore();
    const r = store.add(1, 5n, f, allPending(2), true);
    same(r, f);
    assert.deepEqual([r.usertime, r.onRamdisk, r.ramdisk, r.internal, r.states], [5n, true, 'present', 'present', 0]);
    same(store.get(1)!, f);
    assert.equal(store.add(2, 5n, f, allPending(2), false).onRamdisk, false);
  });

  it('keeps the replicated part as the end of the source path, or as its own string when it is not', () => {
    const store = new RecordStore();
    const rels = [
      [{ ...f, rel: 'elsewhere/f.cbf' }, 'elsewhere/f.cbf'],
      [{ ...f, rel: 'f.cbf' }, 'f.cbf'],
      [{ ...f, rel: 'b/f.cbf', src: '/ramdisk/ab/f.cbf' }, 'b/f.cbf'], // not cut inside a component
      [{ ...f, src: '/ramdisk/./Bilder/größe/ä.cbf'.replace('/./', '/'), rel: 'Bilder/größe/ä.cbf' }, 'Bilder/größe/ä.cbf'],
    ] as const;
    rels.forEach(([file, rel], i) => {
      const r = store.add(i + 1, 5n, file, 0, true);
      assert.equal(r.rel, rel);
      assert.equal(r.src, file.src);
    });
  });

  it('sets ramdisk and internal origins and copy states independently', () => {
    const store = new RecordStore();
    const r = store.add(1, 5n, f, allPending(40), true);
    store.setOrigin(r, 'ramdisk', 'linked');
    store.setOrigin(r, 'internal', 'gone');
    store.setStates(r, withState(r.states, 39, 'copied'));
    const again = store.get(1)!;
    assert.deepEqual([again.ramdisk, again.internal, again.onRamdisk, stateAt(again.states, 39), stateAt(again.states, 0)], ['linked', 'gone', true, 'copied', 'pending']);
    store.setOrigin(again, 'ramdisk', 'deleted');
    assert.deepEqual([r.ramdisk, r.internal], ['deleted', 'gone']);
  });

  it('keeps a checksum as its 16 bytes and gives it back tagged; none for a file without, or of an algorithm it cannot hold (I1)', () => {
    const store = new RecordStore();
    const hex = '0123456789abcdef00ff00ff00ff7f80';
    const a = store.add(1, 5n, { ...f, checksum: `xxh128:${hex}`, detector: '1MF' }, 0, true);
    const b = store.add(2, 5n, f, 0, true);
    const c = store.add(3, 5n, { ...f, checksum: 'sha256:abcd', detector: '1MF' }, 0, true);
    const d = store.add(4, 5n, { ...f, checksum: `xxh128:${hex.slice(2)}`, detector: '2MF' }, 0, true);
    assert.deepEqual([a.checksum, a.detector], [`xxh128:${hex}`, '1MF']);
    assert.deepEqual([b.checksum, b.detector], [undefined, undefined]);
    assert.deepEqual([c.checksum, c.detector], [undefined, '1MF']);
    assert.deepEqual([d.checksum, d.detector], [undefined, '2MF'], 'too short: not a checksum');
    store.remove(a);
    store.remove(b);
    store.remove(c);
    store.remove(d); // none live: the store starts over in place, and a row's old checksum must not show through
    const e = store.add(5, 5n, f, 0, true);
    assert.deepEqual([e.row, e.checksum, e.detector], [0, undefined, undefined]);
  });

  it('recognises the same file by inode, device, size and mtime', () => {
    const r = new RecordStore().add(1, 5n, f, 0, true);
    assert.equal(r.sameAs({ ...f }), true);
    assert.equal(r.sameAs({ ...f, ino: 3 }), false);
    assert.equal(r.sameAs({ ...f, mtimeMs: f.mtimeMs + 1 }), false);
  });

  it('behaves as a Map by id through random adds and removals, and handles follow their rows', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const store = new RecordStore();
    const model = new Map<number, NewFile>();
    const handles = new Map<number, FileRecord>();
    let next = 1;
    for (let step = 0; step < 40_000; step++) {
      const r = rand(100);
      if (r < 52) {
        const id = next++;
        handles.set(id, store.add(id, 5n, fileOf(id), 0, true));
        model.set(id, fileOf(id));
      } else if (model.size) {
        const ids = [...model.keys()];
        const id = r < 90 ? ids[0]! : ids[rand(ids.length)]!; // mostly the oldest first, as copies finish
        store.remove(handles.get(id)!);
        model.delete(id);
      }
      if (step % 4000 === 0) {
        assert.equal(store.size, model.size);
        for (const [id, h] of handles) {
          if (model.has(id)) same(h, model.get(id)!);
          else assert.equal(store.holds(h), false);
        }
        for (const id of [...handles.keys()]) if (!model.has(id)) handles.delete(id);
      }
    }
    assert.deepEqual([...store.values()].map((r) => r.id), [...model.keys()], 'in id order');
    for (const [id, want] of model) same(store.get(id)!, want);
    assert.equal(store.get(next + 5), undefined);
  });

  it('takes records out of id order (a journal replayed out of order) and keeps them in id order', () => {
    const store = new RecordStore();
    for (const id of [5, 9, 2, 7, 1]) store.add(id, 5n, fileOf(id), 0, true);
    assert.deepEqual([...store.values()].map((r) => r.id), [1, 2, 5, 7, 9]);
    for (const id of [1, 2, 5, 7, 9]) same(store.get(id)!, fileOf(id));
    assert.throws(() => store.add(7, 5n, fileOf(7), 0, true), /held already/);
  });

  it('a settled record throws on every read instead of answering for another file', () => {
    const store = new RecordStore();
    const first = store.add(1, 5n, fileOf(1), 0, true);
    store.remove(first);
    assert.equal(store.size, 0);
    store.add(2, 5n, fileOf(2), 0, true); // takes the row the first one had
    assert.equal(store.holds(first), false);
    assert.equal(store.get(1), undefined);
    assert.throws(() => first.src, RecordGone);
    assert.throws(() => first.size, RecordGone);
    assert.throws(() => store.setOrigin(first, 'ramdisk', 'linked'), RecordGone);
    assert.throws(() => store.remove(first), RecordGone);
    same(store.get(2)!, fileOf(2));
  });

  it('finds the live record taken last for a path', () => {
    const store = new RecordStore();
    const old = store.add(1, 5n, f, 0, true);
    const newer = store.add(2, 5n, { ...f, ino: 99 }, 0, true);
    store.add(3, 5n, fileOf(3), 0, true);
    assert.equal(store.latestAt(f.src)?.id, 2);
    assert.equal(store.latestAt('/ramdisk/1mf/500_501/a/f.cb'), undefined);
    store.remove(newer);
    assert.equal(store.latestAt(f.src)?.id, 1, 'the older one is still pending');
    store.remove(old);
    assert.equal(store.latestAt(f.src), undefined);
    assert.equal(store.latestAt(fileOf(3).src)?.id, 3);
  });

  it('walks live records as they are when reached, across removals during the walk, without the ones taken after it began', () => {
    const store = new RecordStore();
    for (let id = 1; id <= 3000; id++) store.add(id, 5n, fileOf(id), 0, true);
    const seen: number[] = [];
    for (const rec of store.values()) {
      seen.push(rec.id);
      same(rec, fileOf(rec.id));
      if (rec.id === 10) for (let id = 11; id <= 2500; id++) store.remove(store.get(id)!); // rows move
      if (rec.id === 2600) store.add(5000, 5n, fileOf(5000), 0, true);
    }
    assert.deepEqual(seen, [...Array.from({ length: 10 }, (_, i) => i + 1), ...Array.from({ length: 500 }, (_, i) => 2501 + i)]);
  });
});

describe('path table (BENCHMARKS.md)', () => {
  it('gives back every path, renumbered as asked when rows go, and finds the highest-numbered match', () => {
    const t = new PathTable();
    const paths = Array.from({ length: 2000 }, (_, i) => `/ramdisk/${i % 2 ? 'ascii' : 'ünï€😀'}/f${i % 1000}`);
    for (const p of paths) t.push(p);
    paths.forEach((p, i) => assert.equal(t.at(i), p));
    assert.equal(t.find(paths[1500]!, () => true), 1500);
    assert.equal(t.find(paths[1500]!, (i) => i < 1000), 500);
    assert.equal(t.find('/ramdisk/none', () => true), undefined);
    const keep = [1500, 3, 700];
    t.retain(keep);
    assert.equal(t.length, 3);
    keep.forEach((old, i) => assert.equal(t.at(i), paths[old]));
    assert.equal(t.find(paths[700]!, () => true), 2);
    t.retain([]);
    t.push('/x');
    assert.deepEqual([t.length, t.at(0), t.find('/x', () => true)], [1, '/x', 0]);
  });
});

// What grimseld takes at the door (G8): a checked path gives the file's real path and the part to replicate,
// and a path that names no file is refused by name before anything is stored.
import { strict as assert } from 'node:assert';
import { chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkMarkedPath, everyTargetRefuses, Intake, RejectedPath } from '../../src/grimseld/intake.js';
import type { Catalog, NewFile } from '../../src/grimseld/catalog.js';
import type { Dispatcher } from '../../src/grimseld/dispatcher.js';
import type { Logger } from '../../src/common/logger.js';
import type { MessageHub } from '../../src/grimseld/messages.js';

describe('checked paths (G8)', () => {
  it('gives the real path and the part after ./, non-ASCII names included', () => {
    assert.deepEqual(checkMarkedPath('/ramdisk/./1mf/500_501/größe/ä😀.cbf'), { src: '/ramdisk/1mf/500_501/größe/ä😀.cbf', rel: '1mf/500_501/größe/ä😀.cbf' });
    assert.deepEqual(checkMarkedPath('/some_dir/x/f.cbf'), { src: '/some_dir/x/f.cbf', rel: 'f.cbf' });
  });

  it("refuses a path that does not end with the file's name, naming a './' marker at its end", () => {
    for (const p of ['/x/f1/.', '/x/f1/./', '/x/./', '/x/f1/./.']) {
      assert.throws(() => checkMarkedPath(p), (e: unknown) => e instanceof RejectedPath && /'\.\/' marker is at its end, after the file's name/.test(e.message), p);
    }
    assert.throws(() => checkMarkedPath('/x/f1/'), (e: unknown) => e instanceof RejectedPath && /ends in '\/'/.test(e.message));
    assert.throws(() => checkMarkedPath('/x/./a/..'), (e: unknown) => e instanceof RejectedPath && /ends in '\.\.'/.test(e.message));
  });

  it("refuses a replicated path that begins with grimseld's own names in a storage's target (link room, disk mark)", () => {
    for (const p of ['/ramdisk/./.grimsel-links/x.cbf', '/ramdisk/./.grimsel-links/a/b.cbf', '/ramdisk/./.grimsel-storage', '/d/.grimsel-storage']) {
      assert.throws(() => checkMarkedPath(p), (e: unknown) => e instanceof RejectedPath && /is a name grimseld keeps for itself in each storage's target/.test(e.message), p);
    }
    // Deeper down, or a longer name, is any file's.
    assert.equal(checkMarkedPath('/ramdisk/./500_501/.grimsel-links/x.cbf').rel, '500_501/.grimsel-links/x.cbf');
    assert.equal(checkMarkedPath('/ramdisk/./.grimsel-links2/x.cbf').rel, '.grimsel-links2/x.cbf');
    assert.equal(checkMarkedPath('/ramdisk/.grimsel-links/./x.cbf').rel, 'x.cbf');
  });

  it('refuses half a surrogate pair, which no file name holds (BENCHMARKS.md: paths are kept as UTF-8)', () => {
    assert.throws(() => checkMarkedPath('/ramdisk/./a\ud800b.cbf'), (e: unknown) => e instanceof RejectedPath && /not valid Unicode/.test(e.message));
    assert.throws(() => checkMarkedPath('/ramdisk/./a\udc00.cbf'), RejectedPath);
  });
});

describe('operators\' files and a shift change (G8)', () => {
  it('puts files in the shift current when they are taken, even if it started while they were checked', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      const paths = Array.from({ length: 100 }, (_, i) => path.join(dir, `f${i}.cbf`));
      paths.forEach((p) => writeFileSync(p, 'x'));
      const book = { current: { usertime: 1n } };
      const accepted: Array<{ usertime: bigint; files: number }> = [];
      const catalog = { get currentShift() { return book.current; }, sourceRootOf: () => dir, accept: async (usertime: bigint, files: unknown[]) => { accepted.push({ usertime, files: files.length }); return []; } };
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const intake = new Intake(catalog as unknown as Catalog, { submit: () => undefined } as unknown as Dispatcher,
        { publish: () => undefined } as unknown as MessageHub, quiet as unknown as Logger, () => undefined);
      const adding = intake.addMany(paths);
      book.current = { usertime: 2n }; // furkad's ShiftStarted arrives while the paths are being checked
      assert.deepEqual(await adding, []);
      assert.deepEqual(accepted, [{ usertime: 2n, files: 100 }], 'counted in the new shift, not in the one that ended');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("furkad's deliveries with their checksums (I1)", () => {
  it('keeps a readable checksum and the detector with each file, and takes a file with an unreadable one without it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      for (const f of ['a', 'b', 'c']) writeFileSync(path.join(dir, `${f}.cbf`), f);
      const accepted: NewFile[] = [];
      const catalog = { shift: async () => undefined, isOnRamdisk: () => true, sourceRootOf: () => dir, refuse: async () => [],
        accept: async (_u: bigint, files: NewFile[]) => { accepted.push(...files); return []; } };
      const warnings: string[] = [];
      const log = { info: () => undefined, warn: (_o: unknown, m: string) => warnings.push(m), error: () => undefined, debug: () => undefined };
      const intake = new Intake(catalog as unknown as Catalog, { submit: () => undefined } as unknown as Dispatcher,
        { publish: () => undefined } as unknown as MessageHub, log as unknown as Logger, () => undefined);
      const sum = `xxh128:${'5a'.repeat(16)}`;
      await intake.delivered(1n, 500, 501, [[`${dir}/./a.cbf`, sum, '1MF'], [`${dir}/./b.cbf`, '', '2MF'], [`${dir}/./c.cbf`, 'md5:abc', '1MF']]);
      assert.deepEqual(accepted.map((f) => [path.basename(f.src), f.checksum, f.detector]), [['a.cbf', sum, '1MF'], ['b.cbf', undefined, '2MF'], ['c.cbf', undefined, '1MF']]);
      assert.equal(warnings.filter((w) => /cannot read/.test(w)).length, 1, 'the unreadable checksum is said');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells subscribers of a delivered file it refuses (G10), and has it counted failed (G9): its source is gone from the detector already', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      writeFileSync(path.join(dir, 'nl\nx.cbf'), 'x');
      const refused: string[] = [];
      const catalog = { shift: async () => undefined, isOnRamdisk: () => true, sourceRootOf: () => dir, accept: async () => [],
        refuse: async (_u: bigint, paths: string[]) => { refused.push(...paths); return paths; } };
      const published: string[][] = [];
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const intake = new Intake(catalog as unknown as Catalog, { submit: () => undefined, destinations: () => [['internal', '/data/x']] } as unknown as Dispatcher,
        { publish: (...m: string[]) => published.push(m) } as unknown as MessageHub, quiet as unknown as Logger, () => undefined);
      await intake.delivered(1n, 500, 501, [[`${dir}/./nl\nx.cbf`, '', '1MF']]);
      assert.deepEqual(refused, [`${dir}/./nl\nx.cbf`]);
      assert.equal(published.length, 1);
      assert.deepEqual(published[0]!.slice(0, 2), ['COPY_ERROR', `${dir}/./nl\nx.cbf:`], 'no part to replicate known: named as it came');
      assert.match(published[0]![2]!, /will not be made: the delivered file was refused \(.*control character/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says a delivered file refused as a failed copy is said, once per storage, short message src:dest, and not again when handed over again (G9, G10)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      execFileSync('mkfifo', [path.join(dir, 'fifo.cbf')]);
      const counted = new Set<string>();
      const catalog = { shift: async () => undefined, isOnRamdisk: () => true, sourceRootOf: () => dir, accept: async () => [],
        refuse: async (_u: bigint, paths: string[]) => paths.filter((p) => !counted.has(p) && counted.add(p)) };
      const published: string[][] = [];
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const destinations = (rel: string) => [['internal', `/data/${rel}`], ['external', `/ext/${rel}`]];
      const intake = new Intake(catalog as unknown as Catalog, { submit: () => undefined, destinations } as unknown as Dispatcher,
        { publish: (...m: string[]) => published.push(m) } as unknown as MessageHub, quiet as unknown as Logger, () => undefined);
      await intake.delivered(1n, 500, 501, [[`${dir}/./u/../fifo.cbf`, '', '1MF']]);
      await intake.delivered(1n, 500, 501, [[`${dir}/./u/../fifo.cbf`, '', '1MF']]);
      assert.deepEqual(published.map((m) => m.slice(0, 2)), [['COPY_ERROR', `${dir}/fifo.cbf:/data/fifo.cbf`], ['COPY_ERROR', `${dir}/fifo.cbf:/ext/fifo.cbf`]]);
      assert.match(published[1]![2]!, /^copy of .*fifo\.cbf to storage external \(\/ext\/fifo\.cbf\) will not be made: .*not a regular file.*; counted failed, not retried$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a delivered file looked at as the copier reads it (G2, G3, docs/threat-model.md)', () => {
  it("refuses a path through a link the same way whatever lies behind it: no name of a directory the user may not search is told, none journaled", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      // The shift's directory o2 swapped for a link to a root-only directory holding a file, and a directory, of
      // two of the delivered names; the third name is not there.
      const secret = path.join(dir, 'secret');
      mkdirSync(secret, { mode: 0o700 });
      writeFileSync(path.join(secret, 'id_rsa.cbf'), 'root only');
      mkdirSync(path.join(secret, 'keys.cbf'));
      mkdirSync(path.join(dir, 'u', 'o2.real'), { recursive: true });
      for (const n of ['id_rsa.cbf', 'keys.cbf', 'gone.cbf']) writeFileSync(path.join(dir, 'u', 'o2.real', n), 'the user\'s');
      symlinkSync(secret, path.join(dir, 'u', 'o2'));
      const accepted: NewFile[] = [];
      const catalog = { shift: async () => undefined, isOnRamdisk: () => true, sourceRootOf: () => dir, refuse: async (_u: bigint, paths: string[]) => paths,
        currentShift: { usertime: 1n }, accept: async (_u: bigint, files: NewFile[]) => { accepted.push(...files); return []; } };
      const published: string[][] = [];
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const intake = new Intake(catalog as unknown as Catalog, { submit: () => undefined, destinations: (rel: string) => [['internal', `/data/${rel}`]] } as unknown as Dispatcher,
        { publish: (...m: string[]) => published.push(m) } as unknown as MessageHub, quiet as unknown as Logger, () => undefined);
      const names = ['id_rsa.cbf', 'keys.cbf', 'gone.cbf'];
      await intake.delivered(1n, 500, 501, names.map((n) => [`${dir}/./u/o2/${n}`, '', '1MF']));
      assert.deepEqual(accepted, [], 'nothing taken, so nothing of the root-only file journaled');
      assert.equal(published.length, 3);
      const said = published.map((m, i) => m[2]!.split(names[i]!).join('NAME'));
      assert.deepEqual(new Set(said).size, 1, `one answer whatever lies behind the link: ${said.join(' | ')}`);
      assert.match(said[0]!, /its path holds a symbolic link/);
      // Root's own AddFile (and the FIFO) are looked at so too.
      const refused = await intake.addMany([`${dir}/./u/o2/id_rsa.cbf`]).catch((e: Error) => [{ path: '', reason: e.message }]);
      assert.match(refused[0]?.reason ?? '', /its path holds a symbolic link/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("an operator's user file with nothing of its path replicated (G3, G8)", () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'targets-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("refuses an operator's user file straight into the targets only when every storage would (owners kept, the target not that user's; reviewer r3)", async () => {
    const a = path.join(root, 'a');
    const b = path.join(root, 'b');
    mkdirSync(a);
    mkdirSync(b);
    const storages = [{ id: 'a', target: a, mountpoint: undefined }, { id: 'b', target: b, mountpoint: undefined }];
    const keeps = (): boolean => true;
    assert.equal(await everyTargetRefuses(storages, keeps, 1002), true, "both root's, owners kept: refused");
    chownSync(b, 1002, 1002);
    assert.equal(await everyTargetRefuses(storages, keeps, 1002), false, "b is the user's own disk: taken, its copy goes there");
    assert.equal(await everyTargetRefuses(storages, keeps, 1003), true, "another user's file: refused");
    assert.equal(await everyTargetRefuses(storages, (id) => id === 'b', 1003), false, 'a keeps no owners: taken');
    assert.equal(await everyTargetRefuses([{ id: 'c', target: path.join(root, 'missing'), mountpoint: undefined }], keeps, 1002), false, 'a target missing decides nothing');
  });
});

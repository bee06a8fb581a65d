// What the fill guards and the shift-change clean-up say while they cannot do their work (G5, G6, G7, G10, G13):
// one message per storage that is not mounted, one per file and try otherwise, never one per file and tick.
// On real tmpfs and bind mounts (tests run as root): the fill state and the mount table are the kernel's.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog, type FileRecord } from '../../src/grimseld/catalog.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';
import { MessageHub, type Message } from '../../src/grimseld/messages.js';
import { Reclaimer, type ReclaimSettings } from '../../src/grimseld/reclaimer.js';
import { fillState } from '../../src/grimseld/mounts.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const WHEN = new Date('2026-03-01T12:00:00Z');
const MB = 1024 * 1024;
const log = pino({ level: 'silent' });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the reclaimer while a storage it needs is not mounted, or a file cannot be linked (G5, G6, G7, G13)', function () {
  this.timeout(30_000);
  let root: string;
  let journal: Journal | undefined;
  const binds: string[] = [];
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'reclaimer-guard-'));
  });
  afterEach(async () => {
    await journal?.close();
    journal = undefined;
    for (const b of binds.splice(0)) try { execFileSync('umount', ['-l', b], { stdio: 'ignore' }); } catch { /* not mounted */ }
    unmountAll();
    rmSync(root, { recursive: true, force: true });
  });

  /** `disk` bind-mounted at `at`: a storage's disk that can be unmounted and mounted again with its files. */
  const bind = (disk: string, at: string): void => {
    mkdirSync(disk, { recursive: true });
    mkdirSync(at, { recursive: true });
    execFileSync('mount', ['--bind', disk, at]);
    binds.push(at);
  };
  const unbind = (at: string): void => { execFileSync('umount', [at]); };

  const write = (p: string, text: string): void => {
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, text);
    utimesSync(p, WHEN, WHEN);
  };

  async function catalogOf(storages: string[], ramdisk: string): Promise<Catalog> {
    const opened = await Journal.open(path.join(root, 'state'));
    journal = opened.journal;
    const catalog = new Catalog(opened.journal, { storages, historyMaxEntries: 50, ramdiskRoot: ramdisk, hasExternal: storages.includes('external') });
    catalog.replay(opened.records);
    await catalog.shift(1n, 500, 501);
    return catalog;
  }

  /** `n` files of shift 1 delivered to `ramdisk` (written there when `onRamdisk`), copied to each of `copies` (base directories). */
  async function deliver(catalog: Catalog, ramdisk: string, n: number, copies: Record<string, string>, onRamdisk = true): Promise<FileRecord[]> {
    const files = [];
    for (let i = 0; i < n; i++) {
      const rel = `1mf/u/run/f_${String(i).padStart(3, '0')}.cbf`;
      const text = `frame ${i}`.padEnd(1000, '.');
      for (const base of [...(onRamdisk ? [ramdisk] : []), ...Object.values(copies)]) write(path.join(base, rel), text);
      const st = onRamdisk ? statSync(path.join(ramdisk, rel)) : { size: text.length, mtimeMs: WHEN.getTime(), ino: i + 1, dev: 1 };
      files.push({ src: path.join(ramdisk, rel), rel, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev });
    }
    const recs = await catalog.accept(1n, files);
    for (const rec of recs) for (const id of Object.keys(copies)) await catalog.setCopy(rec, id, 'copied');
    return recs;
  }

  function reclaimerOf(catalog: Catalog, internal: StorageInfo, external: StorageInfo | undefined, settings: Partial<ReclaimSettings> & Pick<ReclaimSettings, 'ramdiskRoot' | 'ramdiskMountpoint'>):
    { reclaimer: Reclaimer; messages: Message[] } {
    const hub = new MessageHub(log);
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    const reclaimer = new Reclaimer(catalog, internal, external, {
      createLinks: true, fillLimitPercent: 50, intervalMs: 5, deleteRetryMs: 1000, ...settings,
    }, hub, log);
    return { reclaimer, messages };
  }

  /** Runs `reclaimer` for `ms`, or until `done` holds. */
  async function runFor(reclaimer: Reclaimer, ms: number, done: () => boolean = () => false): Promise<void> {
    const stop = new AbortController();
    const running = reclaimer.run(stop.signal);
    try {
      for (const end = Date.now() + ms; !done() && Date.now() < end;) await sleep(10);
    } finally {
      stop.abort();
      await running;
    }
  }

  const codes = (messages: Message[], code: string): Message[] => messages.filter((m) => m.errcode === code);

  it('G6 with the internal disk unmounted: one LINK_ERROR naming the mount point, not one per file and tick; links once it is back', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const disk = path.join(root, 'disk');
    const internalAt = path.join(root, 'internal');
    bind(disk, internalAt);
    const catalog = await catalogOf(['internal'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 100, { internal: path.join(internalAt, 'data') });
    const srcs = recs.map((r) => r.src); // a settled record is no longer readable
    writeFileSync(path.join(ramdisk, 'filler'), Buffer.alloc(3 * MB, 1)); // above the limit, and no guard can help it
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, undefined, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk });
    unbind(internalAt);
    await runFor(reclaimer, 1500); // some 300 ticks of the guard, each of which tried all 100 files
    const errors = codes(messages, 'LINK_ERROR');
    assert.equal(errors.length, 1, `one LINK_ERROR for the storage: ${errors.length}, ${JSON.stringify(errors.slice(0, 3))}`);
    assert.equal(errors[0]!.shortMessage, internalAt, 'naming the mount point');
    assert.match(errors[0]!.longMessage, new RegExp(`storage internal: ${internalAt} is not mounted; .*100 originals`));
    assert.ok(recs.every((r) => r.ramdisk === 'present' && lstatSync(r.src).isFile()), 'nothing touched');
    execFileSync('mount', ['--bind', disk, internalAt]);
    await runFor(reclaimer, 10_000, () => recs.every((r) => !catalog.isLive(r) || r.ramdisk === 'linked'));
    assert.ok(srcs.every((s) => lstatSync(s).isSymbolicLink()), 'every original linked once the disk is back');
    assert.equal(codes(messages, 'LINK_ERROR').length, 1, 'and nothing more said');
  });

  it('G7 with the external disk unmounted: one LINK_ERROR naming its mount point, not one per file and tick', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB); // empty: its guard has nothing to do
    const internalAt = mountTmpfs(path.join(root, 'internal'), 4 * MB);
    const externalAt = path.join(root, 'external');
    bind(path.join(root, 'extdisk'), externalAt);
    const catalog = await catalogOf(['internal', 'external'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 100, { internal: path.join(internalAt, 'data'), external: path.join(externalAt, 'data') }, false);
    for (const rec of recs) await catalog.setOrigin(rec, 'ramdisk', 'deleted');
    writeFileSync(path.join(internalAt, 'filler'), Buffer.alloc(3 * MB, 1));
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const external: StorageInfo = { id: 'external', type: 'EXTERNAL', target: path.join(externalAt, 'data'), mountpoint: externalAt, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, external, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk });
    unbind(externalAt);
    await runFor(reclaimer, 1500);
    const errors = codes(messages, 'LINK_ERROR');
    assert.equal(errors.length, 1, `one LINK_ERROR for the storage: ${errors.length}, ${JSON.stringify(errors.slice(0, 3))}`);
    assert.equal(errors[0]!.shortMessage, externalAt);
    assert.match(errors[0]!.longMessage, new RegExp(`storage external: ${externalAt} is not mounted`));
    assert.ok(recs.every((r) => r.internal === 'present'), 'no internal copy touched');
  });

  it('G6 counts every original that waits for an unmounted storage in its one LINK_ERROR, however many slices the round takes', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const internalAt = path.join(root, 'internal');
    const externalAt = path.join(root, 'external');
    bind(path.join(root, 'extdisk'), externalAt);
    const catalog = await catalogOf(['internal', 'external'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 10, { internal: path.join(internalAt, 'data'), external: path.join(externalAt, 'data') });
    // Every other file's internal copy was replaced by a link to its external copy (G7): its original is checked
    // against the external disk, which is taken away; the others are linked, one per slice.
    for (const rec of recs.filter((_, i) => i % 2 === 0)) await catalog.setOrigin(rec, 'internal', 'linked');
    writeFileSync(path.join(ramdisk, 'filler'), Buffer.alloc(3 * MB, 1));
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: undefined, writers: 1 };
    const external: StorageInfo = { id: 'external', type: 'EXTERNAL', target: path.join(externalAt, 'data'), mountpoint: externalAt, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, external, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, cleanSliceMs: 0 });
    unbind(externalAt);
    const linked = recs.filter((_, i) => i % 2 === 1);
    await runFor(reclaimer, 10_000, () => linked.every((r) => r.ramdisk === 'linked') && codes(messages, 'LINK_ERROR').length > 0);
    assert.ok(linked.every((r) => r.ramdisk === 'linked'), 'the originals whose copy is at hand linked');
    const errors = codes(messages, 'LINK_ERROR');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.longMessage, new RegExp(`storage external: ${externalAt} is not mounted; .*, and 5 originals there `));
  });

  it("G7 leaves an ended shift's internal copy while its ramdisk original still needs it; the clean-up deletes both (G5, G7)", async () => {
    // Found by a hostile tester: the internal guard deleted the internal copies of an ended shift while its clean-up
    // (cut into slices) had not yet deleted their originals on the ramdisk, which then stayed for good, each deletion
    // refused with "its copy ... is missing".
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const internalAt = mountTmpfs(path.join(root, 'internal'), 4 * MB);
    const external = path.join(root, 'external');
    const catalog = await catalogOf(['internal', 'external'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 20, { internal: path.join(internalAt, 'data'), external });
    const srcs = recs.map((r) => r.src); // a settled record is no longer readable
    writeFileSync(path.join(internalAt, 'filler'), Buffer.alloc(3 * MB, 1)); // the internal disk over its limit
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const ext: StorageInfo = { id: 'external', type: 'EXTERNAL', target: external, mountpoint: undefined, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, ext, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, cleanSliceMs: 0 });
    await catalog.shift(2n, 600, 601);
    reclaimer.shiftStarted();
    await runFor(reclaimer, 5000, () => recs.every((r) => !catalog.isLive(r)));
    assert.deepEqual(codes(messages, 'DEL_ERROR'), []);
    assert.deepEqual(srcs.filter((s) => existsSync(s)), [], 'every original of the ended shift deleted from the ramdisk');
    assert.ok(recs.every((r) => !catalog.isLive(r)), 'every record settled');
  });

  it("G7 and the ramdisk's alarms go on while the ramdisk guard works through a long round, not only after it (G6, G7, G10)", async () => {
    // Found by a hostile tester: the internal guard waited for the ramdisk guard's whole round (one journal entry
    // per link, 7 296 links), the internal disk filled to 100 % meanwhile, and the ramdisk's ALMOST_OVERFLOW was not
    // said although it stood at 97-99.8 % for 34 s.
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const internalAt = mountTmpfs(path.join(root, 'internal'), 4 * MB);
    const external = path.join(root, 'external');
    const catalog = await catalogOf(['internal', 'external'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 100, { internal: path.join(internalAt, 'data'), external });
    writeFileSync(path.join(ramdisk, 'filler'), Buffer.alloc(Math.round(2.4 * MB), 1)); // over the limit (50 %): a link frees little
    writeFileSync(path.join(internalAt, 'filler'), Buffer.alloc(3 * MB, 1)); // the internal disk over it too
    const present = (): number => recs.filter((r) => catalog.isLive(r) && r.ramdisk === 'present').length;
    // Each ramdisk link journaled slowly (a busy disk); after the first few the detector fills the ramdisk up to 97 %.
    let ramdiskLinks = 0;
    const noteLinkDir = catalog.noteLinkDir.bind(catalog);
    catalog.noteLinkDir = async (u, d) => {
      if (d.where === 'ramdisk') {
        if (++ramdiskLinks === 5) writeFileSync(path.join(ramdisk, 'more'), Buffer.alloc(Math.round(1.1 * MB), 2));
        await sleep(20);
      }
      await noteLinkDir(u, d);
    };
    let leftAtInternalLink = -1;
    const setOrigin = catalog.setOrigin.bind(catalog);
    catalog.setOrigin = async (rec, where, state) => {
      if (where === 'internal' && state === 'linked' && leftAtInternalLink < 0) leftAtInternalLink = present();
      await setOrigin(rec, where, state);
    };
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const ext: StorageInfo = { id: 'external', type: 'EXTERNAL', target: external, mountpoint: undefined, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, ext, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk });
    let leftAtAlarm = -1;
    const push = messages.push.bind(messages);
    messages.push = (...m: Message[]): number => {
      if (leftAtAlarm < 0 && m.some((x) => x.errcode === 'ALMOST_OVERFLOW' && x.shortMessage === ramdisk)) leftAtAlarm = present();
      return push(...m);
    };
    await runFor(reclaimer, 15_000, () => present() === 0 && leftAtInternalLink >= 0 && leftAtAlarm >= 0);
    assert.ok(leftAtInternalLink > 0, `the internal guard linked while the ramdisk guard's round went on (${leftAtInternalLink} of 100 left)`);
    assert.ok(leftAtAlarm > 0, `the ramdisk's ALMOST_OVERFLOW said while the round went on (${leftAtAlarm} of 100 left)`);
    assert.equal(present(), 0, 'every ramdisk original linked in the end');
  });

  it('G5 with the internal disk unmounted at a shift change: one DEL_ERROR naming the mount point, not one per file and try', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const disk = path.join(root, 'disk');
    const internalAt = path.join(root, 'internal');
    bind(disk, internalAt);
    const catalog = await catalogOf(['internal'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 20, { internal: path.join(internalAt, 'data') });
    const srcs = recs.map((r) => r.src); // a settled record is no longer readable
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, undefined, {
      ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, fillLimitPercent: 101, deleteRetryMs: 200,
    });
    unbind(internalAt);
    await catalog.shift(2n, 600, 601);
    reclaimer.shiftStarted();
    await runFor(reclaimer, 1500); // retries after 200, 400, 800 ms: 80 DEL_ERRORs if each file were said
    const errors = codes(messages, 'DEL_ERROR');
    assert.equal(errors.length, 1, `one DEL_ERROR for the storage: ${errors.length}, ${JSON.stringify(errors.slice(0, 3))}`);
    assert.equal(errors[0]!.shortMessage, internalAt);
    assert.match(errors[0]!.longMessage, new RegExp(`${internalAt} is not mounted`));
    assert.ok(recs.every((r) => catalog.isLive(r) && existsSync(r.src)), 'every original kept');
    execFileSync('mount', ['--bind', disk, internalAt]);
    await runFor(reclaimer, 5000, () => recs.every((r) => !catalog.isLive(r)));
    assert.ok(srcs.every((s) => !existsSync(s)), 'deleted once the disk is back, without another shift change');
  });

  it('a guard round goes on past an original a user removed, the storage mounted (G6, G13)', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const disk = path.join(root, 'disk');
    const internalAt = path.join(root, 'internal');
    bind(disk, internalAt);
    const catalog = await catalogOf(['internal'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 3, { internal: path.join(internalAt, 'data') });
    const srcs = recs.map((r) => r.src);
    writeFileSync(path.join(ramdisk, 'filler'), Buffer.alloc(3 * MB, 1));
    rmSync(srcs[0]!); // the oldest: noted gone, and so settled, by its try
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(internalAt, 'data'), mountpoint: internalAt, writers: 1 };
    const errors: string[] = [];
    const hub = new MessageHub(log);
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    const reclaimer = new Reclaimer(catalog, internal, undefined, {
      ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, createLinks: true, fillLimitPercent: 50, intervalMs: 5,
    }, hub, pino({ level: 'error' }, { write: (line: string) => { errors.push(line); } }));
    await runFor(reclaimer, 3000, () => recs.every((r) => !catalog.isLive(r)));
    assert.deepEqual(errors, [], 'no round given up');
    assert.ok(srcs.slice(1).every((s) => lstatSync(s).isSymbolicLink()), 'the others linked');
    assert.deepEqual(messages.filter((m) => m.errcode !== 'FILLSTATE_LIMIT' && m.errcode !== 'ALMOST_OVERFLOW'), []);
  });

  it('a link that fails is said once per file and try, and tried again after its pause (G6)', async () => {
    const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
    const target = path.join(root, 'internal');
    const catalog = await catalogOf(['internal'], ramdisk);
    const recs = await deliver(catalog, ramdisk, 20, { internal: target });
    const srcs = recs.map((r) => r.src); // a settled record is no longer readable
    writeFileSync(path.join(ramdisk, 'filler'), Buffer.alloc(3 * MB, 1));
    const moved = `${target}.away`;
    execFileSync('mv', [target, moved]); // every copy missing: each link refused
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target, mountpoint: undefined, writers: 1 };
    const { reclaimer, messages } = reclaimerOf(catalog, internal, undefined, { ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, deleteRetryMs: 1500 });
    const stop = new AbortController();
    const running = reclaimer.run(stop.signal);
    try {
      await sleep(1000); // 200 ticks, inside the first pause
      const errors = codes(messages, 'LINK_ERROR');
      assert.equal(errors.length, 20, `one LINK_ERROR per file: ${errors.length}`);
      assert.deepEqual(new Set(errors.map((m) => m.shortMessage)), new Set(srcs), 'each naming its file');
      assert.match(errors[0]!.longMessage, new RegExp(`the target ${target} of storage internal is missing`), 'said as what it is, not as ENOENT');
      execFileSync('mv', [moved, target]);
      for (const end = Date.now() + 5000; recs.some((r) => catalog.isLive(r) && r.ramdisk !== 'linked') && Date.now() < end;) await sleep(10);
    } finally {
      stop.abort();
      await running;
    }
    assert.ok(srcs.every((s) => lstatSync(s).isSymbolicLink()), 'linked at the next try, once the copies are there');
    assert.equal(codes(messages, 'LINK_ERROR').length, 20, 'no more said');
  });
});

describe('the fill-state alarms of a steadily filling ramdisk (G6, G10)', function () {
  this.timeout(30_000);
  let root: string;
  let journal: Journal | undefined;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'reclaimer-alarm-'));
  });
  afterEach(async () => {
    await journal?.close();
    journal = undefined;
    unmountAll();
    rmSync(root, { recursive: true, force: true });
  });

  for (const limit of [50, 95]) {
    const expected = limit >= 95 ? ['FILLSTATE_LIMIT', 'ALMOST_OVERFLOW'] : ['FILLSTATE_LIMIT'];
    it(`limit ${limit} %: ${expected.join(' and ')} once while the guard holds the fill at the limit, again only after it has dropped clearly below`, async () => {
      const ramdisk = mountTmpfs(path.join(root, 'ramdisk'), 4 * MB);
      const copies = path.join(root, 'internal');
      const opened = await Journal.open(path.join(root, 'state'));
      journal = opened.journal;
      const catalog = new Catalog(opened.journal, { storages: ['internal'], historyMaxEntries: 50, ramdiskRoot: ramdisk, hasExternal: false });
      catalog.replay(opened.records);
      await catalog.shift(1n, 500, 501);
      const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: copies, mountpoint: undefined, writers: 1 };
      const hub = new MessageHub(log);
      const messages: Message[] = [];
      hub.subscribe((m) => messages.push(m));
      const reclaimer = new Reclaimer(catalog, internal, undefined, {
        ramdiskRoot: ramdisk, ramdiskMountpoint: ramdisk, createLinks: false, fillLimitPercent: limit, intervalMs: 5, deleteRetryMs: 1000,
      }, hub, log);
      // A detector delivering 16 KiB files (0.4 % of the ramdisk), each copied at once: the guard deletes the oldest
      // to just below the limit, and the next file crosses it again.
      let n = 0;
      const deliverOne = async (): Promise<void> => {
        const rel = `1mf/u/run/f_${String(n++).padStart(5, '0')}.cbf`;
        const bytes = Buffer.alloc(16 * 1024, n);
        for (const base of [ramdisk, copies]) {
          mkdirSync(path.join(base, path.dirname(rel)), { recursive: true });
          writeFileSync(path.join(base, rel), bytes);
          utimesSync(path.join(base, rel), WHEN, WHEN);
        }
        const st = statSync(path.join(ramdisk, rel));
        const [rec] = await catalog.accept(1n, [{ src: path.join(ramdisk, rel), rel, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev }]);
        await catalog.setCopy(rec!, 'internal', 'copied');
      };
      const count = (code: string): number => messages.filter((m) => m.errcode === code).length;
      /** Delivers `files` files, one every 10 ms, or fewer once `done`: counted, not timed (a loaded machine is slow). */
      const deliverMany = async (files: number, done: () => boolean = () => false): Promise<void> => {
        for (let i = 0; i < files && !done(); i++) {
          await deliverOne();
          await sleep(10);
        }
      };
      // Before the guard runs: 20 % that the operator frees later, and delivered files up to just below the limit.
      writeFileSync(path.join(ramdisk, 'operator-file'), Buffer.alloc(Math.round(0.2 * 4 * MB), 1));
      while ((await fillState(ramdisk)).percent < limit - 1.5) await deliverOne();
      const stop = new AbortController();
      const running = reclaimer.run(stop.signal);
      try {
        await deliverMany(200); // a fifth of the ramdisk each 50: the limit crossed again and again
        for (const code of expected) assert.equal(count(code), 1, `${code} once: ${JSON.stringify(messages.map((m) => [m.errcode, m.longMessage]))}`);
        assert.equal(count('DISK_OVERFLOW'), 0);
        // The operator frees a fifth of the ramdisk: the next time the fill reaches the limit it is said again.
        rmSync(path.join(ramdisk, 'operator-file'));
        await deliverMany(1000, () => expected.every((code) => count(code) === 2));
        for (const code of expected) assert.equal(count(code), 2, `${code} again after the fill dropped: ${count(code)}`);
      } finally {
        stop.abort();
        await running;
      }
    });
  }
});

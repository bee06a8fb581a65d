// The sweep of stale copy temp files (G3, G12; docs/threat-model.md): it removes them from the storage's target and
// from directories where copies failed, never through a link a user put in place of such a directory, and
// never a file grimseld did not make, whatever its name (temp-names.ts).
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync,
  unlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { TempSweeper } from '../../src/grimseld/temp-sweep.js';
import type { CopyListener } from '../../src/grimseld/dispatcher.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';
import { copyMany } from '../../src/grimseld/copier.js';
import { prepareCopies } from '../../src/grimseld/copy-check.js';
import { loadTempKey, SUFFIX_HEX, TEMP_KEY_FILE, tempName } from '../../src/grimseld/temp-names.js';
import { tempPrefix } from '../../src/common/name-max.js';

const silent = pino({ level: 'silent' });

describe('stale temp files on the storages (G3, G12)', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'temp-sweep-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("removes them where a copy failed, and nothing through a link the user swapped in for that directory", async () => {
    const target = path.join(root, 'storage');
    const run = path.join(target, '1mf/u/run');
    const victim = path.join(root, 'victim');
    mkdirSync(run, { recursive: true });
    mkdirSync(path.join(victim, 'run'), { recursive: true });
    const key = randomBytes(32);
    const temp = tempName(key, 'x.img');
    for (const d of [target, run, path.join(victim, 'run')]) writeFileSync(path.join(d, temp), 'stale');
    const storage: StorageInfo = { id: 'st', type: 'OPTIONAL', target, mountpoint: undefined, writers: 1 };
    let observed: CopyListener = {};
    const sweeper = new TempSweeper([storage], { onCopy: (l) => { observed = l; return () => undefined; } }, key, 60_000, silent, () => Date.now() + 3_600_000);
    const failed = (dest: string): void => observed.reported!({ job: { id: 1, storage: 'st', from: 'original', src: '/r/x.img', root: '/r', rel: 'x.img', dest, expect: { size: 1, mtimeMs: 1 }, sweep: false }, dest, outcome: new Error('failed') });

    failed(path.join(run, 'x.img'));
    renameSync(path.join(target, '1mf/u'), path.join(target, '1mf/u.real'));
    symlinkSync(victim, path.join(target, '1mf/u'));
    assert.deepEqual(await sweeper.sweep(), [path.join(target, temp)], 'the target swept, the linked directory not');
    assert.ok(existsSync(path.join(victim, 'run', temp)), "the victim's file stays");

    unlinkSync(path.join(target, '1mf/u')); // the link
    renameSync(path.join(target, '1mf/u.real'), path.join(target, '1mf/u'));
    failed(path.join(run, 'x.img'));
    assert.deepEqual(await sweeper.sweep(), [path.join(run, temp)]);
  });

  it('leaves the temp file of a copy still running however old the clock makes it look (a step forward), and removes it once that copy is reported', async () => {
    const target = path.join(root, 'storage');
    mkdirSync(target);
    const key = randomBytes(32);
    const running = tempName(key, 'slow.img');
    const stale = tempName(key, 'killed.img');
    for (const n of [running, stale]) writeFileSync(path.join(target, n), 'part of a copy');
    const storage: StorageInfo = { id: 'st', type: 'INTERNAL', target, mountpoint: undefined, writers: 1 };
    let observed: CopyListener = {};
    // The wall clock was stepped an hour forward since the copy last wrote its temp file.
    const sweeper = new TempSweeper([storage], { onCopy: (l) => { observed = l; return () => undefined; } }, key, 60_000, silent, () => Date.now() + 3_600_000);
    const job = { id: 1, storage: 'st', from: 'original' as const, src: '/r/slow.img', root: '/r', rel: 'slow.img', dest: path.join(target, 'slow.img'),
      expect: { size: 1, mtimeMs: 1 }, sweep: false };
    observed.taken!(job);
    observed.taken!(job); // taken again (a retry) before the first one's report: still running after one report
    assert.deepEqual(await sweeper.sweep(), [path.join(target, stale)], "only the killed copy's temp file");
    observed.reported!({ job, dest: job.dest, outcome: new Error('failed') });
    assert.deepEqual(await sweeper.sweep(), [], 'one of the two still runs');
    observed.reported!({ job, dest: job.dest, outcome: new Error('failed') });
    assert.deepEqual(await sweeper.sweep(), [path.join(target, running)], 'a leftover once no copy of that name runs');
  });

  it("never removes a user's file named like a temp file, copied to the storage, while a stale temp file grimseld made goes (G12)", async () => {
    await prepareCopies();
    const ramdisk = path.join(root, 'ramdisk');
    const target = path.join(root, 'storage');
    mkdirSync(ramdisk);
    const key = randomBytes(32);
    // Every form a user might try: the temp names of a release before the key, and the present form with a
    // MAC that is not grimseld's.
    const users = ['.b.cbf.grimsel-0123abcd', `${tempPrefix('c.cbf', '.grimsel-', SUFFIX_HEX)}${'0'.repeat(SUFFIX_HEX)}`, tempName(randomBytes(32), 'd.cbf')];
    for (const n of users) writeFileSync(path.join(ramdisk, n), `image ${n}`);
    const copied = copyMany(users.map((n) => {
      const st = statSync(path.join(ramdisk, n));
      return { src: path.join(ramdisk, n), root: ramdisk, dest: path.join(target, n), expect: { size: st.size, mtimeMs: st.mtimeMs }, sweep: true };
    }), target, { preserveUid: false, preserveGid: false, tempKey: key });
    assert.deepEqual(copied.map((r) => (r instanceof Error ? r.message : r.outcome)), users.map(() => 'copied'));
    // A temp file a killed copy left, in the storage's root.
    const stale = tempName(key, 'e.cbf');
    writeFileSync(path.join(target, stale), 'half a copy');
    const storage: StorageInfo = { id: 'st', type: 'INTERNAL', target, mountpoint: undefined, writers: 1 };
    const sweeper = new TempSweeper([storage], { onCopy: () => () => undefined }, key, 60_000, silent, () => Date.now() + 86_400_000);
    assert.deepEqual(await sweeper.sweep(), [path.join(target, stale)], 'only the temp file grimseld made');
    assert.deepEqual(readdirSync(target).sort(), [...users].sort());
    for (const n of users) assert.equal(readFileSync(path.join(target, n), 'utf8'), `image ${n}`, `${n} kept whole`);
  });

  it('keeps the key of temp names in state_dir, 0600, made once, and goes on without it where it cannot be kept', () => {
    const state = path.join(root, 'state');
    mkdirSync(state);
    const key = loadTempKey(state, silent);
    const file = path.join(state, TEMP_KEY_FILE);
    assert.equal(lstatSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(state), [TEMP_KEY_FILE], 'no side file left');
    assert.deepEqual(Buffer.from(loadTempKey(state, silent)), Buffer.from(key), 'the same key at the next start: a killed run\'s temp files are still ours');
    const gone = path.join(root, 'no-such-dir');
    assert.equal(loadTempKey(gone, silent).length, 32, 'a key for this run where none can be kept');
    assert.ok(!existsSync(gone));
  });
});

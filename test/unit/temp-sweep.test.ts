// The sweep of stale copy temp files (G3, G12; docs/threat-model.md): it removes them from the storage's target and
// from directories where copies failed, and never through a link a user put in place of such a directory.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, unlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { TempSweeper } from '../../src/grimseld/temp-sweep.js';
import type { CopyListener } from '../../src/grimseld/dispatcher.js';
import type { StorageInfo } from '../../src/grimseld/storage-info.js';

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
    const temp = '.x.img.grimsel-0badc0de';
    for (const d of [target, run, path.join(victim, 'run')]) writeFileSync(path.join(d, temp), 'stale');
    const storage: StorageInfo = { id: 'st', type: 'OPTIONAL', target, mountpoint: undefined, writers: 1 };
    let observed: CopyListener = {};
    const sweeper = new TempSweeper([storage], { onCopy: (l) => { observed = l; return () => undefined; } }, 60_000, pino({ level: 'silent' }), () => Date.now() + 3_600_000);
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
});

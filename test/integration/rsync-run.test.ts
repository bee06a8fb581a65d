// One rsync run as furkad makes it, against a real rsync daemon: removals reported per file, and a clean
// run ended in its idle tail without hiding a failure or cutting a wrapper short (F2, F9, F10).
import { strict as assert } from 'node:assert';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../fixtures/ppu.js';
import { listFiles, writeImage } from '../fixtures/files.js';
import { markFixture } from '../fixtures/processes.js';
import { startRsyncDaemon, type RsyncDaemon } from '../fixtures/rsync-daemon.js';
import { runRsync, type RsyncRun } from '../../src/furkad/rsync.js';

describe('one rsync run against a real detector daemon (F2, F9)', function () {
  this.timeout(60_000);
  let work: string;
  let detector: string;
  let daemon: RsyncDaemon;
  let run: RsyncRun;

  before(async () => {
    work = tempDir('rsync-run');
    detector = path.join(work, 'detector');
    mkdirSync(detector);
    daemon = await startRsyncDaemon(detector, work);
    markFixture(daemon.proc);
  });
  beforeEach(() => {
    const dest = path.join(work, `dest-${Date.now()}`);
    mkdirSync(dest);
    run = { rsync: 'rsync', host: '127.0.0.1', port: daemon.port, module: 'ramdisk', source: '/', dest, uid: 0, gid: 0,
      removeSource: true, exclude: [], timeoutS: 10 };
  });
  after(async () => {
    await daemon?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('reports each removed source while the run goes on and ends a clean run in its idle tail with exit 0', async () => {
    // rsync's client sleeps only when its receiver has not exited yet at its first look, which is a race
    // inside rsync: some runs have no tail to cut. Each of ten runs must be clean; at least one must be cut.
    let cut = 0;
    for (let i = 0; i < 10; i++) {
      const names = [`a${i}/img_1.cbf`, `a${i}/img_2.cbf`, `b${i}/img_3.cbf`];
      for (const rel of names) writeImage(detector, rel, 200_000);
      const batches: string[][] = [];
      const r = await runRsync(run, undefined, (n) => batches.push(n));
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([...r.removed].sort(), names);
      assert.deepEqual(batches.flat().sort(), names, 'every removal heard through the callback');
      assert.deepEqual(listFiles(detector), [], 'sources removed');
      assert.deepEqual(listFiles(run.dest).filter((f) => names.includes(f)), names, 'all in staging');
      if (r.tailCut) cut++;
    }
    assert.ok(cut > 0, "the client's 20 ms sleep after its receiver exited was cut short in at least one run");
  });

  it('leaves a failing run alone: its exit code and message stand', async () => {
    const r = await runRsync({ ...run, module: 'nosuchmodule' });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /Unknown module 'nosuchmodule'/);
    assert.notEqual(r.tailCut, true);
  });

  it('never ends a wrapper given as rsync_path early, so the wrapper finishes its own work', async () => {
    const wrapper = path.join(work, 'wrapped-rsync');
    const marker = path.join(work, 'wrapper-done');
    writeFileSync(wrapper, `#!/bin/sh\nrsync "$@"\nrc=$?\nsleep 0.05\necho $rc > '${marker}'\nexit $rc\n`);
    chmodSync(wrapper, 0o755);
    writeImage(detector, 'w/img.cbf', 10_000);
    const r = await runRsync({ ...run, rsync: wrapper });
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(r.tailCut, true);
    assert.deepEqual(readdirSync(work).filter((f) => f === 'wrapper-done'), ['wrapper-done'], 'the wrapper ran to its end');
  });
});

// One rsync run as furkad makes it, against a real rsync daemon: removals reported per file, and a clean
// run ended in its idle tail without hiding a failure or cutting a wrapper short (F2, F9, F10); and a run
// started ahead, held until it is due.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';
import { markFixture } from '../fixtures/processes.js';
import { startRsyncDaemon, type RsyncDaemon } from '../fixtures/rsync-daemon.js';
import { SilentProxy } from '../fixtures/silent-proxy.js';
import { runRsync, RsyncLauncher, type RsyncRun } from '../../src/furkad/rsync.js';
import { writeNamesFilter } from '../../src/furkad/rsync-names.js';

describe('one rsync run against a real detector daemon (F2, F5, F9)', function () {
  this.timeout(60_000);
  let work: string;
  let detector: string;
  let daemon: RsyncDaemon;
  let run: RsyncRun;
  const parentOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]);
  const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));

  before(async () => {
    work = tempDir('rsync-run');
    detector = path.join(work, 'detector');
    mkdirSync(detector);
    // Asking for a password, as the shipped daemon does: every run here logs in (a run started ahead too).
    daemon = await startRsyncDaemon(detector, work, undefined, { password: 'run-test-password-0123456789' });
    markFixture(daemon.proc);
  });
  beforeEach(() => {
    const dest = path.join(work, `dest-${Date.now()}`);
    mkdirSync(dest);
    run = { rsync: 'rsync', host: '127.0.0.1', port: daemon.port, module: 'ramdisk', source: '/', dest, uid: 0, gid: 0, user: 'furkad', password: daemon.password!,
      removeSource: true, exclude: [], namesFilter: writeNamesFilter(work), timeoutS: 10 };
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

  it('takes exactly the names furkad can hand over and reports the others hidden, left on the detector (F1, F2)', async () => {
    const l = (s: string): Buffer => Buffer.from(s, 'latin1');
    // Valid UTF-8 at every edge of table 3-7 (U+0085 and U+FFFD included: characters, not errors).
    const valid = ['plain', 'sp ace', '-dash', 'back\\#351', 'Ä', '€', '😀', '\u0085', '\ufffd', '\ud7ff', '\ue000', '\u{10ffff}', '\u0800', '\u{10000}']
      .map((n) => Buffer.from(`${n}.img`));
    const invalid = ['\x80x', 'a\x80', '\xc0\xaf', '\xc1\xbf', '\xe0\x80\x80', '\xe0\x9f\xbf', '\xed\xa0\x80', '\xed\xbf\xbf', '\xf0\x80\x80\x80',
      '\xf0\x8f\xbf\xbf', '\xf4\x90\x80\x80', '\xf5\x80\x80\x80', '\xff', '\xe2\x82', '\xe2\x82x', '\xc3', '\xc3x', '\xc3\xa9\xa9',
      '\xe2\x82\xac\xac', '\xf0\x9f\x98', '\xf0\x9f\x98\x80\x80', '\xf0\x9f', '\xf0', 'new\nline', 'tab\t', 'del\x7f', 'soh\x01', 'us\x1f']
      .map((n) => l(`bad-${n}.img`));
    const dir = Buffer.concat([Buffer.from(`${detector}/names/`)]);
    mkdirSync(dir, { recursive: true });
    for (const n of [...valid, ...invalid]) writeFileSync(Buffer.concat([dir, n]), n);
    const r = await runRsync(run);
    assert.equal(r.code, 0, r.stderr);
    const key = (b: Buffer): string => b.toString('hex');
    const left = readdirSync(dir, { encoding: 'buffer' }).map(key).sort();
    assert.deepEqual(left, invalid.map(key).sort(), 'every name furkad cannot hand over left on the detector, no other');
    assert.deepEqual(readdirSync(Buffer.from(path.join(run.dest, 'names')), { encoding: 'buffer' }).map(key).sort(), valid.map(key).sort(), 'every other one pulled');
    assert.deepEqual([...r.removed].sort(), valid.map((b) => `names/${b.toString('utf8')}`).sort());
    assert.deepEqual(r.hidden.map(key).sort(), invalid.map((b) => key(Buffer.concat([Buffer.from('names/'), b]))).sort(), 'each reported hidden');
    assert.deepEqual(r.strays, []);
    rmSync(path.join(detector, 'names'), { recursive: true });
  });

  it('leaves exactly the files it is told to skip on the detector, whatever their names (rsync-removal.ts, F2)', async () => {
    // Names with rsync's wildcard characters and its escape, spaces, a leading '#' or ';' (comments in a filter file).
    const skip = ['skip/a*b?[1].img', 'skip/back\\slash.img', 'skip/both\\*.img', 'skip/sp ace .img', 'skip/#hash.img', 'skip/;semi.img', 'skip/deep/er.img'];
    // Ones the patterns must not match as wildcards would: each is taken.
    const take = ['skip/aXbY1.img', 'skip/a*bY[1].img', 'skip/backXslash.img', 'skip/both\\X.img', 'skip/sp ace.img', 'skip/er.img', 'other/deep/er.img'];
    for (const rel of [...skip, ...take]) writeImage(detector, rel, 100);
    const r = await runRsync({ ...run, skip });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listFiles(detector), [...skip].sort(), 'the skipped ones left on the detector, no other');
    assert.deepEqual(listFiles(run.dest), [...take].sort(), 'every other one pulled');
    rmSync(path.join(detector, 'skip'), { recursive: true });
  });

  // rsync's --timeout does not fire when the daemon goes silent mid-file (rsync-stall.ts): furkad ends such a run.
  it('ends a run whose daemon goes silent in the middle of a file, the file left on the detector and no partial copy kept (F10)', async () => {
    const proxy = await SilentProxy.start(() => daemon.port);
    try {
      const big = writeImage(detector, 'silent/big.bin', 8 << 20);
      const tempDir = path.join(work, `temp-${Date.now()}`);
      mkdirSync(tempDir);
      proxy.silenceAfter = 1 << 20;
      // 5 s: at 2, rsync's own timeout races its keep-alives and sometimes fires (rsync-stall.ts says why it does not at 30).
      const r = await runRsync({ ...run, port: proxy.port, tempDir, timeoutS: 5 });
      assert.equal(proxy.silenced, 1, 'the link went silent in the middle of the file');
      assert.equal(r.stalled, true, r.stderr);
      assert.equal(r.code, 30, 'a timeout, as rsync would have said');
      assert.deepEqual([r.files, r.sent, [...r.removed]], [[], [], []], 'the file being received is no file of the run');
      assert.deepEqual(listFiles(detector).filter((f) => f.startsWith('silent/')), ['silent/big.bin'], 'the source stays on the detector');
      assert.deepEqual(readdirSync(tempDir), [], 'the partial copy is gone');
      assert.deepEqual(listFiles(run.dest), []);
      proxy.release();
      const again = await runRsync({ ...run, port: proxy.port, tempDir, timeoutS: 2 });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual([...again.removed], ['silent/big.bin'], 'taken by the next run once the link is back');
      assert.equal(sha256File(readFileSync(path.join(run.dest, 'silent/big.bin'))), big.sha256, 'intact');
    } finally {
      proxy.release();
      await proxy.close();
      rmSync(path.join(detector, 'silent'), { recursive: true, force: true });
    }
  });

  // A wrapper given as rsync_path that ignores SIGTERM and has more to do after rsync (killed once its grace is
  // over), and one that does not exec rsync (SIGTERM would end it alone and leave rsync running, holding the pipes).
  for (const [kind, body, killed] of [['ignores SIGTERM', `trap '' TERM\nrsync "$@"\nsleep 30\n`, true], ['does not exec rsync', 'rsync "$@"\n', false]] as const) {
    it(`ends a run its signal ended, rsync below a wrapper that ${kind} included, long before rsync_timeout_s: a shift change waits for it (F6)`, async () => {
      const proxy = await SilentProxy.start(() => daemon.port);
      const wrapper = path.join(work, `wrapper-${killed}`);
      writeFileSync(wrapper, `#!/bin/sh\n${body}`);
      chmodSync(wrapper, 0o755);
      try {
        writeImage(detector, 'deaf/big.bin', 8 << 20);
        proxy.silenceAfter = 1 << 20;
        const cut = new AbortController();
        const running = runRsync({ ...run, port: proxy.port, rsync: wrapper, timeoutS: 30 }, cut.signal);
        await eventually(() => proxy.silenced === 1, 20_000, 'the link silent in the middle of the file');
        cut.abort();
        const r = await running;
        if (killed) assert.equal(r.killed, true, 'killed, since SIGTERM did not end it');
        assert.notEqual(r.stalled, true, 'ended for its signal, not after rsync_timeout_s without progress');
        assert.deepEqual(r.sent, [], 'nothing of the file it was receiving counts as sent');
        assert.deepEqual(listFiles(detector).filter((f) => f.startsWith('deaf/')), ['deaf/big.bin'], 'the source stays on the detector');
        const rsyncs = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`127.0.0.1:${proxy.port}`));
        assert.deepEqual(rsyncs, [], 'neither the client nor its receiver left running');
      } finally {
        proxy.release();
        await proxy.close();
        rmSync(path.join(detector, 'deaf'), { recursive: true, force: true });
      }
    });
  }

  it('with exactTimes, sends again a file rewritten at the same size within the same second; without, rsync takes it for its copy (F2)', async () => {
    const rel = 'same-second/img.cbf';
    const src = path.join(detector, rel);
    const second = Math.floor(Date.now() / 1000) - 60;
    const write = (fill: number, fraction: number): void => {
      mkdirSync(path.dirname(src), { recursive: true });
      writeFileSync(src, Buffer.alloc(100_000, fill));
      utimesSync(src, second + fraction, second + fraction);
    };
    try {
      for (const exactTimes of [false, true]) {
        const dest = path.join(work, `same-second-${exactTimes}`);
        mkdirSync(dest);
        write(1, 0.1);
        const first = await runRsync({ ...run, dest, removeSource: false, exactTimes });
        assert.deepEqual(first.sent, [rel], first.stderr);
        // The writer's header, written 0.5 s later: same size, same whole second.
        write(2, 0.6);
        const second_ = await runRsync({ ...run, dest, removeSource: false, exactTimes });
        assert.equal(second_.code, 0, second_.stderr);
        const copy = readFileSync(path.join(dest, rel));
        if (exactTimes) {
          assert.deepEqual(second_.sent, [rel], 'sent again');
          assert.equal(copy[0], 2, 'the copy is the rewritten file');
        } else {
          // What furkad ran into before (rsync's quick check to the second): kept to show the option matters.
          assert.deepEqual(second_.sent, [], 'rsync to the second sees nothing changed');
          assert.equal(copy[0], 1);
        }
      }
    } finally {
      rmSync(path.join(detector, 'same-second'), { recursive: true, force: true });
    }
  });

  it('never ends a run that keeps receiving one large file, however slowly (F10)', async () => {
    const proxy = await SilentProxy.start(() => daemon.port);
    try {
      // About 7 s for the file at 320 KiB/s, a piece every 100 ms: far longer than the 2 s timeout, in pieces far shorter.
      const big = writeImage(detector, 'slow/big.bin', 2 << 20);
      proxy.trickle = 32 << 10;
      const r = await runRsync({ ...run, port: proxy.port, timeoutS: 2 });
      assert.equal(r.code, 0, r.stderr);
      assert.notEqual(r.stalled, true);
      assert.deepEqual([...r.removed], ['slow/big.bin']);
      assert.equal(sha256File(readFileSync(path.join(run.dest, 'slow/big.bin'))), big.sha256, 'intact');
    } finally {
      await proxy.close();
      rmSync(path.join(detector, 'slow'), { recursive: true, force: true });
    }
  });

  // A run started ahead, in the pause before it (F5, F9). Whether a run happened is read from the detector:
  // a file there is removed by any run, so one still there means none ran.
  it('takes nothing from the detector before the run is due, then moves files as a run started then would', async () => {
    const launcher = new RsyncLauncher();
    try {
      writeImage(detector, 'c/img_1.cbf', 100_000);
      launcher.prepare(run);
      const held = launcher.aheadPid;
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(listFiles(detector), ['c/img_1.cbf'], 'a prepared run waits at its gate: nothing taken yet');
      const r = await runRsync(run, undefined, undefined, launcher);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(held !== undefined && r.pid === held, `the run was the prepared process ${held}, not a new one (${r.pid})`);
      assert.deepEqual([...r.removed], ['c/img_1.cbf']);
      assert.deepEqual(listFiles(run.dest), ['c/img_1.cbf']);
    } finally {
      launcher.discard();
    }
  });

  it('lets a prepared process go, running nothing, when the run due is another (a new shift) or none', async () => {
    const launcher = new RsyncLauncher();
    try {
      launcher.prepare(run);
      writeImage(detector, 'd/img_2.cbf', 1000);
      const other = { ...run, uid: 4321, gid: 4321, dest: path.join(work, 'dest-other') };
      mkdirSync(other.dest);
      const r = await runRsync(other, undefined, undefined, launcher);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(listFiles(other.dest), ['d/img_2.cbf'], 'the run due ran with its own arguments');
      assert.deepEqual(listFiles(run.dest), [], 'the prepared one never ran');
      writeImage(detector, 'e/img_3.cbf', 1000);
      launcher.prepare(run);
      launcher.discard();
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(listFiles(detector), ['e/img_3.cbf'], 'a discarded run took nothing');
    } finally {
      launcher.discard();
    }
    const gates = readdirSync('/proc').filter((p) => {
      try {
        return /^\d+$/.test(p) && alive(Number(p)) && parentOf(Number(p)) === process.pid && readFileSync(`/proc/${p}/cmdline`, 'latin1').includes('read -r _');
      } catch {
        return false; // gone meanwhile
      }
    });
    assert.deepEqual(gates, [], 'no held process left behind');
  });

  it('never keeps a process alive by a held run, and the held shell ends with that process, running nothing', async () => {
    writeImage(detector, 'f/img_4.cbf', 1000);
    const script = `const { RsyncLauncher } = require(${JSON.stringify(path.resolve(__dirname, '../../src/furkad/rsync.js'))});
      const l = new RsyncLauncher(); l.prepare(${JSON.stringify(run)}); console.log(l.aheadPid);`;
    const out = execFileSync(process.execPath, ['-e', script], { timeout: 10_000, encoding: 'utf8' });
    const pid = Number(out.trim());
    assert.ok(pid > 0, out);
    await eventually(() => !existsSync(`/proc/${pid}`) || !alive(pid), 5000, `the held shell ${pid} to end`);
    assert.deepEqual(listFiles(detector).filter((f) => f.startsWith('f/')), ['f/img_4.cbf'], 'nothing ran: the file is still on the detector');
  });
});

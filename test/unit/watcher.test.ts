// The watcher against an inotifywait that skipped a directory without a word, as the real one does when a file in
// it is renamed while it sets the watch up (A2). The fake below holds a real inotify descriptor that watches the
// root only, so the kernel's list of watches (/proc/PID/fdinfo) shows the subdirectory unwatched; what it says
// on stderr is given per test. Unit tier: the fake stands in for inotifywait, everything else is real.
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Watcher } from '../../src/agent/watcher.js';
import { dirId, type DirId } from '../../src/agent/watch-check.js';
import { mountTmpfs, unmount, unmountAll } from '../fixtures/tmpfs.js';

/** Waits until OK holds; on time-out names WHAT and shows the watcher's log LINES. */
async function until(lines: string[], what: string, ok: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !ok();) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; log: ${lines.join('')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Appends a line to RUNS each start (from a shell, before python3 starts: python's start takes a few hundred
 * ms on a busy host, and varies), then runs FAKE_PY.
 */
const FAKE = `#!/bin/sh
date +%s.%N >> "$RUNS"
exec python3 "$(dirname "$0")/fake.py" "$@"
`;

/** Watches the root only, and says so in RUNS.up; says SAY (after "Watches established.") on stderr. */
const FAKE_PY = `import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
root = sys.argv[-1]
fd = libc.inotify_init()
libc.inotify_add_watch(fd, root.encode(), 0x00000fff)
with open(os.environ["RUNS"] + ".up", "a") as f:
    f.write("up\\n")
sys.stderr.write("Setting up watches.  Beware: since -r was given, this may take a while!\\nWatches established.\\n")
if os.environ.get("SAY"):
    sys.stderr.write(os.environ["SAY"] + "\\n")
sys.stderr.flush()
time.sleep(3600)
`;

describe('the watcher checks that inotifywait watches every directory a scan walked (A2)', function () {
  this.timeout(60_000);
  let work: string;
  let root: string;
  let runs: string;
  let watcher: Watcher | undefined;
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
  beforeEach(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'watcher-'));
    root = path.join(work, 'root');
    mkdirSync(path.join(root, 'run', 'sub'), { recursive: true });
    runs = path.join(work, 'runs');
    writeFileSync(path.join(work, 'fake'), FAKE);
    writeFileSync(path.join(work, 'fake.py'), FAKE_PY);
    chmodSync(path.join(work, 'fake'), 0o755);
    lines.length = 0;
  });
  afterEach(() => {
    watcher?.stop();
    watcher = undefined;
    delete process.env['SAY'];
    rmSync(work, { recursive: true, force: true });
  });

  const runTimes = (): number[] => readFileSync(runs, 'utf8').split('\n').filter(Boolean).map((t) => Number(t) * 1000);
  /** Runs started whose watch is in place (the watcher reads its list of watches). */
  const runCount = (): number => {
    const up = existsSync(`${runs}.up`) ? readFileSync(`${runs}.up`, 'utf8').split('\n').filter(Boolean).length : 0;
    return Math.min(runTimes().length, up);
  };
  const dirsOf = (...rels: string[]): Map<DirId, Buffer> =>
    new Map(rels.map((r) => [dirId(statSync(path.join(root, r), { bigint: true })), Buffer.from(r)]));

  async function start(pollMs?: number): Promise<{ established: number; rescans: number; looks: string[][] }> {
    process.env['RUNS'] = runs;
    const counts = { established: 0, rescans: 0, looks: [] as string[][] };
    watcher = new Watcher(root, {
      event: () => undefined,
      established: () => { counts.established++; },
      rescan: () => { counts.rescans++; },
      unwatched: (dirs) => { counts.looks.push(dirs.map((d) => d.toString())); },
    }, log, path.join(work, 'fake'), pollMs);
    await watcher.start();
    return counts;
  }

  it('runs inotifywait again when a directory it should watch is not in its list, and only then', async () => {
    const counts = await start();
    watcher!.check(dirsOf('')); // the root: watched
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(runCount(), 1, 'the root is watched: nothing to do');
    assert.equal(watcher!.everyDirWatched(), true, 'every directory checked and watched (source-files.ts keeps handles)');
    watcher!.check(dirsOf('', 'run', 'run/sub'));
    await until(lines, 'a second run', () => runCount() === 2 && counts.established === 2, 15_000);
    assert.ok(lines.some((l) => l.includes('inotifywait does not watch every directory') && l.includes('/run/sub')), lines.join(''));
    assert.ok(!lines.some((l) => /"level":50/.test(l)), 'a run ended on purpose is no error');
    // The second run skips them too (the fake always does): the next runs wait for the gap, 1 s and then 2 s.
    watcher!.check(dirsOf('run'));
    // Until the watcher has read that the run's watches are in place, a check is dropped (the rescan that
    // follows every run checks again): the next check waits for that, not only for the run.
    await until(lines, 'a third run', () => runCount() === 3 && counts.established === 3, 15_000);
    watcher!.check(dirsOf('run'));
    await until(lines, 'a fourth run', () => runCount() === 4, 15_000);
    const t = runTimes();
    // 1 s, then 2 s (less a margin for the moment the shell of each run got to write its line).
    assert.ok(t[2]! - t[1]! >= 800, `1 s at least between the second and third runs: ${t[2]! - t[1]!} ms`);
    assert.ok(t[3]! - t[2]! >= 1600, `2 s at least between the third and fourth runs: ${t[3]! - t[2]!} ms`);
  });

  it('looks into a directory it found unwatched at once and again and again until inotifywait runs again, and counts it as unwatched meanwhile (A1, A5)', async () => {
    const counts = await start();
    watcher!.check(dirsOf('run'));
    assert.deepEqual(watcher!.unwatched().map(String), ['run'], 'walked and not checked yet: not known to be watched');
    assert.equal(watcher!.everyDirWatched(), false);
    await until(lines, 'three looks into it', () => counts.looks.filter((l) => l.includes('run')).length >= 3, 15_000);
    assert.equal(watcher!.everyDirWatched(), false, 'checked and found unwatched');
    assert.equal(counts.looks[0]!.join(), 'run', 'the directory found unwatched, and nothing else');
    assert.ok(watcher!.unwatched().some((d) => String(d) === 'run'), 'still not watched: a barrier looks into it');
    // The new run's walk is what the agent's rescan checks again; until then nothing is known to be unwatched.
    await until(lines, 'a second run', () => runCount() === 2 && counts.established === 2, 15_000);
    assert.deepEqual(watcher!.unwatched(), []);
    assert.equal(watcher!.everyDirWatched(), true);
    const looks = counts.looks.length;
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(counts.looks.length, looks, 'no more looks once a new run is in place: what its rescan walked is checked afresh');
  });

  it('takes inotifywait at its word that it could not watch a new directory: looks into it and runs inotifywait again (A1, A5)', async () => {
    process.env['SAY'] = `Couldn't watch new directory ${root}/run/: No such file or directory`;
    const counts = await start();
    await until(lines, 'a look into it', () => counts.looks.some((l) => l.includes('run')), 10_000);
    await until(lines, 'a second run', () => runCount() >= 2, 15_000);
    assert.ok(lines.some((l) => l.includes('inotifywait does not watch every directory') && l.includes('/run')), lines.join(''));
    assert.ok(!lines.some((l) => l.includes('inotifywait says')), 'a lost race of its own, not a warning of its words');
  });

  it('at the watch limit, finds the files of an unwatched directory by rescans instead of running inotifywait again', async () => {
    process.env['SAY'] = `Couldn't watch new directory ${root}/run/: No space left on device`;
    const counts = await start(300);
    await until(lines, 'the message read', () => lines.some((l) => l.includes('No space left on device')), 10_000);
    assert.equal(watcher!.everyDirWatched(), false, 'at the limit: a directory may have no watch');
    watcher!.check(dirsOf('run'));
    await until(lines, 'a rescan', () => counts.rescans >= 1, 10_000);
    assert.equal(runCount(), 1, 'inotifywait is left running');
    assert.ok(lines.some((l) => l.includes("inotify's limit on watches is reached") && l.includes('fs.inotify.max_user_watches')), lines.join(''));
    // Not in the log alone: the agent's STATUS= line (systemctl status furka-agent) says it while it lasts.
    assert.match(watcher!.degraded, /watch limit reached: new directories rescanned every 0\.3 s \(raise fs\.inotify\.max_user_watches\)/);
  });
});

describe('the watcher at start, when inotifywait cannot run (A1)', () => {
  it("says inotifywait's own words when it ends before its watches are in place, not a guess at the cause", async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'watcher-'));
    try {
      mkdirSync(path.join(work, 'root'));
      // As inotifywait says it with every inotify instance of the user taken (fs.inotify.max_user_instances).
      writeFileSync(path.join(work, 'fake'), '#!/bin/sh\necho "Couldn\'t initialize inotify: Too many open files" >&2\n' +
        'echo "Try increasing the value of /proc/sys/fs/inotify/max_user_instances" >&2\nexit 1\n');
      chmodSync(path.join(work, 'fake'), 0o755);
      const w = new Watcher(path.join(work, 'root'), { event: () => undefined, established: () => undefined, rescan: () => undefined, unwatched: () => undefined },
        pino({ level: 'silent' }), path.join(work, 'fake'));
      await assert.rejects(w.start(), (e: Error) => {
        assert.match(e.message, /ended before its watches were in place \(exit 1\): Couldn't initialize inotify: Too many open files Try increasing the value of \/proc\/sys\/fs\/inotify\/max_user_instances$/);
        assert.doesNotMatch(e.message, /is inotify-tools installed/);
        return true;
      });
      w.stop();
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('the watcher follows its root to a file system mounted on it while it runs (A2, A5)', function () {
  this.timeout(60_000);
  let work: string;
  let root: string;
  let watcher: Watcher | undefined;
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
  beforeEach(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'watcher-mount-'));
    root = path.join(work, 'root');
    mkdirSync(root);
    lines.length = 0;
  });
  afterEach(() => {
    watcher?.stop();
    watcher = undefined;
    unmountAll();
    rmSync(work, { recursive: true, force: true });
  });

  /** A watcher over a real inotifywait; what it reports is counted, and the paths of completed files kept. */
  async function start(): Promise<{ established: number; replaced: number; complete: string[] }> {
    const counts = { established: 0, replaced: 0, complete: [] as string[] };
    watcher = new Watcher(root, {
      event: (e) => { if (e.kind === 'complete') counts.complete.push(e.rel.toString()); },
      established: () => { counts.established++; },
      rescan: () => undefined,
      unwatched: () => undefined,
      rootReplaced: () => { counts.replaced++; },
    }, log);
    await watcher.start();
    await until(lines, 'the first run in place', () => counts.established === 1, 10_000);
    return counts;
  }

  it('a tmpfs mounted over the running root: found by a check (a barrier asks for one), said, and watched anew', async () => {
    const counts = await start();
    assert.equal(watcher!.checkRoot(), false, 'the root it watches');
    mountTmpfs(root, 1 << 20);
    assert.equal(watcher!.checkRoot(), true, 'another directory now');
    assert.equal(counts.replaced, 1, 'handles on the old root let go');
    assert.ok(lines.some((l) => l.includes('the root is no longer the directory inotifywait watches')), lines.join(''));
    await until(lines, 'a new run in place', () => counts.established === 2, 10_000);
    writeFileSync(path.join(root, 'after.cbf'), 'x');
    await until(lines, 'the file written on the new tmpfs reported', () => counts.complete.includes('after.cbf'), 10_000);
  });

  it('the root\'s tmpfs unmounted and a fresh one mounted: watched anew without being asked, and files written on it reported', async () => {
    mountTmpfs(root, 1 << 20);
    const counts = await start();
    unmount(root);
    mountTmpfs(root, 1 << 20);
    // The fresh tmpfs has the old one's device number and root inode: only the watch, gone with the old one, tells.
    await until(lines, 'the new tmpfs watched', () => counts.replaced >= 1 && counts.established >= 2, 10_000);
    assert.ok(lines.some((l) => l.includes('the root is no longer the directory inotifywait watches')), lines.join(''));
    writeFileSync(path.join(root, 'after.cbf'), 'x');
    await until(lines, 'the file written on the fresh tmpfs reported', () => counts.complete.includes('after.cbf'), 10_000);
  });
});

describe('the watcher over an inotifywait that crashes once its watches are in place, as inotify-tools 3.14 does (A2)', () => {
  it('a SIGSEGV after "Watches established." (3.14 at each kernel event queue overflow) is said as that, a warning; run again and rescanned', async () => {
    // inotify-tools 3.14 (EPEL 7, what CentOS 7 has) writes a Q_OVERFLOW record's directory with csv_escape(NULL)
    // and dies of it (seen with 3.14 built from its source). The fake dies the same way on its first run.
    const work = mkdtempSync(path.join(os.tmpdir(), 'watcher-'));
    const lines: string[] = [];
    let w: Watcher | undefined;
    try {
      mkdirSync(path.join(work, 'root'));
      writeFileSync(path.join(work, 'fake'), '#!/bin/sh\n' +
        'echo "Setting up watches.  Beware: since -r was given, this may take a while!" >&2\necho "Watches established." >&2\n' +
        `runs="${work}/runs"; n=$(cat "$runs" 2>/dev/null | wc -l); echo x >> "$runs"\n` +
        'if [ "$n" -eq 0 ]; then sleep 0.3; kill -SEGV $$; fi\nexec sleep 3600\n');
      chmodSync(path.join(work, 'fake'), 0o755);
      const counts = { established: 0, rescans: 0 };
      w = new Watcher(path.join(work, 'root'), {
        event: () => undefined, established: () => { counts.established++; }, rescan: () => { counts.rescans++; }, unwatched: () => undefined,
      }, pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } }), path.join(work, 'fake'));
      await w.start();
      await until(lines, 'a second run in place', () => counts.established === 2, 10_000);
      assert.ok(lines.some((l) => /"level":40/.test(l) && l.includes('inotifywait crashed') && l.includes('kernel event queue overflow')), lines.join(''));
      assert.ok(!lines.some((l) => /"level":50/.test(l)), `no error: ${lines.join('')}`);
    } finally {
      w?.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

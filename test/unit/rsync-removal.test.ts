// A detector daemon that cannot remove sources: what furkad makes of rsync's words, and which files it places,
// hides and drops (rsync-removal.ts, F2, F10). The real daemon's side: test/integration/furkad-removal.test.ts.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { besidesRemoval, probeDir, RsyncRemoval } from '../../src/furkad/rsync-removal.js';
import { classifyExit } from '../../src/furkad/rsync.js';

const quiet = pino({ level: 'silent' });
const failed = (names: string[], reason = 'Permission denied (13)'): string => [
  ...names.map((n) => `rsync: [sender] sender failed to remove ${n}: ${reason}`),
  'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [generator=3.2.7]',
].join('\n');
const run = (stderr: string, code: number, files: string[] = []) => ({ code, stderr, files, changed: new Set<string>() });

describe('a detector daemon that cannot remove sources (F2, F10)', () => {
  let staging: string;
  beforeEach(() => {
    staging = mkdtempSync(path.join(os.tmpdir(), 'removal-'));
  });
  afterEach(() => rmSync(staging, { recursive: true, force: true }));

  /** A file of `size` bytes at `dir/rel`, as rsync leaves one: with the detector's mtime. */
  const put = (dir: string, rel: string, size: number, mtime = new Date('2024-05-01T10:00:00Z')): void => {
    writeFileSync(path.join(dir, rel), Buffer.alloc(size, 7));
    utimesSync(path.join(dir, rel), mtime, mtime);
  };
  const stage = (rel: string, size: number, mtime?: Date): void => put(staging, rel, size, mtime);

  it('takes a run whose only trouble was removing for one that went well, and any other trouble for itself', () => {
    assert.equal(classifyExit(23, failed(['a.img'])), 'retry', "rsync's own verdict");
    assert.deepEqual(besidesRemoval(23, failed(['a.img', 'b.img'])), { code: 0, stderr: '' });
    const mixed = `rsync: [sender] link_stat "/x" (in ramdisk) failed: No such file or directory (2)\n${failed(['a.img'])}`;
    assert.equal(classifyExit(besidesRemoval(23, mixed).code, besidesRemoval(23, mixed).stderr), 'retry', 'another error stands');
    assert.deepEqual(besidesRemoval(0, ''), { code: 0, stderr: '' });
  });

  it("names the daemon's words and what to change, and keeps saying it until a source is removed", () => {
    const r = new RsyncRemoval('1MF', quiet);
    assert.equal(r.learn(run(failed(['run/a.img', 'run/b.img']), 23, ['run/a.img', 'run/b.img']), 'ramdisk'), 'failed');
    assert.equal(r.failing, "the detector's rsync daemon cannot remove sources: sender failed to remove run/a.img: Permission denied (and 1 more); " +
      'give module ramdisk uid = root (README); each file is delivered once, its source stays on the detector');
    assert.equal(r.refused, false);
    const said = r.failing;
    r.learn(run(failed(['run/c.img']), 23, ['run/c.img']), 'ramdisk');
    assert.equal(r.failing, said, 'the same trouble: lastError does not change with each file named');
    assert.equal(r.learn(run('', 0, []), 'ramdisk'), 'untold', 'a run that removed nothing tells nothing');
    assert.equal(r.learn(run('rsync: [Receiver] failed to connect to 10.0.0.1 (10.0.0.1): Connection refused (111)', 10), 'ramdisk'), 'untold');
    assert.equal(r.failing, said);
    assert.equal(r.learn(run('', 0, ['run/d.img']), 'ramdisk'), 'removed');
    assert.equal(r.failing, undefined);
    r.learn(run(failed(['ro.img'], 'Read-only file system (30)'), 23, ['ro.img']), 'ramdisk');
    assert.match(r.failing!, /sender failed to remove ro\.img: Read-only file system; the detector's ramdisk is mounted read-only/);
  });

  it('takes a refused --remove-source-files for the whole run, and a run it is not refused as its end', () => {
    const r = new RsyncRemoval('1MF', quiet);
    const refused = 'rsync: The server is configured to refuse --delete\nrsync: [Receiver] read error: Connection reset by peer (104)\n' +
      'rsync error: error in socket IO (code 10) at io.c(807) [Receiver=3.2.7]';
    assert.equal(r.learn(run(refused, 10), 'det'), 'refused');
    assert.equal(r.refused, true);
    assert.equal(r.failing, "the detector's rsync daemon refuses to remove sources: The server is configured to refuse --delete; " +
      "take delete* and remove-source-files out of module det's refuse options; nothing is taken from it until then");
    assert.equal(r.learn(run('', 0, []), 'det'), 'removed', 'a run of no files that is not refused');
    assert.equal(r.failing, undefined);
    r.learn(run('ERROR: --remove-source-files cannot be used with a read-only module\nrsync error: syntax or usage error (code 1) at main.c(1077) [sender=3.2.7]', 1), 'det');
    assert.match(r.failing!, /refuses to remove sources: ERROR: --remove-source-files cannot be used with a read-only module; give module det read only = no/);
  });

  it('places a file whose source stayed once, hides it while the daemon cannot remove, and drops it when pulled again to be removed', async () => {
    const r = new RsyncRemoval('1MF', quiet);
    stage('a.img', 10);
    stage('b.img', 20);
    r.learn(run(failed(['a.img']), 23, ['a.img', 'b.img']), 'ramdisk');
    assert.deepEqual(await r.sortOut(staging, 'det/', ['a.img', 'b.img'], new Set(['a.img'])), ['a.img', 'b.img'], 'both placed, the first time');
    r.placed('det', ['a.img', 'b.img']);
    assert.deepEqual(r.skipped('/det/'), ['a.img'], 'hidden from the runs from now on');
    assert.deepEqual(r.skipped('other'), [], 'below its own source only');
    assert.equal(r.probe('det'), 'a.img');
    const again = r.pulledAgain('det');

    // The daemon removes again: a.img is pulled again, its source removed, and its copy dropped, not placed.
    r.learn(run('', 0, ['c.img']), 'ramdisk');
    assert.deepEqual(r.skipped('det'), [], 'no longer hidden: it is to be taken off the detector');
    stage('a.img', 10);
    stage('c.img', 5);
    assert.deepEqual(await r.sortOut(staging, 'det', ['a.img', 'c.img'], new Set()), ['c.img']);
    assert.equal(again(['a.img', 'c.img']), 10, 'its bytes not counted again, though its record is gone by the end of the run');
    assert.equal(existsSync(path.join(staging, 'a.img')), false, 'the copy pulled again dropped');
    assert.equal(r.probe('det'), undefined, 'nothing kept any more');
  });

  it('places a file of a kept name that is another file (rewritten on the detector)', async () => {
    const r = new RsyncRemoval('1MF', quiet);
    stage('a.img', 10);
    r.learn(run(failed(['a.img']), 23, ['a.img']), 'ramdisk');
    await r.sortOut(staging, '', ['a.img'], new Set(['a.img']));
    r.placed('', ['a.img']);
    stage('a.img', 11);
    assert.deepEqual(await r.sortOut(staging, '', ['a.img'], new Set(['a.img'])), ['a.img'], 'another size: another file');
    r.placed('', ['a.img']);
    stage('a.img', 11);
    assert.deepEqual(await r.sortOut(staging, '', ['a.img'], new Set(['a.img'])), [], 'that one placed now, not again');
  });

  it('keeps a file that could not be placed to be offered again, not dropped as placed', async () => {
    const r = new RsyncRemoval('1MF', quiet);
    stage('a.img', 10);
    r.learn(run(failed(['a.img']), 23, ['a.img']), 'ramdisk');
    await r.sortOut(staging, '', ['a.img'], new Set(['a.img']));
    r.placed('', []); // a link planted in the shift's directory, say
    assert.deepEqual(r.skipped(''), ['a.img'], 'its source not pulled again meanwhile');
    assert.deepEqual(await r.sortOut(staging, '', ['a.img'], new Set()), ['a.img'], 'offered again from staging');
  });

  it('keeps what it placed across a restart (state_dir), and forgets what the detector no longer has', async () => {
    const file = path.join(staging, 'state', 'rsync-kept-1MF.json');
    mkdirSync(path.dirname(file));
    const r = new RsyncRemoval('1MF', quiet, file);
    stage('a.img', 10);
    stage('b.img', 10);
    r.learn(run(failed(['a.img', 'b.img']), 23, ['a.img', 'b.img']), 'ramdisk');
    await r.sortOut(staging, 'det', ['a.img', 'b.img'], new Set(['a.img', 'b.img']));
    r.placed('det', ['a.img', 'b.img']);
    r.save();
    const next = new RsyncRemoval('1MF', quiet, file);
    assert.equal(next.failing, undefined, 'whether the daemon removes is learned again');
    assert.deepEqual(await next.sortOut(staging, 'det', ['a.img'], new Set(['a.img'])), [], 'pulled again after the restart: not placed again');
    next.learn(run(failed(['a.img']), 23, ['a.img']), 'ramdisk');
    next.listed('det', []);
    assert.deepEqual(next.skipped('det').sort(), ['a.img', 'b.img'], 'a listing that hid them tells nothing of them');
    const fixed = new RsyncRemoval('1MF', quiet, file);
    fixed.listed('det', ['a.img']);
    fixed.save();
    assert.equal(new RsyncRemoval('1MF', quiet, file).probe('det'), 'a.img', 'b.img, not listed by a full listing, forgotten');
    assert.equal(existsSync(path.join(staging, 'state', 'rsync-kept-1MF.json.tmp')), false);
    // And a copy flushed to disk beside it, for a power cut to leave whole (json-state.ts).
    await fixed.flushed();
    assert.deepEqual(JSON.parse(readFileSync(`${file}.flushed`, 'utf8')), JSON.parse(readFileSync(file, 'utf8')));
  });

  it('asks for one kept file beside staging and drops what arrives; forgets one gone from the detector; places one rewritten', async () => {
    const r = new RsyncRemoval('1MF', quiet);
    stage('a.img', 10);
    stage('b.img', 10);
    stage('c.img', 10);
    r.learn(run(failed(['a.img', 'b.img', 'c.img']), 23, ['a.img', 'b.img', 'c.img']), 'ramdisk');
    await r.sortOut(staging, '', ['a.img', 'b.img', 'c.img'], new Set(['a.img', 'b.img', 'c.img']));
    r.placed('', ['a.img', 'b.img', 'c.img']);
    for (const rel of ['a.img', 'b.img', 'c.img']) rmSync(path.join(staging, rel));
    // The probe receives beside staging, never in it (probeDir).
    const probe = probeDir(path.join(staging, 'stage', '1MF'));
    assert.equal(path.dirname(path.dirname(probe)), path.join(staging, 'stage'), 'beside the detector\'s staging directory');
    const dest = path.join(staging, 'stage', '1MF');
    mkdirSync(probe, { recursive: true });
    const arrive = (rel: string, size: number, mtime?: Date): void => put(probe, rel, size, mtime);
    arrive('a.img', 10);
    const still = run(failed(['a.img']), 23, ['a.img']);
    assert.equal(await r.probed(probe, dest, '', 'a.img', still, r.learn(still, 'ramdisk')), undefined);
    assert.equal(existsSync(path.join(probe, 'a.img')), false, 'dropped');
    assert.equal(existsSync(path.join(dest, 'a.img')), false, 'never in staging');
    assert.deepEqual(r.skipped('').sort(), ['a.img', 'b.img', 'c.img'], 'still kept');
    const gone = run('rsync: [sender] link_stat "/a.img" (in ramdisk) failed: No such file or directory (2)\n' +
      'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [generator=3.2.7]', 23);
    assert.equal(await r.probed(probe, dest, '', 'a.img', gone, r.learn(gone, 'ramdisk')), undefined);
    assert.deepEqual(r.skipped('').sort(), ['b.img', 'c.img'], 'forgotten once gone from the detector');
    arrive('b.img', 10);
    const removed = run('', 0, ['b.img']);
    assert.equal(await r.probed(probe, dest, '', 'b.img', removed, r.learn(removed, 'ramdisk')), undefined);
    assert.equal(r.failing, undefined, 'up again');
    assert.equal(existsSync(path.join(dest, 'b.img')), false, 'the file placed before: not placed again');
    // Another file of that name, its source removed: moved into staging, to be placed.
    arrive('c.img', 12);
    const rewritten = run('', 0, ['c.img']);
    assert.equal(await r.probed(probe, dest, '', 'c.img', rewritten, r.learn(rewritten, 'ramdisk')), 'c.img');
    assert.equal(existsSync(path.join(dest, 'c.img')), true, 'in staging');
    assert.equal(existsSync(path.join(probe, 'c.img')), false);
    assert.equal(r.probe(''), undefined, 'their sources removed: nothing kept');
  });

  it('drops what a probe cut short or a killed run left of a file placed, keeping its record; moves another version into staging', async () => {
    const r = new RsyncRemoval('1MF', quiet);
    for (const rel of ['a.img', 'b.img', 'c.img']) stage(rel, 10);
    r.learn(run(failed(['a.img', 'b.img', 'c.img']), 23, ['a.img', 'b.img', 'c.img']), 'ramdisk');
    await r.sortOut(staging, '', ['a.img', 'b.img', 'c.img'], new Set(['a.img', 'b.img', 'c.img']));
    r.placed('', ['a.img', 'b.img', 'c.img']);
    for (const rel of ['a.img', 'b.img', 'c.img']) rmSync(path.join(staging, rel));
    const dest = path.join(staging, 'stage', '1MF');
    const probe = probeDir(dest);
    mkdirSync(path.join(probe, 'sub'), { recursive: true });
    const arrive = (rel: string, size: number): void => put(probe, rel, size);
    // The daemon stopped while it sent a.img back: no itemized line, the file received all the same.
    arrive('a.img', 10);
    const cut = run('rsync: connection unexpectedly closed (0 bytes received so far) [receiver]', 12);
    assert.equal(await r.probed(probe, dest, '', 'a.img', cut, r.learn(cut, 'ramdisk')), undefined);
    assert.equal(existsSync(path.join(probe, 'a.img')), false, 'the file placed: dropped at once');
    // furkad killed before probed(): what the probes received, sorted out when staging is prepared.
    arrive('b.img', 10);
    arrive('c.img', 12);
    arrive('sub/d.img', 10);
    assert.deepEqual((await r.returnCopies(probe, dest, '')).sort(), ['c.img', 'sub/d.img'], 'another version of c.img, and a file never kept');
    assert.equal(existsSync(path.join(dest, 'b.img')), false, 'b.img as placed: not into staging, where it was placed again');
    assert.equal(readFileSync(path.join(dest, 'c.img')).length, 12, 'the other version of c.img, to be placed (its source may be gone)');
    assert.equal(existsSync(path.join(dest, 'sub', 'd.img')), true);
    assert.equal(existsSync(probe), false, 'the probe\'s directory gone');
    assert.deepEqual(r.skipped('').sort(), ['a.img', 'b.img', 'c.img'], 'their records kept: a listing or probe tells whether their sources are gone');
    assert.deepEqual(await r.returnCopies(probe, dest, ''), [], 'nothing left, no directory: nothing to do');
    // Found in staging (a run killed with furkad after it received them): the file placed dropped, the rest placed.
    put(dest, 'a.img', 10);
    assert.deepEqual(await r.unplaced(dest, '', ['a.img', 'c.img', 'sub/d.img']), ['c.img', 'sub/d.img']);
    assert.equal(existsSync(path.join(dest, 'a.img')), false, 'a.img as placed: dropped');
    assert.deepEqual(r.skipped('').sort(), ['a.img', 'b.img', 'c.img'], 'its record kept');
  });
});

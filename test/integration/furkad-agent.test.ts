// furkad over furka-agent (transport = agent): files arrive once, whole, the moment their writers finish them,
// whatever the writer's pattern; nothing is lost or left behind when the agent or furkad is killed (A2–A5).
import { strict as assert } from 'node:assert';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { launchOf, Ppu } from '../fixtures/ppu.js';
import { AGENT_BIN, inotifywaitOf } from '../fixtures/agent.js';
import { eventually, listFiles, sha256File, sizesWhile, writeImage, type WrittenFile } from '../fixtures/files.js';
import { markFixture, startProcess } from '../fixtures/processes.js';
import { inPlaceWriter, twoDescriptorWriter } from '../fixtures/writers.js';
import { burstAcrossStop, freezeAcrossShiftAndStop, streamAcrossShiftChange } from '../fixtures/shift-split.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('furkad over furka-agent (A2–A5)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-agent', transport: 'agent' }).start();
  });
  after(async () => ppu?.stop());

  const usr = (uid: number, gid: number) => path.join(ppu.ppuRamdisk, '1mf', `${uid}_${gid}`);
  const stored = (uid: number, gid: number) => path.join(ppu.storageRoot, 'internal', '1mf', `${uid}_${gid}`);
  /** Waits until furkad's Detectors shows `id` retrying with a reason matching `reason`; a timeout names the rows seen. */
  const retryingSays = async (id: string, reason: RegExp, what: string): Promise<void> => {
    let rows: Array<[string, string, string]> = [];
    await eventually(async () => {
      rows = await ppu.furkaProperty<Array<[string, string, string]>>('Detectors');
      return rows.some((r) => r[0] === id && r[1] === 'retrying' && reason.test(r[2]));
    }, 30_000, what).catch((e: Error) => { throw new Error(`${e.message}: ${JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`); });
  };

  it('delivers an in-place writer\'s file once, whole, after its close, and renaming writers\' files under their final names only', async () => {
    await ppu.startShift(610, 611);
    const detector = ppu.detectorRamdisks['1MF']!;
    const dest = path.join(usr(610, 611), 'inplace', 'slow.cbf');
    const writer = inPlaceWriter(path.join(detector, 'inplace', 'slow.cbf'), 40, 50, 7);
    markFixture(writer);
    const renamed: WrittenFile[] = [];
    for (let i = 0; i < 20; i++) {
      renamed.push(writeImage(detector, `renamed/new/img_${String(i).padStart(3, '0')}.cbf`, 100_000));
      await pause(10);
    }
    // An empty image: a body with nothing in it (pushed, or requested if the scan of the new directory found it).
    renamed.push(writeImage(detector, 'renamed/new/empty.cbf', 0));
    const observed = await sizesWhile(dest, writer.exited);
    assert.equal(await writer.exited, 0, writer.output());
    // The writer closes the file before its process ends: on a loaded machine the whole file may be placed in
    // between. Anything smaller would be a file placed before its writer finished.
    assert.deepEqual(observed.filter((size) => size !== 40 * 65536), [], 'nothing under the final name while the writer was at work');
    await eventually(() => existsSync(dest), 20_000, 'the in-place file on the PPU');
    assert.equal(sha256File(readFileSync(dest)), sha256File(Buffer.alloc(40 * 65536, 7)), 'all 40 pieces');
    assert.equal(statSync(dest).uid, 610, 'owned by the shift (F3)');
    await eventually(() => renamed.every((f) => existsSync(path.join(usr(610, 611), f.rel))), 20_000, 'the renamed files');
    for (const f of renamed) {
      const placed = path.join(usr(610, 611), f.rel);
      assert.equal(sha256File(readFileSync(placed)), f.sha256, f.rel);
      assert.equal(Math.round(statSync(placed).mtimeMs), Math.round(f.mtimeMs), `${f.rel}: the source's mtime (F3)`);
    }
    assert.deepEqual(listFiles(usr(610, 611)).filter((f) => path.basename(f).startsWith('.')), [], 'never a temp name on the PPU');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 610 && r[5] === 22n && r[4] === 0n), 30_000, 'grimseld to copy all 22 once');
    await eventually(() => listFiles(detector).length === 0, 10_000, 'every source deleted by the agent once placed');
    // Nor an empty directory left in staging for each run directory delivered (it stayed until the next shift change).
    const staging = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF');
    await eventually(() => readdirSync(staging).length === 0, 10_000, 'staging emptied of the directories placing emptied')
      .catch((e: Error) => { throw new Error(`${e.message}: ${readdirSync(staging).join(', ')}`); });
  });

  it('delivers a file whose writer closes one descriptor (a header) and writes the rest through another once, whole, never deleting it under the writer (A2, A4)', async () => {
    await ppu.startShift(670, 671);
    const detector = ppu.detectorRamdisks['1MF']!;
    const dest = path.join(usr(670, 671), 'twofd', 'run.cbf');
    const writer = twoDescriptorWriter(path.join(detector, 'twofd', 'run.cbf'), 4096, 10, 200, 5);
    markFixture(writer);
    const observed = await sizesWhile(dest, writer.exited);
    assert.equal(await writer.exited, 0, `the source was deleted while its writer still wrote to it: ${writer.output()}`);
    const whole = Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(10 * 65536, 5)]);
    assert.deepEqual(observed.filter((size) => size !== whole.length), [], 'the header alone is never placed as the file');
    await eventually(() => existsSync(dest), 20_000, 'the file on the PPU');
    assert.equal(sha256File(readFileSync(dest)), sha256File(whole), 'header and data');
    assert.deepEqual(readdirSync(path.dirname(dest)), ['run.cbf'], 'once, under its own name only');
    await eventually(() => listFiles(detector).length === 0, 20_000, 'its source deleted once its writer is done');
  });

  it('delivers a file renamed after furkad heard of it under its final name, and deletes its source only once placed so (A4)', async () => {
    await ppu.startShift(680, 681);
    const detector = ppu.detectorRamdisks['1MF']!;
    const furkad = ppu.furkad!.proc.child.pid!;
    // furkad stopped: the agent announces (and pushes) the file under its first name, then under the name it
    // was renamed to, before furkad fetches either. A writer whose temporary name is not hidden does this.
    process.kill(furkad, 'SIGSTOP');
    let img: WrittenFile;
    try {
      img = writeImage(detector, 'late-rename/img_001.tmp', 100_000);
      await pause(500);
      renameSync(path.join(detector, 'late-rename', 'img_001.tmp'), path.join(detector, 'late-rename', 'img_001.cbf'));
      await pause(500);
    } finally {
      process.kill(furkad, 'SIGCONT');
    }
    const dest = path.join(usr(680, 681), 'late-rename', 'img_001.cbf');
    await eventually(() => existsSync(dest), 20_000, `the file under its final name on the PPU (there: ${listFiles(usr(680, 681)).join(', ')})`);
    assert.equal(sha256File(readFileSync(dest)), img.sha256);
    await eventually(() => listFiles(detector).length === 0, 20_000, 'its source deleted once placed under that name');
  });

  it('delivers a file larger than the agent reads whole (an HDF5 data file) once, byte for byte, owned by the shift, copied, its source deleted (A3, A4)', async () => {
    await ppu.startShift(660, 661);
    const detector = ppu.detectorRamdisks['1MF']!;
    // 100 MB: over the 64 MiB the agent reads whole, so it goes in 8 MiB pieces, each fetched as furkad reads.
    const big = writeImage(detector, 'hdf5/scan_000001_data_000001.h5', 100 * 1024 * 1024 + 4321);
    const placed = path.join(usr(660, 661), big.rel);
    await eventually(() => existsSync(placed), 60_000, 'the large file on the PPU');
    assert.equal(sha256File(readFileSync(placed)), big.sha256, 'every byte, in order');
    assert.equal(statSync(placed).uid, 660, 'owned by the shift (F3)');
    assert.equal(Math.round(statSync(placed).mtimeMs), Math.round(big.mtimeMs), "the source's mtime (F3)");
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 660 && r[5] === 1n && r[4] === 0n), 60_000, 'grimseld to copy it once');
    assert.equal(sha256File(readFileSync(path.join(stored(660, 661), big.rel))), big.sha256, 'the stored copy');
    await eventually(() => !existsSync(path.join(detector, big.rel)), 10_000, 'its source deleted by the agent once placed');
  });

  it('leaves names it cannot hand over (not UTF-8, control characters) on the detector, reports them until renamed, then shows idle (F1, A4)', async () => {
    await ppu.startShift(696, 697);
    const detector = ppu.detectorRamdisks['1MF']!;
    const row = async (): Promise<[string, string, string]> => (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((r) => r[0] === '1MF')!;
    // The last two show alike (U+FFFD for the byte that is not UTF-8): each counts, and is reported until it goes.
    const bad = [Buffer.from('odd/new\nline.cbf'), Buffer.from('odd/tab\there.cbf'), Buffer.from('odd/lat1_\xe9.cbf', 'latin1'), Buffer.from('odd/lat1_\xe8.cbf', 'latin1')];
    mkdirSync(path.join(detector, 'odd'), { recursive: true });
    for (const b of bad) writeFileSync(Buffer.concat([Buffer.from(`${detector}/`), b]), 'x'.repeat(1000));
    const good = writeImage(detector, 'odd/fine.cbf', 1000);
    await eventually(() => existsSync(path.join(usr(696, 697), good.rel)), 20_000, 'the file with a good name');
    await eventually(async () => /^4 files left on the detector: furkad cannot hand over their names/.test((await row())[2]), 20_000, 'lastError naming them');
    await pause(1000);
    // Never taken: grimseld takes no such name, so the only copy would be the PPU ramdisk's, for good.
    assert.equal(readdirSync(path.join(detector, 'odd')).length, 4, 'left on the detector');
    assert.deepEqual(listFiles(usr(696, 697)), ['odd/fine.cbf'], 'none of them on the PPU');
    // Renamed there by the operator: taken like any file; the one still there is still reported, then it too.
    for (const [i, b] of bad.slice(0, 3).entries()) renameSync(Buffer.concat([Buffer.from(`${detector}/`), b]), path.join(detector, 'odd', `renamed-${i}.cbf`));
    await eventually(() => listFiles(usr(696, 697)).length === 4, 20_000, 'the renamed files on the PPU');
    // Shown as rsync shows such a byte (\#ooo), a name an administrator can find, not with U+FFFD in its place.
    await eventually(async () => /^1 file left on the detector: .* e\.g\. 'odd\/lat1_\\#350\.cbf'/.test((await row())[2]), 20_000, 'the one that shows alike still reported, by its bytes')
      .catch(async (e: Error) => { throw new Error(`${e.message}: ${(await row())[2]}`); });
    renameSync(Buffer.concat([Buffer.from(`${detector}/`), bad[3]!]), path.join(detector, 'odd', 'renamed-3.cbf'));
    await eventually(() => listFiles(usr(696, 697)).length === 5, 20_000, 'the last one on the PPU');
    await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
    await eventually(async () => (await row())[1] === 'idle', 10_000, "idle once nothing more is announced, not 'transferring' for ever");
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 696 && r[5] === 5n && r[4] === 0n), 30_000, 'grimseld to copy all five');
  });

  it('follows a StartShift that moves an agent detector to another source at once, with nothing announced on the old one (S2)', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    await ppu.startShift(690, 691, [['1MF', '/cam-a', '']]);
    const a = writeImage(detector, 'cam-a/img_a.cbf', 1000);
    await eventually(() => existsSync(path.join(usr(690, 691), 'img_a.cbf')), 20_000, 'the file of the first source');
    await ppu.startShift(692, 693, [['1MF', '/cam-b', '']]);
    const b = writeImage(detector, 'cam-b/img_b.cbf', 1000);
    await eventually(() => existsSync(path.join(usr(692, 693), 'img_b.cbf')), 20_000, 'the file of the second source');
    assert.equal(sha256File(readFileSync(path.join(usr(692, 693), 'img_b.cbf'))), b.sha256);
    assert.ok(a.sha256 !== '');
    await ppu.startShift(692, 693);
  });

  it("shows a source that is a link on the detector as the agent's refusal, with the reason, in Detectors", async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    mkdirSync(path.join(detector, 'real-dir'), { recursive: true });
    symlinkSync('real-dir', path.join(detector, 'linked'));
    try {
      await ppu.startShift(694, 695, [['1MF', '/linked', '']]);
      await eventually(async () => /refused the events stream of '\/linked': HTTP 400: source \/linked: \/linked is a symbolic link/.test(
        (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((r) => r[0] === '1MF')![2]), 20_000, 'the reason in lastError');
    } finally {
      unlinkSync(path.join(detector, 'linked')); // unlink: Node 16's rmSync follows a link to a directory (EISDIR)
      await ppu.startShift(694, 695);
    }
  });

  it('shows a source missing on the detector as the agent\'s refusal naming it, in Detectors, and takes its files by itself once it is made (F1, F6)', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    await ppu.startShift(698, 699, [['1MF', '/later/run', '']]);
    try {
      const row = async (): Promise<[string, string, string]> => (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((r) => r[0] === '1MF')!;
      await eventually(async () => { const r = await row(); return r[1] === 'retrying' && /HTTP 404/.test(r[2]); }, 20_000, 'the detector retrying with the reason');
      const [, , said] = await row();
      assert.match(said, new RegExp(`^the agent at http://127\\.0\\.0\\.1:${ppu.agents['1MF']!.port} refused the events stream of '/later/run': HTTP 404: ` +
        "source /later/run: no such directory below the agent's root .* on this detector server"));
      // Made on the detector: taken without another StartShift.
      const f = writeImage(detector, 'later/run/img_1.cbf', 5000);
      await eventually(() => existsSync(path.join(usr(698, 699), 'img_1.cbf')), 30_000, 'the file of the source once made');
      assert.equal(sha256File(readFileSync(path.join(usr(698, 699), 'img_1.cbf'))), f.sha256);
      await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
    } finally {
      await ppu.startShift(698, 699);
    }
  });

  it('shows a source taken away on the detector while served as retrying, naming it, not idle; takes its files once it is made again (F1, F6)', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    mkdirSync(path.join(detector, 'run5'), { recursive: true });
    await ppu.startShift(686, 687, [['1MF', '/run5', '']]);
    try {
      const row = async (): Promise<[string, string, string]> => (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((r) => r[0] === '1MF')!;
      const first = writeImage(detector, 'run5/img_1.cbf', 5000);
      await eventually(() => existsSync(path.join(usr(686, 687), first.rel.slice('run5/'.length))), 30_000, 'a first file of the source');
      rmSync(path.join(detector, 'run5'), { recursive: true });
      await eventually(async () => { const r = await row(); return r[1] === 'retrying' && /source \/run5: no such directory below the agent's root/.test(r[2]); },
        20_000, 'the detector retrying, the reason named');
      const again = writeImage(detector, 'run5/img_2.cbf', 5000);
      await eventually(() => existsSync(path.join(usr(686, 687), 'img_2.cbf')), 30_000, 'the file of the source made again');
      assert.equal(sha256File(readFileSync(path.join(usr(686, 687), 'img_2.cbf'))), again.sha256);
      await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
    } finally {
      await ppu.startShift(686, 687);
    }
  });

  it('puts every file completed before StartShift in the old shift and every file completed after it in the new one, at 200 files a second (A5)', async () => {
    // 5 ms a file: runs that go on taking announcements are at work when the call comes.
    await streamAcrossShiftChange(ppu, { from: [620, 621], to: [630, 631], everyMs: 5, bytes: 50_000, prefix: 's', minEachSide: 50 });
    await eventually(() => listFiles(ppu.detectorRamdisks['1MF']!).length === 0, 20_000, 'every source deleted by the agent once placed');
  });

  it('puts a file completed before StartShift in the old shift although its announcement comes after the call (A5)', async () => {
    await ppu.startShift(640, 641);
    const detector = ppu.detectorRamdisks['1MF']!;
    const warm = writeImage(detector, 'barrier/warm.cbf', 10_000);
    await eventually(() => existsSync(path.join(usr(640, 641), warm.rel)), 20_000, 'a first file in the old shift');
    // The agent's inotifywait stopped: the file is complete (its writer closed it), but the kernel's word of it
    // waits, and furkad hears of it only after the call. The call waits for the barrier behind it.
    const watcher = inotifywaitOf(ppu.agents['1MF']!.proc.child.pid!);
    process.kill(watcher, 'SIGSTOP');
    let late: WrittenFile;
    let change: Promise<void>;
    let returned = false;
    try {
      late = writeImage(detector, 'barrier/late.cbf', 10_000);
      change = ppu.startShift(650, 651);
      void change.then(() => { returned = true; }, () => undefined);
      // Held until the agent has made the call's mark, no longer: furkad waits 2 s at most for the barrier
      // (BARRIER_MAX_MS), and a fixed 500 ms here left too little of that to a busy machine (load 20+), which
      // then put the late file in the new shift.
      await eventually(() => readdirSync(detector).some((n) => n.startsWith('.furka-agent-barrier-')), 20_000, "the agent's barrier mark for the call");
      assert.ok(!returned, 'StartShift waits for the barrier');
    } finally {
      process.kill(watcher, 'SIGCONT');
    }
    await change;
    const after = writeImage(detector, 'barrier/after.cbf', 10_000);
    await eventually(() => existsSync(path.join(stored(640, 641), late.rel)) || existsSync(path.join(stored(650, 651), late.rel)), 30_000, 'the late file stored');
    assert.ok(existsSync(path.join(stored(640, 641), late.rel)), `completed before the call: in the old shift (new shift has: ${listFiles(stored(650, 651)).join(', ')})`);
    await eventually(() => existsSync(path.join(stored(650, 651), after.rel)), 30_000, 'the file after the change, in the new shift');
    assert.ok(!existsSync(path.join(stored(650, 651), late.rel)), 'and only there');
  });

  it('places every file completed before a graceful stop (systemctl restart) in the shift that ran, not in the default one it restarts with (A5, F6)', async () => {
    await burstAcrossStop(ppu, { shift: [760, 761], defaultShift: [1000, 1000], count: 1500, bytes: 8_000, minWaiting: 100 });
  });

  it('places every file completed before a stop whose SIGTERM reaches its whole process group (systemctl kill furkad), fetches in flight, in the shift that ran, owned by it (A5, F3, F6)', async () => {
    await burstAcrossStop(ppu, { shift: [762, 763], defaultShift: [1000, 1000], count: 1500, bytes: 8_000, minWaiting: 100, term: 'group' });
  });

  it('answers StartShift before busctl gives up, and stops within systemd\'s TimeoutStopSec, when the agent stops answering mid-stream (F6)', async () => {
    const group = () => ppu.agents['1MF']!.proc.child.pid!;
    await freezeAcrossShiftAndStop(ppu, { freeze: () => process.kill(-group(), 'SIGSTOP'), thaw: () => process.kill(-group(), 'SIGCONT'), count: 1500, bytes: 8_000 });
  });

  it('loses, duplicates and leaves behind nothing when the agent and furkad are killed at random moments', async () => {
    await ppu.startShift(620, 621);
    const detector = ppu.detectorRamdisks['1MF']!;
    const written: WrittenFile[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 200; i++) {
        written.push(writeImage(detector, `chaos/d${i % 4}/img_${String(i).padStart(5, '0')}.cbf`, 20_000 + ((i * 7919) % 200_000)));
        await pause(15);
      }
      writing = false;
    })();
    let kills = 0;
    while (kills < 8 || writing) {
      await pause(150 + Math.random() * 350);
      if (kills % 2 === 0) {
        await ppu.killAgent('1MF');
        await ppu.startAgent('1MF');
      } else {
        await ppu.killFurkad();
        await ppu.startFurkad();
      }
      kills++;
    }
    await writer;
    // furkad restarts in its configured default shift: find each file wherever it landed.
    const copies = () => listFiles(path.join(ppu.storageRoot, 'internal', '1mf'));
    await eventually(() => written.every((f) => copies().some((c) => c.endsWith(`/${f.rel}`))), 120_000, 'every image on the internal storage');
    for (const f of written) {
      const found = copies().filter((c) => c.endsWith(`/${f.rel}`));
      assert.equal(found.length, 1, `${f.rel} stored once (${found.join(', ')})`);
      assert.equal(sha256File(readFileSync(path.join(ppu.storageRoot, 'internal', '1mf', found[0]!))), f.sha256, `${f.rel} complete`);
    }
    // On failure, what the daemons said: this waits on acknowledgements from the last furkad to the last agent.
    await eventually(() => listFiles(detector).length === 0, 20_000, 'the detector drained')
      .catch((e: Error) => { throw new Error(`${e.message}; left: ${listFiles(detector).slice(0, 10).join(', ')}\nfurkad:\n${ppu.furkad!.proc.output().slice(-6000)}\nagent:\n${ppu.agents['1MF']!.proc.output().slice(-4000)}`); });
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')), [], 'nothing left in staging');
    assert.deepEqual(copies().filter((c) => path.basename(c).startsWith('.')), [], 'no temp file on the storage');
    await eventually(async () => (await ppu.queryStatus(-1)).every((r) => r[4] === 0n), 60_000, 'nothing pending');
  });

  it('shows an agent that is not running as retrying, saying nothing listens on its port, and takes its files once it runs again (F10)', async () => {
    await ppu.startShift(730, 731);
    await ppu.killAgent('1MF');
    try {
      // Before, under Node 16 (CentOS 7's): "the agent at URL ended the events stream", as if the agent had been reached.
      await retryingSays('1MF', /connect ECONNREFUSED 127\.0\.0\.1:\d+: nothing listens on port \d+ there \(furka-agent is not running, or port is not the agent's\)$/,
        "furkad's Detectors to say nothing listens");
    } finally {
      await ppu.startAgent('1MF');
    }
    const f = writeImage(ppu.detectorRamdisks['1MF']!, 'restarted/back.cbf', 10_000);
    await eventually(() => listFiles(usr(730, 731)).includes(f.rel), 30_000, 'its file once the agent runs again');
  });

  it('shows an agent that refuses furkad as such, and takes nothing while refused', async () => {
    await ppu.killAgent('1MF');
    const agent = ppu.agents['1MF']!;
    // Restarted with an allow list that does not include this PPU.
    writeFileSync(agent.config, readFileSync(agent.config, 'utf8').replace(/^allow = .*$/m, 'allow = 10.9.8.7'));
    const launch = launchOf(AGENT_BIN);
    const refusing = startProcess(process.execPath, [...launch.args, '--config', agent.config], { env: { ...process.env, ...launch.env } });
    try {
      const f = writeImage(ppu.detectorRamdisks['1MF']!, 'refused/kept.cbf', 10_000);
      await retryingSays('1MF', /allow/, "furkad's Detectors to show the refusal");
      assert.ok(existsSync(path.join(ppu.detectorRamdisks['1MF']!, f.rel)), 'the file stays on the detector');
    } finally {
      await refusing.stop();
      await ppu.startAgent('1MF');
    }
    await eventually(() => listFiles(ppu.detectorRamdisks['1MF']!).length === 0, 30_000, 'taken once the agent lets furkad in again')
      .catch((e: Error) => { throw new Error(`${e.message}\nfurkad:\n${ppu.furkad!.proc.output().slice(-6000)}\nagent:\n${ppu.agents['1MF']!.proc.output().slice(-4000)}`); });
  });
});

describe('furkad over furka-agent with usrdir empty: a detector user and furkad\'s own staging (F1, F2, docs/threat-model.md)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-nousrdir', transport: 'agent' });
    ppu.opts.furkad = { usrdir: '' };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it("never places a detector file under furkad's staging name, so it can neither plant shift records nor take a placed file's place", async () => {
    await ppu.startShift(500, 501);
    const detector = ppu.detectorRamdisks['1MF']!;
    const target = path.join(ppu.ppuRamdisk, '1mf');
    const outside = path.join(ppu.work, 'outside');
    // A detector user's files named as furkad's own: a record of files "set aside" for a shift of root at a
    // target outside the configured one, and a file where the next 'a.cbf' is fetched to.
    mkdirSync(path.join(detector, '.furkad-staging/.held/100-1MF/files'), { recursive: true });
    writeFileSync(path.join(detector, '.furkad-staging/.held/100-1MF/shift.json'),
      JSON.stringify({ usertime: '100', uid: 0, gid: 0, usrdir: 'pwned', target: `${outside}/./evil` }));
    writeFileSync(path.join(detector, '.furkad-staging/.held/100-1MF/files/evil.sh'), '#!/bin/sh\n');
    const precious = writeImage(detector, '.furkad-staging/1MF/a.cbf', 5_000);
    // Deeper down too: where one detector's target holds another's, that one's staging.
    const deeper = writeImage(detector, '2mf/.furkad-staging/2MF/z.cbf', 5_000);
    // The agent announces nothing below a hidden directory (furkad's own refusal of the name, should another agent
    // announce it: agent-transport.test). The ordinary file written after them is delivered; they stay.
    const a = writeImage(detector, 'a.cbf', 5_000);
    await eventually(() => existsSync(path.join(target, 'a.cbf')), 20_000, 'an ordinary file delivered');
    assert.equal(sha256File(readFileSync(path.join(target, 'a.cbf'))), a.sha256);
    assert.ok(existsSync(path.join(detector, precious.rel)), 'the file named as furkad\'s staging stays on the detector, not lost');
    assert.ok(existsSync(path.join(detector, deeper.rel)), 'and one with that name deeper down');
    assert.ok(!existsSync(path.join(target, '2mf')), 'nothing of it placed');
    assert.equal(statSync(path.join(target, '.furkad-staging')).uid, 0, "staging stays furkad's own");
    // A restart and a shift change: nothing of the planted record is taken up.
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0);
    await ppu.startFurkad();
    await ppu.startShift(502, 503);
    const b = writeImage(detector, 'b.cbf', 5_000);
    await eventually(() => existsSync(path.join(target, 'b.cbf')), 20_000, 'the detector still served after the restart');
    assert.equal(sha256File(readFileSync(path.join(target, 'b.cbf'))), b.sha256);
    assert.ok(!existsSync(outside), 'nothing made outside the configured target');
  });

  it('takes up no set-aside record it did not make itself (one owned by a user)', async () => {
    const target = path.join(ppu.ppuRamdisk, '1mf');
    const outside = path.join(ppu.work, 'outside2');
    const held = path.join(target, '.furkad-staging/.held/100-1MF');
    mkdirSync(path.join(held, 'files'), { recursive: true });
    writeFileSync(path.join(held, 'shift.json'), JSON.stringify({ usertime: '100', uid: 500, gid: 501, usrdir: 'x', target: `${outside}/./evil` }));
    writeFileSync(path.join(held, 'files/evil.sh'), '#!/bin/sh\n');
    for (const p of [held, path.join(held, 'shift.json'), path.join(held, 'files'), path.join(held, 'files/evil.sh')]) chownSync(p, 500, 501);
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0);
    await ppu.startFurkad();
    await ppu.startShift(504, 505);
    writeImage(ppu.detectorRamdisks['1MF']!, 'c.cbf', 5_000);
    await eventually(() => existsSync(path.join(target, 'c.cbf')), 20_000, 'the detector served');
    await pause(1500); // left-behind files are tried 1 s after they are taken up
    assert.ok(!existsSync(outside), 'nothing made where a record furkad did not write says');
    await ppu.furkad!.proc.said(/not furkad's own/);
  });
});

// Files furkad delivered that grimseld's journal lost (G12 "nothing lost", G3, G5; S4): the journal moved away, as
// grimseld's "line N is corrupt ... Move the file away" tells an administrator to. Before, grimseld started empty and
// said nothing of the files still on the ramdisk, copied or not: those not copied yet were never copied, and a tmpfs
// ramdisk lost them at the next reboot. Now it names them (how many, a few, a list in state_dir) with the command that
// hands them over, and that command copies each of them exactly once: one copied before is recognised, not copied
// again. A restart that lost nothing says nothing. Real grimseld and furkad on a private bus, the PPU ramdisk a tmpfs,
// the INTERNAL storage a loop-mounted ext4 disk that is unmounted for a while so that files stay pending (G13).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountImage, unmount } from '../fixtures/tmpfs.js';

const MB = 1024 * 1024;

describe('files on the ramdisk that furkad delivered and the journal lost (G12, G3, G5, S4)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let mnt: string;
  let image: string;
  const copiesOf = (rel: string): string => path.join(mnt, 'data', '1mf', '1000_1000', rel);
  const internalRow = async () => (await ppu.queryStatus(1)).find((r) => r[3] === 'internal');
  const stream = (dir: string, n: number): WrittenFile[] =>
    Array.from({ length: n }, (_, i) => writeImage(ppu.detectorRamdisks['1MF']!, `${dir}/f${i}.cbf`, 30_000 + i));
  const grimseldSaid = (): string => ppu.grimseld!.proc.output();

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-unjournaled', ramdiskBytes: 64 * MB, grimseldEnv: { LOG_LEVEL: 'debug' } });
    mnt = path.join(ppu.work, 'mnt', 'internal');
    image = path.join(ppu.work, 'internal.img');
    writeFileSync(image, '');
    execFileSync('truncate', ['-s', '64M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    mountImage(image, mnt);
    ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target: path.join(mnt, 'data'), mountpoint: mnt, n_copy_processes: 2 } };
    await ppu.start();
  });
  after(async () => ppu?.stop()); // unmounts the disk and the ramdisk too

  it('names every delivered file the moved-away journal held, hands them over with the command it gives, and each is copied exactly once', async () => {
    // Three files delivered and copied; their originals stay on the ramdisk until the next shift (G5).
    const copied = stream('a', 3);
    await eventually(async () => (await internalRow())?.[5] === 3n, 60_000, 'the first three files copied');
    const inodes = copied.map((f) => statSync(copiesOf(f.rel)).ino);
    // The disk taken away: three more files are delivered and journaled, and wait for it (G13).
    unmount(mnt);
    const pending = stream('b', 3);
    await eventually(async () => (await internalRow())?.[4] === 3n, 60_000, 'three files delivered and pending');

    // A normal restart: the journal holds every file on the ramdisk, and nothing is said of them.
    await ppu.grimseld!.stop();
    await ppu.startGrimseld();
    await ppu.grimseld!.proc.said(/every file on the ramdisk that furkad delivered is in the journal/, 90_000);
    assert.doesNotMatch(grimseldSaid(), /not in the journal/, 'nothing said when nothing was lost');
    assert.equal((await internalRow())?.[4], 3n, 'the pending files still counted pending');

    // grimseld stopped, its journal moved away (as "line N is corrupt ... Move the file away" says), the disk back.
    await ppu.grimseld!.stop();
    const state = path.join(ppu.work, 'state');
    renameSync(path.join(state, 'journal.jsonl'), path.join(state, 'journal.jsonl.corrupt'));
    mountImage(image, mnt);
    // The shift's user (who owns the directory) plants links to the copies, which carry the provenance too
    // (I3), and a FIFO: never followed nor opened, none of them named (docs/threat-model.md).
    const u = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    symlinkSync(path.join(mnt, 'data', '1mf', '1000_1000', 'a'), path.join(u, 'planted-dir'));
    symlinkSync(copiesOf('a/f0.cbf'), path.join(u, 'planted-file.cbf'));
    execFileSync('mkfifo', [path.join(u, 'planted-fifo')]);
    for (const n of ['planted-dir', 'planted-file.cbf', 'planted-fifo']) execFileSync('chown', ['-h', '1000:1000', path.join(u, n)]);
    await ppu.startGrimseld();
    await ppu.grimseld!.proc.said(/6 files on the ramdisk that furkad delivered are not in the journal/, 120_000);
    const line = grimseldSaid().split('\n').find((l) => /are not in the journal/.test(l))!;
    const said = JSON.parse(line) as { count: number; files: string[]; list: string; command: string };
    assert.equal(said.count, 6);
    assert.ok(said.files.length > 0 && said.files.every((f) => f.startsWith(`${ppu.ppuRamdisk}/1mf/1000_1000/`)), `a few of them named: ${said.files.join(' ')}`);
    const listed = readFileSync(said.list, 'utf8').split('\n').filter(Boolean).sort();
    assert.deepEqual(listed, [...copied, ...pending].map((f) => path.join(ppu.ppuRamdisk, '1mf', '1000_1000', f.rel)).sort(), 'the list names all six');
    assert.ok(pending.every((f) => !existsSync(copiesOf(f.rel))), 'the pending ones are not copied yet');

    // grimseld learns the shift again from furkad as soon as it is back on the bus, with no file of furkad's to
    // bring it (before, only with furkad's next file: until then the command's files were refused, "no shift has
    // started yet"); then the administrator runs the command it gave.
    await eventually(async () => (await internalRow()) !== undefined, 30_000, "grimseld's status showing furkad's shift again");
    execFileSync('sh', ['-c', said.command]);
    await eventually(async () => {
      const r = await internalRow();
      return r?.[4] === 0n && r[5] === 6n;
    }, 60_000, 'the six handed over and counted copied');
    stream('c', 1);
    await eventually(async () => (await internalRow())?.[5] === 7n, 60_000, "furkad's next file copied");
    for (const f of pending) assert.equal(sha256File(readFileSync(copiesOf(f.rel))), f.sha256, `${f.rel} copied whole`);
    assert.deepEqual(copied.map((f) => statSync(copiesOf(f.rel)).ino), inodes, 'the files copied before are not copied again');
    assert.equal((await internalRow())?.[6], 0n, 'none failed');
    assert.ok(!existsSync(copiesOf('b/f0.cbf.~1~')) && !existsSync(copiesOf('a/f0.cbf.~1~')), 'no second copy beside one');
  });

  it("files furkad placed while grimseld was stopped are handed over from furkad's outbox, and not named as lost", async () => {
    await ppu.grimseld!.stop();
    const placed = stream('d', 2);
    await eventually(() => placed.every((f) => existsSync(path.join(ppu.ppuRamdisk, '1mf', '1000_1000', f.rel))), 60_000, 'placed on the ramdisk while grimseld is stopped');
    await ppu.startGrimseld();
    await eventually(async () => (await internalRow())?.[5] === 9n, 60_000, "furkad's outbox handed over and copied");
    await ppu.grimseld!.proc.said(/every file on the ramdisk that furkad delivered is in the journal/, 90_000);
    assert.doesNotMatch(grimseldSaid(), /not in the journal/, 'nothing said: nothing was lost');
    assert.ok(!existsSync(path.join(ppu.work, 'state', 'not-in-journal.txt')), 'the list of the earlier start is gone: nothing in it to hand over');
  });

  it('a state_dir restored from a backup that has files pending whose copies were made and originals cleaned up since: counted copied, not failed (G12, G9)', async () => {
    const state = path.join(ppu.work, 'state');
    unmount(mnt);
    const later = stream('e', 2);
    await eventually(async () => (await internalRow())?.[4] === 2n, 60_000, 'two files pending');
    // Counted pending as they come; the backup must hold them (a run in CI took it before their lines were written).
    await eventually(() => later.every((f) => readFileSync(path.join(state, 'journal.jsonl'), 'utf8').includes(f.rel)), 60_000, 'both in the journal');
    const backup = path.join(ppu.work, 'journal.backup');
    copyFileSync(path.join(state, 'journal.jsonl'), backup);
    mountImage(image, mnt);
    await eventually(async () => (await internalRow())?.[4] === 0n, 60_000, 'the two copied');
    const { 0: shift, 5: copiedThen } = (await internalRow())!;
    // The next shift: the ended one's originals are cleaned up once their copies are there (G5).
    await ppu.startShift(1000, 1000);
    await eventually(() => later.every((f) => !existsSync(path.join(ppu.ppuRamdisk, '1mf', '1000_1000', f.rel))), 60_000, 'the originals cleaned up');
    await ppu.grimseld!.stop();
    copyFileSync(backup, path.join(state, 'journal.jsonl'));
    await ppu.startGrimseld();
    await eventually(async () => {
      const r = (await ppu.queryStatus(-1)).find((x) => x[0] === shift && x[3] === 'internal');
      return r !== undefined && r[4] === 0n;
    }, 60_000, 'the restored pending files settled');
    const r = (await ppu.queryStatus(-1)).find((x) => x[0] === shift && x[3] === 'internal')!;
    assert.deepEqual([r[5], r[6]], [copiedThen, 0n], 'counted copied as they are (before: failed, "is gone; not retried")');
    assert.doesNotMatch(grimseldSaid(), /is gone/, 'no COPY_ERROR for a copy that is there');
    for (const f of later) assert.equal(sha256File(readFileSync(copiesOf(f.rel))), f.sha256, `${f.rel}: its copy is whole`);
  });
});

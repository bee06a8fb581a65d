// A file larger than the PPU ramdisk's free space, with real rsync daemons and furka-agents and a small tmpfs PPU
// ramdisk (F1, F10): the files that fit keep flowing, the one that does not waits on the detector (its source kept),
// named in the log and in lastError, and is delivered by itself once there is room; the byte count counts only
// what arrived. Found by a hostile tester: over rsync it failed every run, and every file sorting after it stayed
// on the detector for good, while the byte count grew by its size with every failed run.
// And a PPU ramdisk with room for some files but not all of them (a nearly full one): the ones that fit are
// delivered, each pulled once, the others wait named. Found by a hostile tester: with settle_ms, the copies the
// first run made were taken for vanished from the detector, dropped and pulled again, run after run, and none of
// the files was delivered.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';
import { availableBytes } from '../../src/common/statfs.js';

const MB = 1024 * 1024;

type Row = [string, string, string, bigint, bigint, bigint];

/** Puts `files` (rel → a size for a sparse file, or contents) into the detector's root at once (a renamed directory). */
function deliver(ppu: Ppu, top: string, files: Record<string, number | string>): void {
  const root = ppu.detectorRamdisks['1MF']!;
  const build = path.join(path.dirname(root), `build-${top}`);
  for (const [rel, what] of Object.entries(files)) {
    const full = path.join(build, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    if (typeof what === 'number') {
      writeFileSync(full, '');
      truncateSync(full, what); // sparse: no room taken on the detector
    } else {
      writeFileSync(full, what);
    }
  }
  renameSync(build, path.join(root, top));
}

// rsync with settle_ms (its default): the first run of each cycle copies without removing, and is the one that fails.
const CASES = [
  { transport: 'rsync', settleMs: 0, name: 'rsync' },
  { transport: 'rsync', settleMs: 300, name: 'rsync, settle_ms' },
  { transport: 'agent', settleMs: 0, name: 'agent' },
] as const;

for (const { transport, settleMs, name } of CASES) {
  describe(`furkad: a file larger than the PPU ramdisk's free space (${name}; F1, F10)`, function () {
    this.timeout(180_000);

    it(`lets the files that fit through, names the one that does not, keeps it on the detector and delivers it once there is room (${name}; F1, F10)`, async () => {
      const ppu = await new Ppu({ prefix: `ppu-room-${transport}`, transport, ramdiskBytes: 16 * MB,
        ...(settleMs > 0 ? { detectorConf: { '1MF': { settle_ms: settleMs } } } : {}) }).start();
      try {
        await ppu.startShift(4242, 4243, []);
        const placed = (rel: string): string => path.join(ppu.ppuRamdisk, '1mf/4242_4243', rel);
        const onDetector = (rel: string): string => path.join(ppu.detectorRamdisks['1MF']!, rel);
        const row = async (): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;
        // 'S/a-huge.img' sorts before 'S/b-small.img': rsync's receiver met it first and ended the run there.
        deliver(ppu, 'S', { 'a-huge.img': 32 * MB, 'b-small.img': 'small\n' });
        await eventually(() => existsSync(placed('S/b-small.img')), 30_000, 'the small file delivered beside the big one (F1)');
        await eventually(() => !existsSync(onDetector('S/b-small.img')), 20_000, "the small file's source removed");
        await eventually(async () => (await row())[2].includes('S/a-huge.img'), 20_000, 'lastError naming the file that does not fit');
        await ppu.furkad!.proc.said(/S\/a-huge\.img \(33554432 bytes\) does not fit in the \d+ bytes free on the PPU ramdisk/);
        // The failed run is said to be the PPU's, where, not the detector's (F10).
        await ppu.furkad!.proc.said(new RegExp(`failing on the PPU \\(${ppu.ppuRamdisk}/1mf/\\.furkad-staging/1MF\\), not at the detector`));
        assert.ok(!/detector unreachable or failing/.test(ppu.furkad!.proc.output()), 'a full PPU ramdisk is not called the detector unreachable');
        // Files arriving later go on too (F10: nothing stuck behind it).
        deliver(ppu, 'T3', { 'a.img': 'later\n' });
        await eventually(() => existsSync(placed('T3/a.img')), 30_000, 'a file written later delivered (F10)');
        assert.ok(existsSync(onDetector('S/a-huge.img')), 'the big file waits on the detector, its source kept');
        assert.ok(!existsSync(placed('S/a-huge.img')), 'and is not on the PPU');
        // The counts follow the placement a moment later (the Detectors property is published in batches).
        let r = await row();
        await eventually(async () => { r = await row(); return r[3] === 2n && r[4] === 12n; }, 10_000,
          "Detectors to count two files delivered, and the bytes of those two only, not the big file's for every attempt")
          .catch((e: Error) => { throw new Error(`${e.message}; the row: ${String(r)}`); });
        assert.match(r[2], /S\/a-huge\.img/, 'still named while it waits');
        if (transport === 'agent') {
          // Never started (found by a hostile tester): each try of a fetch wrote until the PPU ramdisk was full, under
          // every other writer there, and again at each retry. furkad's writes are the two small files and its records.
          const written = Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${ppu.furkad!.proc.child.pid}/io`, 'utf8'))![1]);
          assert.ok(written < 4 * MB, `furkad wrote ${written} bytes while the big file did not fit: its fetch was tried (G6)`);
        }

        // Room again: the big file is delivered by itself, and lastError clears.
        execFileSync('mount', ['-o', 'remount,size=64M', ppu.ppuRamdisk]);
        await eventually(() => existsSync(placed('S/a-huge.img')), 60_000, 'the big file delivered once there is room');
        await eventually(() => !existsSync(onDetector('S/a-huge.img')), 20_000, "its source removed once it was placed");
        await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
        r = await row();
        assert.equal(r[3], 3n, String(r));
        assert.equal(r[4], BigInt(32 * MB + 12), `bytes of the three files: ${String(r)}`);
      } finally {
        await ppu.stop();
      }
    });
  });
}

/**
 * What the detector's rsync daemon has sent so far (its log's `sent N bytes` line of each run): how many runs, how
 * many bytes, and how many runs sent file data (more than a listing's few kB).
 */
function daemonSent(ppu: Ppu): { runs: number; bytes: number; withData: number } {
  const log = readFileSync(ppu.rsyncd['1MF']!.logFile, 'utf8');
  const sent = [...log.matchAll(/ sent (\d+) bytes /g)].map((m) => Number(m[1]));
  return { runs: sent.length, bytes: sent.reduce((a, b) => a + b, 0), withData: sent.filter((n) => n > 64 * 1024).length };
}

// 2000: settle_ms's default with remove_source.
for (const settleMs of [0, 2000]) {
  describe(`furkad: a nearly full PPU ramdisk, room for some of the files (rsync, settle_ms ${settleMs}; F1, F2, F10, S4)`, function () {
    this.timeout(180_000);

    it(`delivers the files that fit, each pulled once, the others wait on the detector, named, and come once there is room (settle_ms ${settleMs})`, async () => {
      // The fill guard never links (fillstate_limit 100): the room the test leaves is all there is.
      const ppu = await new Ppu({ prefix: 'ppu-nearfull', transport: 'rsync', ramdiskBytes: 16 * MB,
        detectorConf: { '1MF': { settle_ms: settleMs } }, grimseld: { fillstate_limit: 100 } }).start();
      try {
        await ppu.startShift(4242, 4243, []);
        const placed = (rel: string): string => path.join(ppu.ppuRamdisk, '1mf/4242_4243', rel);
        const onDetector = (rel: string): string => path.join(ppu.detectorRamdisks['1MF']!, rel);
        const row = async (): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;
        // 2.5 MB left on the PPU ramdisk, taken by a file no one delivered: room for two of the five 1 MB files.
        const filler = path.join(ppu.ppuRamdisk, 'filler');
        writeFileSync(filler, Buffer.alloc(await availableBytes(ppu.ppuRamdisk) - 2.5 * MB));
        const files = ['N/f1.img', 'N/f2.img', 'N/f3.img', 'N/f4.img', 'N/f5.img'];
        deliver(ppu, 'N', Object.fromEntries(files.map((rel) => [rel.slice(2), MB])));

        await eventually(() => files.slice(0, 2).every((rel) => existsSync(placed(rel))), 30_000, 'the two files that fit delivered (F1)');
        await eventually(async () => /3 files wait on the detector until the PPU ramdisk has room/.test((await row())[2]), 20_000,
          'lastError saying that the other three wait for room');
        // Runs go on at their pace meanwhile (each lists the files waiting): the daemon sends no file again.
        const before = daemonSent(ppu);
        await eventually(() => daemonSent(ppu).runs >= before.runs + 20, 60_000, 'twenty more runs of furkad');
        const after = daemonSent(ppu);
        // One run sent file data: the one that ran out of room (its sender streams ahead of the receiver, so it may
        // have sent all five files' bytes). The files it left are not pulled again while there is no room.
        assert.equal(after.withData, 1, `${after.withData} of the daemon's ${after.runs} runs sent file data (${after.bytes} bytes in all): ` +
          'the same files pulled over and over');
        assert.ok(after.bytes - before.bytes < 64 * 1024, `the daemon sent ${after.bytes - before.bytes} bytes in the last ${after.runs - before.runs} runs: only listings`);
        for (const rel of files.slice(0, 2)) assert.ok(!existsSync(onDetector(rel)), `${rel}'s source removed once delivered`);
        for (const rel of files.slice(2)) {
          assert.ok(existsSync(onDetector(rel)), `${rel} waits on the detector, its source kept`);
          assert.ok(!existsSync(placed(rel)), `${rel} not delivered while there is no room`);
        }
        assert.doesNotMatch(ppu.furkad!.proc.output(), /vanished from the detector/, 'no file that is still on the detector is said to have vanished from it');
        let r = await row();
        await eventually(async () => { r = await row(); return r[3] === 2n && r[4] === BigInt(2 * MB); }, 10_000,
          'Detectors to count the two files delivered and their bytes, once')
          .catch((e: Error) => { throw new Error(`${e.message}; the row: ${String(r)}`); });

        // Room again: the three that waited are delivered, and lastError clears.
        rmSync(filler);
        await eventually(() => files.every((rel) => existsSync(placed(rel))), 60_000, 'all five files delivered once there is room');
        await eventually(() => files.every((rel) => !existsSync(onDetector(rel))), 20_000, 'their sources removed');
        await eventually(async () => (await row())[2] === '', 20_000, 'lastError cleared');
        await eventually(async () => { r = await row(); return r[3] === 5n && r[4] === BigInt(5 * MB); }, 10_000,
          'Detectors to count five files and their bytes, each once')
          .catch((e: Error) => { throw new Error(`${e.message}; the row: ${String(r)}`); });
        assert.doesNotMatch(ppu.furkad!.proc.output(), /vanished from the detector/);
      } finally {
        await ppu.stop();
      }
    });
  });
}

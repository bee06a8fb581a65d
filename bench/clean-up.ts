// How fast grimseld's shift-change clean-up (G5) deletes an ended shift's originals from the ramdisk, one at a time
// against several at once (reclaimer.ts, CLEAN_IN_FLIGHT), in the same run, rounds alternating (BENCHMARKS.md).
//
//   node dist/bench/clean-up.js [files] [rounds]      (defaults 3000 and 2)
//
// The originals lie on a tmpfs (/dev/shm, as the PPU ramdisk), the internal copies and grimseld's journal on this
// machine's disk (/var/tmp), as on a PPU: each deletion fsyncs its copy's directory and journals its line with an
// fdatasync. The real Reclaimer, Catalog and Journal; no daemon, no D-Bus. A baseline beside them: unlink of an
// original and one fdatasync'ed line appended per file, in a plain loop (the least a recorded deletion costs).
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { Journal } from '../src/grimseld/journal.js';
import { Catalog, type NewFile } from '../src/grimseld/catalog.js';
import { MessageHub } from '../src/grimseld/messages.js';
import { Reclaimer } from '../src/grimseld/reclaimer.js';
import type { StorageInfo } from '../src/grimseld/storage-info.js';

const files = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 2);
const log = pino({ level: 'silent' });
const WHEN = new Date('2026-03-01T12:00:00Z');

/** Deletions a second of one clean-up of `n` originals, `inFlight` at once. */
async function cleanUp(n: number, inFlight: number): Promise<number> {
  const ramdisk = mkdtempSync('/dev/shm/clean-bench-');
  const disk = mkdtempSync('/var/tmp/clean-bench-');
  try {
    const dirs = 20; // run directories of 150 images each, as a detector writes them
    for (let d = 0; d < dirs; d++) {
      mkdirSync(path.join(ramdisk, `1mf/u/run${d}`), { recursive: true });
      mkdirSync(path.join(disk, `internal/1mf/u/run${d}`), { recursive: true });
    }
    const opened = await Journal.open(path.join(disk, 'state'));
    const catalog = new Catalog(opened.journal, { storages: ['internal'], historyMaxEntries: 50, ramdiskRoot: ramdisk, hasExternal: false });
    catalog.replay(opened.records);
    await catalog.shift(1n, 500, 501);
    const news: NewFile[] = [];
    for (let i = 0; i < n; i++) {
      const rel = `1mf/u/run${i % dirs}/img_${String(i).padStart(6, '0')}.cbf`;
      for (const p of [path.join(ramdisk, rel), path.join(disk, 'internal', rel)]) {
        writeFileSync(p, `frame ${i}`);
        utimesSync(p, WHEN, WHEN);
      }
      const st = statSync(path.join(ramdisk, rel));
      news.push({ src: path.join(ramdisk, rel), rel, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev });
    }
    const recs = await catalog.accept(1n, news);
    await Promise.all(recs.map((rec) => catalog.setCopy(rec, 'internal', 'copied')));
    execFileSync('sync');
    await catalog.shift(2n, 600, 601);
    const internal: StorageInfo = { id: 'internal', type: 'INTERNAL', target: path.join(disk, 'internal'), mountpoint: undefined, writers: 1 };
    const reclaimer = new Reclaimer(catalog, internal, undefined, {
      ramdiskRoot: ramdisk, ramdiskMountpoint: '/dev/shm', createLinks: false, fillLimitPercent: 101, intervalMs: 1, cleanInFlight: inFlight,
    }, new MessageHub(log), log);
    reclaimer.shiftStarted();
    const stop = new AbortController();
    const start = process.hrtime.bigint();
    const running = reclaimer.run(stop.signal);
    while (recs.some((r) => catalog.isLive(r))) await new Promise((r) => setTimeout(r, 5));
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    stop.abort();
    await running;
    await opened.journal.close();
    return n / s;
  } finally {
    rmSync(ramdisk, { recursive: true, force: true });
    rmSync(disk, { recursive: true, force: true });
  }
}

/** Deletions a second of a plain loop: unlink an original, append a line to a file on the disk, fdatasync it. */
function plainBaseline(n: number): number {
  const ramdisk = mkdtempSync('/dev/shm/clean-bench-');
  const disk = mkdtempSync('/var/tmp/clean-bench-');
  const fd = openSync(path.join(disk, 'lines'), 'a');
  try {
    for (let i = 0; i < n; i++) writeFileSync(path.join(ramdisk, `img_${i}`), `frame ${i}`);
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      unlinkSync(path.join(ramdisk, `img_${i}`));
      writeSync(fd, `deleted ${i}\n`);
      fdatasyncSync(fd);
    }
    return n / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    closeSync(fd);
    rmSync(ramdisk, { recursive: true, force: true });
    rmSync(disk, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`clean-up of ${files} originals of an ended shift (G5), ${rounds} rounds; load ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (let r = 1; r <= rounds; r++) {
    const order = r % 2 === 1 ? [1, 16] : [16, 1];
    const rate = new Map<number, number>();
    for (const k of order) rate.set(k, await cleanUp(files, k));
    const base = plainBaseline(files);
    console.log(`round ${r}: one at a time ${rate.get(1)!.toFixed(0)}/s, 16 at once ${rate.get(16)!.toFixed(0)}/s (${(rate.get(16)! / rate.get(1)!).toFixed(2)}x); ` +
      `unlink + an fdatasync'ed line per file ${base.toFixed(0)}/s (16 at once: ${(rate.get(16)! / base).toFixed(2)}x of it)`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

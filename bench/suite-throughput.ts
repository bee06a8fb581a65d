// Bulk throughput (furkad vs rsync -a, grimseld vs cp at equal parallelism) and small files end to end.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../test/fixtures/ppu.js';
import { licensedPpu } from './licensed-ppu.js';
import { startRsyncDaemon } from '../test/fixtures/rsync-daemon.js';
import { moveInto, whenComplete, writeSet } from './file-sets.js';
import { parallelCp, rsyncPull } from './baselines.js';
import { feedFifo } from './grimseld-feed.js';
import { usage, type Usage } from './proc-usage.js';
import { median, ratio } from './stats.js';
import { MB, round } from './latency.js';
import type { Mode } from './modes.js';

/** grimseld's writers per storage, and so cp's parallelism per destination. */
export const COPY_PARALLELISM = 4;
const TIMEOUT_MS = 600_000;

interface Round {
  furkadMBps: number;
  /** Detector -> internal storage of the bulk set through furkad and grimseld. */
  bulkE2eMBps: number;
  rsyncMBps: number;
  grimseld1MBps: number;
  cp1MBps: number;
  grimseld2MBps: number;
  cp2MBps: number;
  smallE2eFilesPerS: number;
  /** furkad pulling the small set with grimseld stopped. */
  smallFurkadFilesPerS: number;
  /** The same stage inside the end-to-end run, sharing the cores with grimseld's copies. */
  smallFurkadInE2eFilesPerS?: number;
  smallGrimseldFilesPerS: number;
  smallRsyncFilesPerS: number;
  smallCpFilesPerS: number;
  /** furkad and grimseld (and furka-agent, over it) during the small-file run. */
  cpuSPer1000: Record<string, number>;
  peakRssMb: Record<string, number>;
}

export interface ThroughputResult {
  bulk: { files: number; fileMB: number; totalMB: number };
  small: { files: number; fileKB: number };
  copyParallelism: number;
  rounds: Round[];
  /** Medians over rounds, and the ratios the targets are about. */
  median: Round;
  ratios: { furkadVsRsync: number; grimseld1VsCp: number; grimseld2VsCp: number; smallVsSlowerOfRsyncCp: number };
}

const mbps = (bytes: number, s: number): number => round(bytes / MB / s);

async function oneRound(mode: Mode, roundNo: number): Promise<Omit<Round, 'grimseld2MBps' | 'cp2MBps'>> {
  const bulkCount = Math.max(1, Math.round(mode.bulkBytes / (6 * MB)));
  // BENCH_TRANSPORT=agent: furkad over furka-agent instead of the detector's rsync daemon.
  const transport = process.env['BENCH_TRANSPORT'] === 'agent' ? { transport: 'agent' as const } : {};
  const ppu = await licensedPpu({ prefix: 'bench-bulk', ramdiskBytes: mode.ramdiskBytes, detectorRamdiskBytes: mode.ramdiskBytes, ...transport }).start();
  // The baseline's detector and the staged sets share the detectors' tmpfs: a set is renamed into place.
  const baselineDir = path.join(ppu.detectorsRoot, 'baseline-detector', 'ramdisk');
  mkdirSync(baselineDir, { recursive: true });
  const baseline = await startRsyncDaemon(baselineDir, ppu.work);
  type StagedSet = { dir: string; bytes: number; names: string[] };
  const stage = (name: string, count: number, size: number): StagedSet => {
    const dir = path.join(ppu.detectorsRoot, 'stage', name);
    return { dir, ...writeSet(dir, count, size) };
  };
  // Both copies of each set are written up front and flushed, so that no writeback overlaps a timed phase.
  const [bulk, bulk2] = [stage('bulk-a', bulkCount, 6 * MB), stage('bulk-b', bulkCount, 6 * MB)];
  const [small, small2, small3] = ['small-a', 'small-b', 'small-c'].map((n) => stage(n, mode.smallFiles, 100_000)) as [StagedSet, StagedSet, StagedSet];
  settle();
  const shiftDir = (root: string): string => path.join(root, '1mf', '1000_1000');
  const internal = path.join(ppu.storageRoot, 'internal');
  try {
    // furkad draining a scan of 6 MB files, and one rsync -a of the same set from the same kind of daemon
    // (which goes first alternates between rounds, so that neither always meets a warmer machine).
    const rsyncBulk = async (): Promise<number> => {
      moveInto(bulk2.dir, path.join(baselineDir, 'bulk'));
      const sec = await rsyncPull(baseline.port, 'bulk', path.join(ppu.ppuRamdisk, 'rsync-bulk'));
      settle();
      return sec;
    };
    const rsyncFirstS = roundNo % 2 === 1 ? await rsyncBulk() : undefined;
    const t0 = moveInto(bulk.dir, path.join(ppu.detectorRamdisks['1MF']!, 'bulk'));
    const t1 = await whenComplete(path.join(shiftDir(ppu.ppuRamdisk), 'bulk'), bulkCount, TIMEOUT_MS, 'furkad to drain the bulk set');
    const t2 = await whenComplete(path.join(shiftDir(internal), 'bulk'), bulkCount, TIMEOUT_MS, 'grimseld to store the bulk set');
    settle();
    const rsyncS = rsyncFirstS ?? await rsyncBulk();

    // grimseld copying that set (now on the PPU ramdisk) to its one storage, then cp at the same parallelism.
    const g0 = feedFifo(ppu, 'rsync-bulk', bulk.names);
    const g1 = await whenComplete(path.join(internal, 'rsync-bulk'), bulkCount, TIMEOUT_MS, 'grimseld to copy the bulk set');
    settle();
    const cp1S = await parallelCp(path.join(ppu.ppuRamdisk, 'rsync-bulk'), [path.join(ppu.storageRoot, 'cp-bulk')], COPY_PARALLELISM);
    settle();

    // Small files end to end (detector -> PPU ramdisk -> internal storage), with the daemons' cost per 1000 files.
    const daemons = (): Record<string, Usage> => ({
      furkad: usage(ppu.furkad!.proc.child.pid!), grimseld: usage(ppu.grimseld!.proc.child.pid!),
      // Over furka-agent: the agent with its inotifywait and lease helper.
      ...(ppu.agents['1MF'] ? { agent: usage(ppu.agents['1MF'].proc.child.pid!) } : {}),
    });
    const before = daemons();
    const s0 = moveInto(small.dir, path.join(ppu.detectorRamdisks['1MF']!, 'small'));
    const [sPulled, s1] = await Promise.all([
      whenComplete(path.join(shiftDir(ppu.ppuRamdisk), 'small'), mode.smallFiles, TIMEOUT_MS, 'small files to reach the PPU ramdisk'),
      whenComplete(path.join(shiftDir(internal), 'small'), mode.smallFiles, TIMEOUT_MS, 'small files to reach the internal storage'),
    ]);
    const after = daemons();
    settle();
    moveInto(small2.dir, path.join(baselineDir, 'small'));
    const smallRsyncS = await rsyncPull(baseline.port, 'small', path.join(ppu.ppuRamdisk, 'rsync-small'));
    const smallCpS = await parallelCp(path.join(ppu.ppuRamdisk, 'rsync-small'), [path.join(ppu.storageRoot, 'cp-small')], COPY_PARALLELISM);
    settle();
    // Each stage alone, to tell which one bounds the end-to-end rate. furkad alone: grimseld is stopped
    // (SIGSTOP) while furkad pulls, so that its copies do not share the two cores with the pull (furkad hands
    // files over while it pulls; its hand-over waits meanwhile), then let go to catch up, untimed.
    const grimseldPid = ppu.grimseld!.proc.child.pid!;
    process.kill(grimseldPid, 'SIGSTOP');
    let a0: number;
    let a1: number;
    try {
      a0 = moveInto(small3.dir, path.join(ppu.detectorRamdisks['1MF']!, 'small-alone'));
      a1 = await whenComplete(path.join(shiftDir(ppu.ppuRamdisk), 'small-alone'), mode.smallFiles, TIMEOUT_MS, 'furkad alone to pull the small set');
    } finally {
      process.kill(grimseldPid, 'SIGCONT');
    }
    await whenComplete(path.join(shiftDir(internal), 'small-alone'), mode.smallFiles, TIMEOUT_MS, 'grimseld to catch up after furkad alone');
    settle();
    const sg0 = feedFifo(ppu, 'rsync-small', small.names);
    const sg1 = await whenComplete(path.join(internal, 'rsync-small'), mode.smallFiles, TIMEOUT_MS, 'grimseld to copy the small set');
    const per1000 = (k: string): number => round((after[k]!.cpuS - before[k]!.cpuS) * 1000 / mode.smallFiles);

    return {
      furkadMBps: mbps(bulk.bytes, (t1 - t0) / 1000),
      bulkE2eMBps: mbps(bulk.bytes, (t2 - t0) / 1000),
      rsyncMBps: mbps(bulk.bytes, rsyncS),
      grimseld1MBps: mbps(bulk.bytes, (g1 - g0) / 1000),
      cp1MBps: mbps(bulk.bytes, cp1S),
      smallE2eFilesPerS: round(mode.smallFiles / ((s1 - s0) / 1000)),
      smallFurkadFilesPerS: round(mode.smallFiles / ((a1 - a0) / 1000)),
      smallFurkadInE2eFilesPerS: round(mode.smallFiles / ((sPulled - s0) / 1000)),
      smallGrimseldFilesPerS: round(mode.smallFiles / ((sg1 - sg0) / 1000)),
      smallRsyncFilesPerS: round(mode.smallFiles / smallRsyncS),
      smallCpFilesPerS: round(mode.smallFiles / smallCpS),
      cpuSPer1000: Object.fromEntries(Object.keys(before).map((k) => [k, per1000(k)])),
      peakRssMb: Object.fromEntries(Object.entries(after).map(([k, u]) => [k, round(u.peakRssMb)])),
    };
  } finally {
    await baseline.stop();
    await ppu.stop();
  }
}

/** Writes dirty pages back now (sync(1)), so that a timed phase does not pay for the one before. */
function settle(): void {
  execFileSync('sync');
}

/** grimseld with two storages of COPY_PARALLELISM writers each vs two parallel cp pipelines. */
async function twoStorages(mode: Mode, count: number): Promise<{ grimseld2MBps: number; cp2MBps: number }> {
  const storages = tempDir('bench-storages');
  const ppu = licensedPpu({
    prefix: 'bench-2st',
    ramdiskBytes: mode.ramdiskBytes,
    storages: {
      'storage.internal': { type: 'INTERNAL', target: path.join(storages, 'internal'), n_copy_processes: COPY_PARALLELISM },
      'storage.second': { type: 'OPTIONAL', target: path.join(storages, 'second'), n_copy_processes: COPY_PARALLELISM },
    },
  });
  try {
    await ppu.start();
    const set = writeSet(path.join(ppu.ppuRamdisk, 'set'), count, 6 * MB);
    settle();
    const t0 = feedFifo(ppu, 'set', set.names);
    await whenComplete(path.join(storages, 'internal', 'set'), count, TIMEOUT_MS, 'grimseld to fill the internal storage');
    const t1 = await whenComplete(path.join(storages, 'second', 'set'), count, TIMEOUT_MS, 'grimseld to fill the second storage');
    const cpS = await parallelCp(path.join(ppu.ppuRamdisk, 'set'), [path.join(storages, 'cp-a'), path.join(storages, 'cp-b')], COPY_PARALLELISM);
    return { grimseld2MBps: mbps(2 * set.bytes, (t1 - t0) / 1000), cp2MBps: mbps(2 * set.bytes, cpS) };
  } finally {
    await ppu.stop();
    rmSync(storages, { recursive: true, force: true });
  }
}

export async function throughputSuite(mode: Mode): Promise<ThroughputResult> {
  const rounds: Round[] = [];
  for (let r = 0; r < mode.repeats; r++) {
    const one = await oneRound(mode, r);
    rounds.push({ ...one, ...await twoStorages(mode, Math.max(1, Math.round(mode.bulkBytes / (6 * MB)))) });
    console.error(`  round ${r + 1}: ${JSON.stringify(rounds[r])}`);
  }
  const m = (k: keyof Round): number => median(rounds.map((x) => x[k] as number));
  const rec = (k: 'cpuSPer1000' | 'peakRssMb'): Record<string, number> =>
    Object.fromEntries(Object.keys(rounds[0]![k]).map((d) => [d, median(rounds.map((x) => x[k][d]!))]));
  const med: Round = {
    furkadMBps: m('furkadMBps'), bulkE2eMBps: m('bulkE2eMBps'), smallFurkadFilesPerS: m('smallFurkadFilesPerS'), smallFurkadInE2eFilesPerS: m('smallFurkadInE2eFilesPerS'), smallGrimseldFilesPerS: m('smallGrimseldFilesPerS'), rsyncMBps: m('rsyncMBps'), grimseld1MBps: m('grimseld1MBps'), cp1MBps: m('cp1MBps'),
    grimseld2MBps: m('grimseld2MBps'), cp2MBps: m('cp2MBps'), smallE2eFilesPerS: m('smallE2eFilesPerS'),
    smallRsyncFilesPerS: m('smallRsyncFilesPerS'), smallCpFilesPerS: m('smallCpFilesPerS'), cpuSPer1000: rec('cpuSPer1000'), peakRssMb: rec('peakRssMb'),
  };
  const bulkCount = Math.max(1, Math.round(mode.bulkBytes / (6 * MB)));
  return {
    bulk: { files: bulkCount, fileMB: 6, totalMB: bulkCount * 6 },
    small: { files: mode.smallFiles, fileKB: 100 },
    copyParallelism: COPY_PARALLELISM,
    rounds,
    median: med,
    ratios: {
      furkadVsRsync: ratio(med.furkadMBps, med.rsyncMBps),
      grimseld1VsCp: ratio(med.grimseld1MBps, med.cp1MBps),
      grimseld2VsCp: ratio(med.grimseld2MBps, med.cp2MBps),
      smallVsSlowerOfRsyncCp: ratio(med.smallE2eFilesPerS, Math.min(med.smallRsyncFilesPerS, med.smallCpFilesPerS)),
    },
  };
}

// Latency of furkad vs a plain rsync loop vs lsyncd at three detector workloads, medians over repeats (F9).
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { measureLatency, round, WARM_UP_S, WORKLOADS, type LatencyRun } from './latency.js';
import { startPuller, type Puller, type PullerName } from './pullers.js';
import { median, medianPercentiles, percentiles, ratio, type Percentiles } from './stats.js';
import { usage } from './proc-usage.js';
import { timed } from './baselines.js';
import { tempDir } from '../test/fixtures/ppu.js';
import { startRsyncDaemon } from '../test/fixtures/rsync-daemon.js';
import { WRITER_TEMP_PATTERN } from '../test/fixtures/files.js';
import { rsyncArgs } from '../src/furkad/rsync.js';
import { writeNamesFilter } from '../src/furkad/rsync-names.js';
import type { Mode } from './modes.js';

const ALL_PULLERS: PullerName[] = ['furkad-agent', 'furkad', 'furkad-keep-source', 'rsync-loop', 'lsyncd'];
/** `BENCH_PULLERS=furkad-agent,lsyncd`: only those (before/after runs of one puller); default all. */
export const PULLERS: PullerName[] = process.env['BENCH_PULLERS']
  ? process.env['BENCH_PULLERS'].split(',').map((p) => {
    if (!ALL_PULLERS.includes(p as PullerName)) throw new Error(`BENCH_PULLERS: unknown puller '${p}' (known: ${ALL_PULLERS.join(', ')})`);
    return p as PullerName;
  })
  : ALL_PULLERS;

export interface LatencyRow {
  workload: string;
  puller: PullerName;
  latency: Percentiles;
  missing: number;
  cpuSPer1000: Record<string, number>;
  peakRssMb: Record<string, number>;
  /** furkad's p50 and p99 divided by this puller's (same run). */
  furkadRatio?: { p50: number; p99: number };
  samples: number[];
}

export interface LatencyResult {
  rows: LatencyRow[];
  /** Wall time of one rsync run with furkad's arguments against an empty module: the floor of a pull cycle. */
  emptyRunMs: Percentiles;
  /**
   * The same daemon, an empty directory pushed instead of pulled (`rsync -rt --sockopts=TCP_NODELAY DIR/ URL`):
   * a pulling client forks a receiver and then polls for its exit in 20 ms sleeps (rsync's main.c,
   * wait_process_with_flush), a pushing one does not. The difference is what every pull cycle pays for that.
   */
  emptyPushMs?: Percentiles;
  /** Cores busy (CPU s per s) with no files arriving, per process of each puller. */
  idleCores: Record<string, number>;
  /** Pull cycles per second with no files arriving (connections the detector's rsync daemon logged), pollers only. */
  idleCyclesPerS: Record<string, number>;
  /** The first WARM_UP_S seconds of the first workload right after each puller started (not in `rows`). */
  coldStartMs?: Record<string, Percentiles>;
}

export async function latencySuite(mode: Mode): Promise<LatencyResult> {
  const runs = new Map<string, LatencyRun[]>();
  const idle = new Map<string, number[]>();
  const cycles = new Map<string, number[]>();
  const coldStart = new Map<string, Percentiles[]>();
  const key = (w: string, p: string): string => `${w}|${p}`;
  for (let r = 0; r < mode.repeats; r++) {
    for (const name of PULLERS) {
      const puller = await startPuller(name, mode.ramdiskBytes);
      try {
        const quiet = await idleCost(puller);
        for (const [k, v] of Object.entries(quiet.cores)) idle.set(`${name}.${k}`, [...(idle.get(`${name}.${k}`) ?? []), v]);
        if (quiet.cyclesPerS !== undefined) cycles.set(name, [...(cycles.get(name) ?? []), quiet.cyclesPerS]);
        // The first seconds after a start, for every puller alike, reported apart (coldStartMs; WARM_UP_S).
        const cold = await measureLatency(puller, WORKLOADS[0]!, WARM_UP_S);
        coldStart.set(name, [...(coldStart.get(name) ?? []), cold.latency]);
        for (const w of WORKLOADS) {
          const run = await measureLatency(puller, w, mode.latencySeconds);
          console.error(`  ${name} ${w.label} #${r + 1}: p50 ${run.latency.p50} p99 ${run.latency.p99} max ${run.latency.max} ms (${run.missing} missing)`);
          runs.set(key(w.label, name), [...(runs.get(key(w.label, name)) ?? []), run]);
        }
      } finally {
        await puller.stop();
      }
    }
  }
  const rows: LatencyRow[] = [];
  for (const w of WORKLOADS) {
    for (const name of PULLERS) {
      const rs = runs.get(key(w.label, name)) ?? [];
      const medianOf = (get: (x: LatencyRun) => Record<string, number>): Record<string, number> =>
        Object.fromEntries(Object.keys(get(rs[0]!)).map((k) => [k, median(rs.map((x) => get(x)[k]!))]));
      rows.push({
        workload: w.label,
        puller: name,
        latency: medianPercentiles(rs.map((x) => x.latency)),
        missing: rs.reduce((s, x) => s + x.missing, 0),
        cpuSPer1000: medianOf((x) => x.cpuSPer1000),
        peakRssMb: medianOf((x) => x.peakRssMb),
        samples: rs.flatMap((x) => x.samples),
      });
    }
    const f = rows.find((x) => x.workload === w.label && x.puller === 'furkad');
    if (!f) continue; // furkad over rsync not measured in this run (BENCH_PULLERS)
    for (const x of rows.filter((y) => y.workload === w.label)) {
      x.furkadRatio = { p50: ratio(f.latency.p50, x.latency.p50), p99: ratio(f.latency.p99, x.latency.p99) };
    }
  }
  const empty = await emptyRuns();
  return { rows, emptyRunMs: empty.pull, emptyPushMs: empty.push, idleCores: Object.fromEntries([...idle].map(([k, v]) => [k, median(v)])),
    idleCyclesPerS: Object.fromEntries([...cycles].map(([k, v]) => [k, median(v)])),
    coldStartMs: Object.fromEntries([...coldStart].map(([k, v]) => [k, medianPercentiles(v)])) };
}

const IDLE_S = 2;

async function idleCost(puller: Puller): Promise<{ cores: Record<string, number>; cyclesPerS?: number }> {
  const connects = (): number => (puller.daemonLog ? readFileSync(puller.daemonLog, 'utf8').split('connect from').length - 1 : 0);
  const before = Object.fromEntries(Object.entries(puller.pids).map(([k, pid]) => [k, usage(pid)]));
  const c0 = connects();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const cyclesPerS = round((connects() - c0) / ((performance.now() - t0) / 1000));
  const cores = Object.fromEntries(Object.entries(puller.pids).map(([k, pid]) => [k, round((usage(pid).cpuS - before[k]!.cpuS) / IDLE_S)]));
  return puller.daemonLog ? { cores, cyclesPerS } : { cores };
}

/**
 * 30 rsync runs as furkad makes them (rsyncArgs) against an empty detector: what one poll costs at least; and,
 * alternating with them, 30 pushes of an empty directory to the same daemon (see emptyPushMs).
 */
async function emptyRuns(): Promise<{ pull: Percentiles; push: Percentiles }> {
  const work = tempDir('bench-empty');
  const dir = path.join(work, 'ramdisk');
  const dest = path.join(work, 'ppu');
  const nothing = path.join(work, 'nothing');
  for (const d of [dir, dest, nothing]) mkdirSync(d, { recursive: true });
  const daemon = await startRsyncDaemon(dir, work);
  try {
    const args = rsyncArgs({ rsync: 'rsync', host: '127.0.0.1', port: daemon.port, module: 'ramdisk', source: '/', dest, uid: 0, gid: 0,
      removeSource: true, exclude: [WRITER_TEMP_PATTERN], namesFilter: writeNamesFilter(work), timeoutS: 30 });
    const pushArgs = ['-rt', '--sockopts=TCP_NODELAY', `${nothing}/`, `rsync://127.0.0.1:${daemon.port}/ramdisk/`];
    const pull: number[] = [];
    const push: number[] = [];
    for (let i = 0; i < 30; i++) {
      pull.push((await timed('rsync', args)) * 1000);
      push.push((await timed('rsync', pushArgs)) * 1000);
    }
    const rounded = (ms: number[]): Percentiles => {
      const p = percentiles(ms);
      return { n: p.n, p50: round(p.p50), p90: round(p.p90), p99: round(p.p99), max: round(p.max) };
    };
    return { pull: rounded(pull), push: rounded(push) };
  } finally {
    await daemon.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

// Detector -> PPU latency: detectors write at a fixed rate, the PPU side records when each final name appears.
import { Arrivals, latencies } from './arrivals.js';
import { writeAtRate, type WriteJob } from './detector-writer.js';
import { usage, type Usage } from './proc-usage.js';
import { percentiles, type Percentiles } from './stats.js';
import type { Puller } from './pullers.js';
import { eventually } from '../test/fixtures/files.js';

export interface Workload {
  label: string;
  hz: number;
  bytes: number;
}

export const MB = 1_000_000;

/**
 * Seconds of writing right after a puller started, before what is measured (reported apart by the latency
 * suite): a daemon just started compiles its code, makes its hashers and starts its copy threads on the first
 * files, which a PPU pays once a start; at 100 Hz x 1 MB that takes about 2 s here.
 */
export const WARM_UP_S = 3;

export const WORKLOADS: Workload[] = [
  { label: '100 Hz x 1 MB', hz: 100, bytes: MB },
  { label: '25 Hz x 6 MB', hz: 25, bytes: 6 * MB },
  { label: '500 Hz x 0.1 MB', hz: 500, bytes: MB / 10 },
];

export interface LatencyRun {
  latency: Percentiles;
  missing: number;
  /** All latencies in ms (for the plot). */
  samples: number[];
  /** CPU seconds per 1000 files and peak RSS (MB) of each of the puller's processes. */
  cpuSPer1000: Record<string, number>;
  peakRssMb: Record<string, number>;
}

let runNo = 0;

/** Every detector of `puller` writes `workload` for `seconds`; waits (bounded) for the last file. */
export async function measureLatency(puller: Puller, workload: Workload, seconds: number): Promise<LatencyRun> {
  const tag = `L${++runNo}`;
  const arrivals = new Arrivals();
  for (const d of puller.arrivalDirs) arrivals.watch(d);
  const before: Record<string, Usage> = Object.fromEntries(Object.entries(puller.pids).map(([k, pid]) => [k, usage(pid)]));
  const count = Math.max(1, Math.round(workload.hz * seconds));
  try {
    const jobs: WriteJob[] = puller.detectorDirs.map((dir, i) => ({ dir, prefix: `${tag}d${i}`, count, hz: workload.hz, bytes: workload.bytes }));
    const named = new Map<string, number>();
    for (const m of await Promise.all(jobs.map((j) => writeAtRate(j)))) for (const [k, v] of m) named.set(k, v);
    await eventually(() => [...named.keys()].every((n) => arrivals.at.has(n)), 30_000, `${puller.name} to deliver ${named.size} files`)
      .catch(() => { /* reported as missing */ });
    const { ms, missing } = latencies(named, arrivals);
    const files = named.size;
    const cpuSPer1000: Record<string, number> = {};
    const peakRssMb: Record<string, number> = {};
    for (const [k, pid] of Object.entries(puller.pids)) {
      const now = usage(pid);
      cpuSPer1000[k] = round((now.cpuS - before[k]!.cpuS) * 1000 / files);
      peakRssMb[k] = round(now.peakRssMb);
    }
    return { latency: roundAll(percentiles(ms)), missing, samples: ms.map(round), cpuSPer1000, peakRssMb };
  } finally {
    arrivals.close();
  }
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function roundAll(p: Percentiles): Percentiles {
  return { n: p.n, p50: round(p.p50), p90: round(p.p90), p99: round(p.p99), max: round(p.max) };
}

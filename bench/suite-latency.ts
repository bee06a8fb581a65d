// Latency of furkad vs a plain rsync loop vs lsyncd at three detector workloads, medians over repeats (F9).
import { measureLatency, WORKLOADS, type LatencyRun } from './latency.js';
import { startPuller, type PullerName } from './pullers.js';
import { median, medianPercentiles, ratio, type Percentiles } from './stats.js';
import type { Mode } from './modes.js';

export const PULLERS: PullerName[] = ['furkad', 'rsync-loop', 'lsyncd'];

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

export async function latencySuite(mode: Mode): Promise<LatencyRow[]> {
  const runs = new Map<string, LatencyRun[]>();
  const key = (w: string, p: string): string => `${w}|${p}`;
  for (let r = 0; r < mode.repeats; r++) {
    for (const name of PULLERS) {
      const puller = await startPuller(name, mode.ramdiskBytes);
      try {
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
    const f = rows.find((x) => x.workload === w.label && x.puller === 'furkad')!;
    for (const x of rows.filter((y) => y.workload === w.label)) {
      x.furkadRatio = { p50: ratio(f.latency.p50, x.latency.p50), p99: ratio(f.latency.p99, x.latency.p99) };
    }
  }
  return rows;
}

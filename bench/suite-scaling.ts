// furkad's latency and CPU as detectors are added, each with its own writer and its own furka-agent or rsync
// daemon (F1, A6: 4 detectors within 2x of one).
import { measureLatency, MB, round, WARM_UP_S, type LatencyRun, type Workload } from './latency.js';
import { startPuller, type PullerName } from './pullers.js';
import { median, ratio, type Percentiles, medianPercentiles } from './stats.js';
import type { Mode } from './modes.js';

export const SCALING_WORKLOAD: Workload = { label: '50 Hz x 1 MB per detector', hz: 50, bytes: MB };

/** furkad over the agent (the shipped transport) and over rsync. */
const SCALING_PULLERS: PullerName[] = ['furkad-agent', 'furkad'];

export interface ScalingRow {
  puller: PullerName;
  detectors: number;
  latency: Percentiles;
  missing: number;
  /** Cores busy on average (CPU seconds per second) for furkad incl. its rsync runs, and grimseld. */
  cores: Record<string, number>;
  /** p50 and p99 relative to one detector. */
  vsOne?: { p50: number; p99: number };
}

export async function scalingSuite(mode: Mode): Promise<{ workload: string; rows: ScalingRow[] }> {
  const rows: ScalingRow[] = [];
  for (const name of SCALING_PULLERS) {
    const mine: ScalingRow[] = [];
    for (const n of mode.scalingDetectors) {
      const runs: LatencyRun[] = [];
      for (let r = 0; r < mode.repeats; r++) {
        const puller = await startPuller(name, mode.ramdiskBytes, n);
        try {
          await measureLatency(puller, SCALING_WORKLOAD, WARM_UP_S); // not counted, as in the latency suite
          runs.push(await measureLatency(puller, SCALING_WORKLOAD, mode.latencySeconds));
        } finally {
          await puller.stop();
        }
      }
      const filesPerS = n * SCALING_WORKLOAD.hz;
      const cores = Object.fromEntries(Object.keys(runs[0]!.cpuSPer1000).map((k) => [k, round(median(runs.map((x) => x.cpuSPer1000[k]!)) * filesPerS / 1000)]));
      const row: ScalingRow = { puller: name, detectors: n, latency: medianPercentiles(runs.map((x) => x.latency)), missing: runs.reduce((s, x) => s + x.missing, 0), cores };
      console.error(`  ${name}, ${n} detector(s): p50 ${row.latency.p50} p99 ${row.latency.p99} ms, cores ${JSON.stringify(cores)}`);
      mine.push(row);
    }
    for (const r of mine) r.vsOne = { p50: ratio(r.latency.p50, mine[0]!.latency.p50), p99: ratio(r.latency.p99, mine[0]!.latency.p99) };
    rows.push(...mine);
  }
  return { workload: SCALING_WORKLOAD.label, rows };
}

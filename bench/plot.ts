// The latency plot: one panel per workload, the distribution (CDF) of each puller's latencies, rendered by gnuplot.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LatencyRow } from './suite-latency.js';

const VENDOR_MS = 200; // the vendor furka's latency (F9)

export function plotLatency(rows: LatencyRow[], png: string, title: string): void {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-plot-'));
  try {
    const workloads = [...new Set(rows.map((r) => r.workload))];
    const panels = workloads.map((w) => {
      const series = rows.filter((r) => r.workload === w).map((r) => {
        const file = path.join(tmp, `${w}-${r.puller}.dat`.replace(/[^\w.-]+/g, '_'));
        const s = [...r.samples].sort((a, b) => a - b);
        writeFileSync(file, s.map((v, i) => `${Math.max(v, 0.1)} ${(i + 1) / s.length}`).join('\n') + '\n');
        return `'${file}' using 1:2 with steps lw 2 title '${r.puller} ${r.latency.p50.toFixed(0)}/${r.latency.p99.toFixed(0)}'`;
      });
      return [
        `set title '${w}'`,
        `set arrow from ${VENDOR_MS},0 to ${VENDOR_MS},1 nohead dt 2 lc rgb 'gray40'`,
        `set label 'vendor furka' at ${VENDOR_MS * 1.1},0.97 left tc rgb 'gray40'`,
        `plot ${series.join(', ')}`,
        'unset arrow', 'unset label',
      ].join('\n');
    });
    const script = [
      `set terminal pngcairo size 1500,600 font 'DejaVu Sans,11'`,
      `set output '${png}'`,
      `set multiplot layout 1,${workloads.length} title '${title}: detector file named -> complete file on the PPU ramdisk (CDF)'`,
      'set logscale x', 'set xrange [1:1000]', 'set yrange [0:1]', 'set grid',
      "set xlabel 'ms (log scale)' offset 0,0.5", "set ylabel 'fraction of files'",
      "set key below box font ',10' horizontal maxrows 2 title 'p50/p99 ms'", ...panels, 'unset multiplot',
    ].join('\n');
    const gp = path.join(tmp, 'latency.gp');
    writeFileSync(gp, script + '\n');
    execFileSync('gnuplot', [gp], { stdio: ['ignore', 'ignore', 'pipe'] });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

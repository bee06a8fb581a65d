// `npm run bench` (quick) and `npm run bench:full`: every comparison in one process run, results as JSON and a table.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { latencySuite, type LatencyResult } from './suite-latency.js';
import { plotLatency } from './plot.js';
import { summary, type Results } from './report.js';
import { throughputSuite } from './suite-throughput.js';
import { pendingSuite } from './suite-pending.js';
import { scalingSuite } from './suite-scaling.js';
import { verifySuite } from './suite-verify.js';
import { MODES, type Mode } from './modes.js';

async function main(): Promise<void> {
  const modeName = (process.argv[2] ?? 'quick') as keyof typeof MODES;
  const mode: Mode | undefined = MODES[modeName];
  if (!mode) throw new Error(`unknown mode '${modeName}': use one of ${Object.keys(MODES).join(', ')}`);
  process.env['LOG_LEVEL'] ??= 'warn';
  const only = process.env['BENCH_ONLY']?.split(',');
  const started = Date.now();
  const results: Record<string, unknown> = { mode: modeName, settings: mode, startedAt: new Date(started).toISOString(), host: hostInfo() };
  const sections: Array<[string, (m: Mode) => Promise<unknown>]> = [
    ['latency', latencySuite], ['throughput', throughputSuite], ['verify', verifySuite], ['pending', pendingSuite], ['scaling', scalingSuite],
  ];
  for (const [name, run] of sections) {
    if (only && !only.includes(name)) continue;
    const t = Date.now();
    console.error(`bench: ${name} ...`);
    results[name] = await run(mode);
    console.error(`bench: ${name} done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }
  results['durationS'] = Math.round((Date.now() - started) / 1000);
  const outDir = path.resolve(__dirname, '../../bench/results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, `${modeName}.json`), JSON.stringify(results, null, 1) + '\n');
  if (results['latency']) plotLatency((results['latency'] as LatencyResult).rows, path.join(outDir, `latency-${modeName}.png`), `Detector -> PPU latency, ${modeName} run, ${results['startedAt'] as string}`);
  console.log(summary(results as Results));
  console.log(`results: bench/results/${modeName}.json${results['latency'] ? `, plot: bench/results/latency-${modeName}.png` : ''}; ${results['durationS'] as number} s`);
}

function hostInfo(): Record<string, unknown> {
  // The code measured: furkad and grimseld are being reworked while benchmarks run, so name the exact tree.
  const git = (...args: string[]): string => { try { return execFileSync('git', args, { encoding: 'utf8' }).trim(); } catch { return '?'; } };
  return { commit: git('rev-parse', '--short', 'HEAD'), uncommitted: git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 2 ** 30), loadavg: os.loadavg(), node: process.version };
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e);
  process.exit(1);
});

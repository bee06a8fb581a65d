// The summary printed after a run (Markdown tables, pasted into BENCHMARKS.md) and the targets checked against it.
import type { LatencyResult } from './suite-latency.js';
import { WARM_UP_S, WORKLOADS } from './latency.js';
import { ratio } from './stats.js';
import type { ThroughputResult } from './suite-throughput.js';
import type { PendingResult } from './suite-pending.js';
import type { ScalingRow } from './suite-scaling.js';
import type { VerifyResult } from './suite-verify.js';

export interface Results {
  latency?: LatencyResult;
  throughput?: ThroughputResult;
  verify?: VerifyResult;
  pending?: PendingResult;
  scaling?: { workload: string; rows: ScalingRow[] };
}

const table = (head: string[], rows: Array<Array<string | number>>): string =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
/** Rate of two stages run one after the other (the first must finish before the second starts). */
const serial = (a: number, b: number): number => Math.round(100 / (1 / a + 1 / b)) / 100;
const kv = (o: Record<string, number>): string => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ');

export function summary(r: Results): string {
  const out: string[] = [];
  if (r.latency) {
    out.push('### Latency (ms, detector file named -> complete on the PPU ramdisk)', '', table(
      ['workload', 'puller', 'files', 'p50', 'p90', 'p99', 'max', 'missing', 'furkad/this p50', 'furkad/this p99', 'CPU s per 1000 files', 'peak RSS MB'],
      r.latency.rows.map((x) => [x.workload, x.puller, x.latency.n, x.latency.p50, x.latency.p90, x.latency.p99, x.latency.max, x.missing,
        x.furkadRatio?.p50 ?? '', x.furkadRatio?.p99 ?? '', kv(x.cpuSPer1000), kv(x.peakRssMb)]),
    ), '', `One rsync run with furkad's arguments against an empty detector (the floor of a pull cycle): p50 ${r.latency.emptyRunMs.p50} ms, `
      + `p90 ${r.latency.emptyRunMs.p90} ms` + (r.latency.emptyPushMs ? `; an empty push to the same daemon (no receiver fork to wait for): `
      + `p50 ${r.latency.emptyPushMs.p50} ms, p90 ${r.latency.emptyPushMs.p90} ms` : '') + `. With no files arriving: cores busy ${kv(r.latency.idleCores)}; `
      + `pull cycles per second ${kv(r.latency.idleCyclesPerS ?? {})}.`, '');
    const cold = r.latency.coldStartMs;
    if (cold) {
      out.push(`Right after a start (the first ${WARM_UP_S} s of ${WORKLOADS[0]!.label}, after the 2 s of the idle figure; not in the table above): `
        + Object.entries(cold).map(([k, v]) => `${k} p50 ${v.p50} ms, p99 ${v.p99} ms`).join('; ') + '.', '');
    }
  }
  if (r.throughput) {
    const t = r.throughput;
    const m = t.median;
    out.push(`### Throughput (bulk: ${t.bulk.files} x ${t.bulk.fileMB} MB; small: ${t.small.files} x ${t.small.fileKB} kB; copy parallelism ${t.copyParallelism} per storage)`, '', table(
      ['measure', 'ours', 'baseline', 'ours/baseline'],
      [
        ['bulk pull, MB/s', `furkad ${m.furkadMBps}`, `rsync -a ${m.rsyncMBps}`, t.ratios.furkadVsRsync],
        ['bulk copy to 1 storage, MB/s', `grimseld ${m.grimseld1MBps}`, `cp+fsync x${t.copyParallelism} ${m.cp1MBps}`, t.ratios.grimseld1VsCp],
        ['bulk copy to 2 storages, MB/s written', `grimseld ${m.grimseld2MBps}`, `2 x cp+fsync x${t.copyParallelism} ${m.cp2MBps}`, t.ratios.grimseld2VsCp],
        ['bulk detector -> internal storage, MB/s', `furkad+grimseld ${m.bulkE2eMBps}`, `rsync -a then cp+fsync (serial) ${serial(m.rsyncMBps, m.cp1MBps)}`, ratio(m.bulkE2eMBps, serial(m.rsyncMBps, m.cp1MBps))],
        ['small files: pull alone (grimseld stopped), files/s', `furkad ${m.smallFurkadFilesPerS}`, `rsync -a ${m.smallRsyncFilesPerS}`, ratio(m.smallFurkadFilesPerS, m.smallRsyncFilesPerS)],
        ...(m.smallFurkadInE2eFilesPerS ? [['small files: the pull inside the end-to-end run, files/s', `furkad ${m.smallFurkadInE2eFilesPerS}`, `rsync -a ${m.smallRsyncFilesPerS}`, ratio(m.smallFurkadInE2eFilesPerS, m.smallRsyncFilesPerS)]] : []),
        ['small files: copy alone, files/s', `grimseld ${m.smallGrimseldFilesPerS}`, `cp+fsync x${t.copyParallelism} ${m.smallCpFilesPerS}`, ratio(m.smallGrimseldFilesPerS, m.smallCpFilesPerS)],
        ['small files end to end, files/s', `furkad+grimseld ${m.smallE2eFilesPerS}`, `slower of rsync -a ${m.smallRsyncFilesPerS}, cp+fsync ${m.smallCpFilesPerS}`, t.ratios.smallVsSlowerOfRsyncCp],
      ],
    ), '', `Daemon cost during the small-file run: CPU s per 1000 files ${kv(m.cpuSPer1000)}; peak RSS MB ${kv(m.peakRssMb)}.`, '');
  }
  if (r.verify) {
    const v = r.verify;
    out.push(`### Copy verification (I2): grimseld copying alone, verify_copies = yes vs no (bulk ${v.bulk.files} x ${v.bulk.fileMB} MB; small ${v.small.files} x ${v.small.fileKB} kB; ${v.copyParallelism} writers)`, '', table(
      ['measure', 'yes (read back)', 'no (source hashed only)', 'yes/no (median of rounds)'],
      [
        ['bulk copy, MB/s', v.median.yes.bulkMBps, v.median.no.bulkMBps, v.ratios.bulk],
        ['small files, files/s', v.median.yes.smallFilesPerS, v.median.no.smallFilesPerS, v.ratios.small],
      ],
    ), '');
  }
  if (r.pending) {
    const p = r.pending;
    out.push('### grimseld memory with files pending (only storage not mounted)', '', table(
      ['pending files', 'RSS idle MB', 'RSS pending MB', 'peak RSS MB', 'intake s'],
      [[p.files, p.rssIdleMb, p.rssPendingMb, p.peakRssMb, p.intakeS]],
    ), '');
  }
  if (r.scaling) {
    out.push(`### Scaling (${r.scaling.workload})`, '', table(
      ['puller', 'detectors', 'p50 ms', 'p99 ms', 'max ms', 'missing', 'p50 vs 1', 'p99 vs 1', 'cores busy'],
      // Rows of results from before the agent was added carry no puller: furkad over rsync.
      r.scaling.rows.map((x) => [x.puller ?? 'furkad', x.detectors, x.latency.p50, x.latency.p99, x.latency.max, x.missing, x.vsOne?.p50 ?? '', x.vsOne?.p99 ?? '', kv(x.cores)]),
    ), '');
  }
  out.push('### Targets', '', table(['target', 'measured', 'met'], targets(r).map((t) => [t.what, t.value, t.met ? 'yes' : '**no**'])));
  return out.join('\n') + '\n';
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export function targets(r: Results): Array<{ what: string; value: string; met: boolean }> {
  const out: Array<{ what: string; value: string; met: boolean }> = [];
  for (const w of ['100 Hz x 1 MB', '25 Hz x 6 MB']) {
    const f = r.latency?.rows.find((x) => x.workload === w && x.puller === 'furkad');
    const l = r.latency?.rows.find((x) => x.workload === w && x.puller === 'lsyncd');
    if (!f || !l) continue;
    out.push({ what: `furkad p50 <= 20 ms, ${w}`, value: `${f.latency.p50} ms`, met: f.latency.p50 <= 20 });
    out.push({ what: `furkad p99 <= 50 ms, ${w}`, value: `${f.latency.p99} ms`, met: f.latency.p99 <= 50 });
    out.push({ what: `furkad p50 and p99 below lsyncd's, ${w}`, value: `${f.latency.p50}/${f.latency.p99} vs ${l.latency.p50}/${l.latency.p99} ms`,
      met: f.latency.p50 < l.latency.p50 && f.latency.p99 < l.latency.p99 });
  }
  // The agent transport's targets (A6): from the same run as lsyncd's and the rsync loop's figures.
  const at = (w: string, p: string) => r.latency?.rows.find((x) => x.workload === w && x.puller === p);
  const a100 = at('100 Hz x 1 MB', 'furkad-agent');
  const l100 = at('100 Hz x 1 MB', 'lsyncd');
  if (a100) {
    out.push({ what: 'agent p50 <= 3 ms, 100 Hz x 1 MB', value: `${a100.latency.p50} ms`, met: a100.latency.p50 <= 3 });
    out.push({ what: 'agent p99 <= 15 ms, 100 Hz x 1 MB', value: `${a100.latency.p99} ms`, met: a100.latency.p99 <= 15 });
    if (l100) out.push({ what: "agent p50 at least 5 x below lsyncd's, 100 Hz x 1 MB", value: `${a100.latency.p50} vs ${l100.latency.p50} ms`, met: a100.latency.p50 * 5 <= l100.latency.p50 });
  }
  const a6 = at('25 Hz x 6 MB', 'furkad-agent');
  if (a6) out.push({ what: 'agent p50 <= 10 ms, 25 Hz x 6 MB', value: `${a6.latency.p50} ms`, met: a6.latency.p50 <= 10 });
  const aSmall = r.latency?.rows.find((x) => x.puller === 'furkad-agent' && /500 Hz/.test(x.workload));
  if (aSmall) out.push({ what: `agent p50 <= 3 ms, ${aSmall.workload}`, value: `${aSmall.latency.p50} ms`, met: aSmall.latency.p50 <= 3 });
  const agentScaling = r.scaling?.rows.filter((x) => x.puller === 'furkad-agent') ?? [];
  const most = agentScaling[agentScaling.length - 1];
  if (most && most.detectors > 1 && most.vsOne) {
    out.push({ what: `agent, ${most.detectors} detectors at ${r.scaling!.workload}: p50 within 2 x of one`, value: `${most.vsOne.p50} x (${most.latency.p50} vs ${agentScaling[0]!.latency.p50} ms)`, met: most.vsOne.p50 <= 2 });
  }
  const idle = r.latency?.idleCores;
  if (idle && idle['furkad-agent.agent'] !== undefined) {
    const cores = round2((idle['furkad-agent.furkad'] ?? 0) + (idle['furkad-agent.agent'] ?? 0));
    out.push({ what: 'idle: furkad + agent <= 0.02 cores', value: `${cores} cores`, met: cores <= 0.02 });
  }
  const t = r.throughput?.ratios;
  if (t) {
    out.push({ what: 'furkad bulk >= 0.95 x rsync -a', value: `${t.furkadVsRsync} x`, met: t.furkadVsRsync >= 0.95 });
    out.push({ what: 'grimseld >= 0.95 x cp (1 storage)', value: `${t.grimseld1VsCp} x`, met: t.grimseld1VsCp >= 0.95 });
    out.push({ what: 'grimseld >= 0.95 x cp (2 storages)', value: `${t.grimseld2VsCp} x`, met: t.grimseld2VsCp >= 0.95 });
    out.push({ what: 'small files >= 0.9 x slower of rsync, cp', value: `${t.smallVsSlowerOfRsyncCp} x`, met: t.smallVsSlowerOfRsyncCp >= 0.9 });
  }
  if (r.verify) {
    out.push({ what: 'bulk copy with verify_copies = yes >= 0.9 x no', value: `${r.verify.ratios.bulk} x`, met: r.verify.ratios.bulk >= 0.9 });
    out.push({ what: 'small files with verify_copies = yes >= 0.9 x no', value: `${r.verify.ratios.small} x`, met: r.verify.ratios.small >= 0.9 });
  }
  if (r.pending) out.push({ what: `grimseld RSS <= 100 MB with ${r.pending.files} pending`, value: `${r.pending.rssPendingMb} MB`, met: r.pending.rssPendingMb <= 100 });
  return out;
}

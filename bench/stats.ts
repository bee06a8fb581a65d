// Percentiles of one run and medians over repeated runs: how every benchmark figure is summarised.
export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of sorted values (`q` in 0..1). */
export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export function percentiles(values: number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), max: s[s.length - 1] ?? NaN };
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5);
}

/** Field-wise median of several runs' percentiles (the figure reported for a noisy, shared machine). */
export function medianPercentiles(runs: Percentiles[]): Percentiles {
  const m = (k: keyof Percentiles): number => median(runs.map((r) => r[k]));
  return { n: m('n'), p50: m('p50'), p90: m('p90'), p99: m('p99'), max: m('max') };
}

/** `value / baseline` rounded for a table; NaN when there is no baseline. */
export function ratio(value: number, baseline: number): number {
  return baseline > 0 ? Math.round((value / baseline) * 100) / 100 : NaN;
}

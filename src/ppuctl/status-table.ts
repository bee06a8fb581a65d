// The classic status table: User Time | UID | GID | Storage | Pending | Copied | Failed (SPEC G9, S7).

export type StatusRow = [bigint, number, number, string, bigint, bigint, bigint];

function userTime(us: bigint): string {
  const d = new Date(Number(us / 1000n));
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Copied out of everything the storage got in that shift, as a bar and a percentage. */
function progress(r: StatusRow, width = 20): string {
  const total = r[4] + r[5] + r[6];
  if (total === 0n) return `[${' '.repeat(width)}]    -`;
  const done = Number((r[5] * BigInt(width)) / total);
  const pct = Number((r[5] * 100n) / total);
  return `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${String(pct).padStart(3)}%`;
}

export function formatStatusTable(rows: StatusRow[], opts: { progress?: boolean } = {}): string {
  const head = ['User Time', 'UID', 'GID', 'Storage', 'Pending', 'Copied', 'Failed', ...(opts.progress ? ['Progress'] : [])];
  const body = rows.map((r) => [userTime(r[0]), String(r[1]), String(r[2]), r[3], String(r[4]), String(r[5]), String(r[6]),
    ...(opts.progress ? [progress(r)] : [])]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 4 && i <= 6 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-+-'), ...body.map(line)].join('\n') + '\n';
}

// The classic status table: User Time | UID | GID | Storage | Pending | Copied | Failed (SPEC G9, S7).

export type StatusRow = [bigint, number, number, string, bigint, bigint, bigint];

function userTime(us: bigint): string {
  const d = new Date(Number(us / 1000n));
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatStatusTable(rows: StatusRow[]): string {
  const head = ['User Time', 'UID', 'GID', 'Storage', 'Pending', 'Copied', 'Failed'];
  const body = rows.map((r) => [userTime(r[0]), String(r[1]), String(r[2]), r[3], String(r[4]), String(r[5]), String(r[6])]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-+-'), ...body.map(line)].join('\n') + '\n';
}

// The tables of `ppuctl status`: the classic User Time | UID | GID | Storage | Pending | Copied | Failed (G9, S7),
// then Verified, the copies checked against the file's checksum (I2), and furkad's detectors.

import type { StatusRow } from '../dbus/grimsel-interface.js';
import { detectorStatus, type DetectorRow, type DetectorStatus } from '../dbus/furka-interface.js';
import { visible } from './terminal-text.js';

export type { StatusRow };

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

/**
 * One detector in ppuctl's table and in `status --json`: the bus's DetectorStatus with the last run in ms, the
 * key `status --json` has always had (scripts read it).
 */
export type DetectorRecord = Omit<DetectorStatus, 'lastRunUs'> & { lastRunMs: number };

/** A row of org.ppu.Furka1.Detectors as ppuctl shows it. */
export function detectorRecord(row: DetectorRow): DetectorRecord {
  const { id, state, lastError, files, bytes, lastRunUs } = detectorStatus(row);
  return { id, state, lastError, files, bytes, lastRunMs: lastRunUs / 1000 };
}

/** Renders rows under a header, right-aligning the columns in `right`. */
function table(head: string[], rows: string[][], right: (i: number) => boolean): string {
  // Every value printed as text a terminal shows, never acts on (a file name in a reason, say).
  const body = rows.map((r) => r.map(visible));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (right(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-+-'), ...body.map(line)].join('\n') + '\n';
}

/** Detector | State | Files | MB | (MB/s when watching) | Last run | Last error. */
export function formatDetectorTable(dets: DetectorRecord[], rates?: Map<string, number>): string {
  const head = ['Detector', 'State', 'Files', 'MB', ...(rates ? ['MB/s'] : []), 'Last run', 'Last error'];
  const body = dets.map((d) => {
    const rate = rates?.get(d.id);
    return [d.id, d.state, String(d.files), (d.bytes / 1e6).toFixed(1), ...(rates ? [rate === undefined ? '-' : rate.toFixed(1)] : []),
      d.lastRunMs ? `${(d.lastRunMs / 1000).toFixed(3)} s` : '-', d.lastError];
  });
  return table(head, body, (i) => i >= 2 && i < head.length - 1);
}

/** Verified copies by row (QueryVerified), keyed verifiedKey(): absent from a grimseld without them. */
export type VerifiedCounts = Map<string, bigint>;

export function verifiedKey(usertime: bigint, storage: string): string {
  return `${usertime}:${storage}`;
}

export function formatStatusTable(rows: StatusRow[], opts: { progress?: boolean; verified?: VerifiedCounts | undefined } = {}): string {
  const v = opts.verified;
  const head = ['User Time', 'UID', 'GID', 'Storage', 'Pending', 'Copied', 'Failed', ...(v ? ['Verified'] : []), ...(opts.progress ? ['Progress'] : [])];
  const body = rows.map((r) => [userTime(r[0]), String(r[1]), String(r[2]), r[3], String(r[4]), String(r[5]), String(r[6]),
    ...(v ? [String(v.get(verifiedKey(r[0], r[3])) ?? '-')] : []), ...(opts.progress ? [progress(r)] : [])]);
  return table(head, body, (i) => i >= 4 && i <= (v ? 7 : 6));
}

// What a process has cost so far, from /proc: peak RSS (VmHWM) and CPU seconds of it and its reaped children.
import { readFileSync } from 'node:fs';

export interface Usage {
  /** Peak resident set size in MB. */
  peakRssMb: number;
  /** Current resident set size in MB. */
  rssMb: number;
  /** utime+stime of the process plus cutime+cstime of the children it has waited for (rsync runs). */
  cpuS: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

export function usage(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "pid (comm) ": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const ticks = (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0);
  return { peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024, cpuS: ticks / TICKS_PER_S };
}

/** CPU seconds spent between two readings. */
export function cpuSince(pid: number, before: Usage): number {
  return Math.round((usage(pid).cpuS - before.cpuS) * 100) / 100;
}

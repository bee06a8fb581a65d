// What a process has cost so far, from /proc: peak RSS (VmHWM) and CPU seconds of it and its children.
import { readdirSync, readFileSync } from 'node:fs';

export interface Usage {
  /** Peak resident set size in MB. */
  peakRssMb: number;
  /** Current resident set size in MB. */
  rssMb: number;
  /**
   * utime+stime of the process plus cutime+cstime of the children it has waited for (rsync runs), plus what its
   * children still running have cost (furka-agent's inotifywait and lease helper, lsyncd's rsync).
   */
  cpuS: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

export function usage(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const own = statOf(pid);
  if (!own) throw new Error(`process ${pid} is gone`);
  let ticks = own.ticks;
  for (const child of descendants(pid)) ticks += child.ticks;
  return { peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024, cpuS: ticks / TICKS_PER_S };
}

interface ProcStat {
  ppid: number;
  /** utime + stime + cutime + cstime */
  ticks: number;
}

function statOf(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "pid (comm) ": state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return { ppid: f[1] ?? 0, ticks: (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0) };
}

/** The processes below `pid` that run now (children, their children, ...). */
function descendants(pid: number): ProcStat[] {
  const all = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = statOf(Number(name));
    if (s) all.set(Number(name), s);
  }
  const below: ProcStat[] = [];
  const parents = new Set([pid]);
  // Parents come before their children often but not always (pids wrap): repeat until nothing is added.
  for (let added = true; added;) {
    added = false;
    for (const [p, s] of all) {
      if (parents.has(s.ppid) && !parents.has(p)) {
        parents.add(p);
        below.push(s);
        added = true;
      }
    }
  }
  return below;
}

/** CPU seconds spent between two readings. */
export function cpuSince(pid: number, before: Usage): number {
  return Math.round((usage(pid).cpuS - before.cpuS) * 100) / 100;
}

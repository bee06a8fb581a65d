// Which files below the root some process holds open for writing, from /proc/*/fd and /proc/*/fdinfo (A2).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;

/**
 * Absolute paths (as latin1 strings of their bytes, so that any name survives) below `root` that some process
 * has open with write access right now. A process that ends or closes while it is looked at is simply not
 * counted: the kernel reports its close (CLOSE_WRITE) to the watcher anyway. Needs to see every process's fds
 * (root with CAP_SYS_PTRACE; no ProtectProc=invisible).
 */
export function openWriters(root: string): Set<string> {
  const prefix = `${root.endsWith('/') ? root : `${root}/`}`;
  const prefixKey = Buffer.from(prefix).toString('latin1');
  const found = new Set<string>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or a kernel thread
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'buffer' }).toString('latin1');
        if (!target.startsWith(prefixKey)) continue;
        const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'))?.[1];
        if (flags !== undefined && (parseInt(flags, 8) & O_ACCMODE) !== O_RDONLY) found.add(target);
      } catch { /* closed meanwhile */ }
    }
  }
  return found;
}

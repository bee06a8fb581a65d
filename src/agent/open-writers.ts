// Which files some process holds open for writing, from /proc/*/fd, /proc/*/fdinfo and /proc/*/maps (A2).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { makedev } from '../common/mounts.js';

const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;

/** A file as filesBeingWritten() compares files: "dev:ino" of its stat (plain or bigint, the same text). */
export function fileKey(st: { dev: number | bigint; ino: number | bigint }): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * Which of `files` (by fileKey() of their lstat) some process writes right now: through a descriptor open with
 * write access, whatever name it was opened by (a hard link, a writer in a container whose /proc paths are
 * not ours), or through a shared writable mapping (/proc/PID/maps; an mmap writer that closed its descriptor).
 * Compares the files themselves, not names: one stat per descriptor of every process.
 */
export function filesBeingWritten(files: Set<string>): Set<string> {
  const writing = new Set<string>();
  if (files.size === 0) return writing;
  for (const { pid, fds } of processes()) {
    for (const fd of fds) {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`);
        const key = fileKey(st);
        if (files.has(key) && !writing.has(key) && openForWriting(pid, fd)) writing.add(key);
      } catch { /* closed meanwhile */ }
    }
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'latin1');
    } catch {
      continue;
    }
    // "start-end perms offset maj:min inode path": shared ('s') and writable ('w') mappings of a file.
    for (const line of maps.split('\n')) {
      const f = line.split(/\s+/, 5);
      const perms = f[1];
      if (!perms || perms[1] !== 'w' || perms[3] !== 's' || !f[3] || !f[4] || f[4] === '0') continue;
      const [maj, min] = f[3].split(':').map((h) => parseInt(h, 16)) as [number, number];
      const key = fileKey({ dev: makedev(maj, min), ino: BigInt(f[4]) });
      if (files.has(key)) writing.add(key);
    }
  }
  return writing;
}

/** Every other process with the numbers of its descriptors (one that is gone, or a kernel thread, left out). */
function* processes(): Generator<{ pid: string; fds: string[] }> {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      yield { pid, fds: readdirSync(`/proc/${pid}/fd`) };
    } catch { /* gone, or a kernel thread */ }
  }
}

/** Whether descriptor `fd` of `pid` was opened with write access (its fdinfo flags); throws if it is closed. */
function openForWriting(pid: string, fd: string): boolean {
  const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'))?.[1];
  return flags !== undefined && (parseInt(flags, 8) & O_ACCMODE) !== O_RDONLY;
}

// Is a directory a mount point, and how full is it (G6, G7, G13)?
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { readFile, realpath } from 'node:fs/promises';

/** Mount points from /proc/self/mountinfo (field 5, octal escapes decoded). */
async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return new Set(text.split('\n').filter(Boolean).map((line) =>
    (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))));
}

export async function isMountPoint(dir: string): Promise<boolean> {
  const real = await realpath(dir).catch(() => undefined);
  if (!real) return false;
  return (await mountPoints()).has(real);
}

export interface FillState {
  /** Percent of the blocks in use (as df shows it: used / (used + available)). */
  percent: number;
  totalBytes: number;
  availableBytes: number;
}

/** What statfs(2) says of a file system, in blocks of `bsize` bytes. */
export interface FsBlocks {
  blocks: number;
  bfree: number;
  bavail: number;
  bsize: number;
}

/**
 * statfs(2) through `stat -f` (GNU coreutils, also CentOS 7's 8.22): Node has fs.statfs only from 18.15, and
 * CentOS 7 runs Node 16. %b total, %f free, %a available to non-root, %S the size those blocks count in.
 */
export function statfsByCommand(dir: string): Promise<FsBlocks> {
  return new Promise((resolve, reject) => {
    execFile('stat', ['-f', '-c', '%b %f %a %S', '--', dir], { timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(new Error(`stat -f ${dir}: ${err.message.trim()}`));
      const [blocks, bfree, bavail, bsize] = stdout.trim().split(' ').map(Number);
      if (![blocks, bfree, bavail, bsize].every((n) => Number.isFinite(n))) return reject(new Error(`stat -f ${dir}: cannot read '${stdout.trim()}'`));
      resolve({ blocks: blocks!, bfree: bfree!, bavail: bavail!, bsize: bsize! });
    });
  });
}

/** statfs(2) of `dir`: Node's own where it has one (18.15 and later), else statfsByCommand. */
const statfsOf: (dir: string) => Promise<FsBlocks> =
  typeof (fsp as { statfs?: unknown }).statfs === 'function'
    ? (dir) => (fsp as unknown as { statfs(d: string): Promise<FsBlocks> }).statfs(dir)
    : statfsByCommand;

export async function fillState(dir: string): Promise<FillState> {
  const s = await statfsOf(dir);
  const used = s.blocks - s.bfree;
  const usable = used + s.bavail;
  return {
    percent: usable > 0 ? (used * 100) / usable : 100,
    totalBytes: s.blocks * s.bsize,
    availableBytes: s.bavail * s.bsize,
  };
}

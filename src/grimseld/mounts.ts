// Is a directory a mount point, and how full is it (G6, G7, G13)?
import * as fsp from 'node:fs/promises';
import { readFile, realpath } from 'node:fs/promises';
import { StatfsHelper, type FsBlocks } from './statfs-helper.js';
import { mountsOf } from '../common/mounts.js';

/** Mount points from /proc/self/mountinfo (read off the event loop: a mount check runs on the copy path). */
async function mountPoints(): Promise<Set<string>> {
  return new Set(mountsOf(await readFile('/proc/self/mountinfo', 'utf8')).map((m) => m.at));
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

/** Node's statfs (18.15 and later); on Node 16 (CentOS 7) one long-lived helper's, statfs-helper.ts. */
const nodeStatfs = (fsp as unknown as { statfs?: (d: string) => Promise<FsBlocks> }).statfs;
let helper: StatfsHelper | undefined;

function statfsOf(dir: string): Promise<FsBlocks> {
  return nodeStatfs ? nodeStatfs(dir) : (helper ??= new StatfsHelper()).statfs(dir);
}

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

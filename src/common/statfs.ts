// How much room a file system has: Node's statfs (18.15 and later), on Node 16 (CentOS 7) one long-lived
// helper's (statfs-helper.ts). grimseld's fill guard and metrics, and furkad's room for files on the PPU ramdisk.
import * as fsp from 'node:fs/promises';
import { StatfsHelper, type FsBlocks } from './statfs-helper.js';

export type { FsBlocks };

const nodeStatfs = (fsp as unknown as { statfs?: (d: string) => Promise<FsBlocks> }).statfs;
let helper: StatfsHelper | undefined;

export function statfsOf(dir: string): Promise<FsBlocks> {
  return nodeStatfs ? nodeStatfs(dir) : (helper ??= new StatfsHelper()).statfs(dir);
}

/** Bytes an unprivileged writer may still write to the file system of `dir` (df's "Available"). */
export async function availableBytes(dir: string): Promise<number> {
  const s = await statfsOf(dir);
  return s.bavail * s.bsize;
}

/** Inodes free and in all on the file system of `dir`; undefined where it does not count them (btrfs) or cannot say. */
export async function inodesOf(dir: string): Promise<{ free: number; total: number } | undefined> {
  const s = await statfsOf(dir).catch(() => undefined);
  if (!s || !s.files || s.ffree === undefined) return undefined;
  return { free: s.ffree, total: s.files };
}

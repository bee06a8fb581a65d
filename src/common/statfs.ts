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

/** What is free on a file system: bytes (as availableBytes) and inodes (undefined where it does not count them: btrfs). */
export interface Room {
  bytes: number;
  inodes: { free: number; total: number } | undefined;
}

/** The room on the file system of `dir`, from one statfs; undefined if it cannot be had (a hung mount, gone). */
export async function roomOf(dir: string): Promise<Room | undefined> {
  const s = await statfsOf(dir).catch(() => undefined);
  if (!s) return undefined;
  return { bytes: s.bavail * s.bsize, inodes: s.files && s.ffree !== undefined ? { free: s.ffree, total: s.files } : undefined };
}

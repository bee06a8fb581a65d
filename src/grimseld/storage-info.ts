// A storage as the rest of grimseld knows it (G1, G4, G13): its id, type, target, mount point and writers,
// plain data made once from the configuration, so that no component needs another to be built first.
import { replicatedPath } from '../common/paths.js';
import type { StorageConfig, StorageType } from './config.js';

export interface StorageInfo {
  readonly id: string;
  readonly type: StorageType;
  readonly target: string;
  /** Must be mounted before anything is written (G13). */
  readonly mountpoint: string | undefined;
  /** Parallel writers (G14: one without a valid license). */
  readonly writers: number;
}

/**
 * The directory whose bounded stat tells whether the storage answers (G13): its mount point, or its target when it
 * has none (a hung NFS server then holds up that storage only, as it does one with a mount point).
 */
export function probedAt(storage: Pick<StorageInfo, 'mountpoint' | 'target'>): string {
  return storage.mountpoint ?? storage.target;
}

/** The configured storages, each with its number of writers. */
export function storageInfos(storages: Record<string, StorageConfig>, writersOf: (s: StorageConfig) => number): StorageInfo[] {
  return Object.entries(storages).map(([id, s]) => ({ id, type: s.type, target: s.target, mountpoint: s.mountpoint, writers: writersOf(s) }));
}

/** Where the copy of `rel` is on `storage` (G4). */
export function destOf(storage: Pick<StorageInfo, 'target'>, rel: string): string {
  return replicatedPath(storage.target, rel);
}

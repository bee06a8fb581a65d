// grimseld.conf: its JSON Schema (one, compiled once a run), the storage rules a schema cannot say, and its typed form (S3, G1).
import * as path from 'node:path';
import type { ValidateFunction } from 'ajv';
import { compileSchema, ConfigError, listenAddressProblem, loadConfig, loggingProperties, metricsProperties, Pattern, realPathAsFar, sectionsOf } from '../common/config-file.js';
import { atOrBelow } from '../common/paths.js';

export const DEFAULT_CONFIG_PATH = '/etc/ppu/grimseld.conf';

export type StorageType = 'INTERNAL' | 'EXTERNAL' | 'OPTIONAL';

export interface StorageConfig {
  type: StorageType;
  target: string;
  mountpoint?: string;
  n_copy_processes: number;
  /** This storage's own preserve_uid/gid (a FAT disk, an NFS export with root_squash keep no owners); default: the top-level keys. */
  preserve_uid?: boolean;
  preserve_gid?: boolean;
}

export interface GrimseldConfig {
  logfile?: string;
  logfile_max_number: number;
  logfile_max_size: number;
  log_level: string;
  target: string;
  ramdisk_mountpoint: string;
  licensekey: string;
  /** PEM public key file verifying license keys (G14); unset: $PPU_LICENSE_PUBLIC_KEY, else the built-in key. */
  license_public_key?: string;
  create_links: boolean;
  preserve_uid: boolean;
  preserve_gid: boolean;
  status_port: number;
  status_address: string;
  message_port: number;
  message_address: string;
  metrics_address?: string;
  metrics_port: number;
  history_max_entries: number;
  fillstate_limit: number;
  state_dir: string;
  fifo: string;
  temp_max_age_s: number;
  verify_copies: boolean;
  storage: Record<string, StorageConfig>;
}

const absolute = { type: 'string', pattern: Pattern.absolutePath };

const storageSchema = {
  type: 'object',
  title: 'One storage',
  additionalProperties: false,
  required: ['type', 'target'],
  properties: {
    type: { type: 'string', enum: ['INTERNAL', 'EXTERNAL', 'OPTIONAL'] },
    target: { type: 'string', pattern: Pattern.absoluteBelow, description: 'directory below which files are replicated' },
    mountpoint: { ...absolute, description: 'must be mounted before anything is written (G13)' },
    n_copy_processes: { type: 'integer', minimum: 1, maximum: 64, default: 8, description: 'parallel writers' },
    preserve_uid: { type: 'boolean', description: 'this storage only; default: the top-level preserve_uid' },
    preserve_gid: { type: 'boolean', description: 'this storage only; default: the top-level preserve_gid' },
  },
};

export const grimseldSchema = {
  type: 'object',
  title: 'grimseld configuration',
  additionalProperties: false,
  required: ['storage'],
  properties: {
    ...loggingProperties,
    target: { ...absolute, default: '/ramdisk', description: 'PPU ramdisk directory files are delivered to' },
    ramdisk_mountpoint: { ...absolute, default: '/ramdisk' },
    licensekey: { ...absolute, default: '/var/lib/grimsel/license.key' },
    license_public_key: { ...absolute, description: 'PEM public key that verifies license keys (a distributor issuing their own); unset = $PPU_LICENSE_PUBLIC_KEY, else the built-in key' },
    create_links: { type: 'boolean', default: true },
    preserve_uid: { type: 'boolean', default: true },
    preserve_gid: { type: 'boolean', default: true },
    status_port: { type: 'integer', minimum: 0, maximum: 65535, default: 47199 },
    status_address: { type: 'string', default: '127.0.0.1' },
    message_port: { type: 'integer', minimum: 0, maximum: 65535, default: 47198 },
    message_address: { type: 'string', default: '127.0.0.1' },
    ...metricsProperties(47197),
    history_max_entries: { type: 'integer', minimum: 1, default: 50 },
    fillstate_limit: { type: 'integer', minimum: 1, maximum: 100, default: 80, description: 'percent' },
    state_dir: { ...absolute, default: '/var/lib/grimsel' },
    fifo: { ...absolute, default: '/run/grimseld/files' },
    // At least 10 s: a copy's temp file is unchanged only while its batch is flushed, which must not outlast this.
    temp_max_age_s: { type: 'integer', minimum: 10, maximum: 604800, default: 3600, description: 'copy temp files grimseld made (keyed names, temp-names.ts) unchanged this long are removed from storage roots and from directories where a copy failed' },
    verify_copies: { type: 'boolean', default: true, description: 'read every flushed copy back and check it against the file\'s checksum before it counts (I2); no: only the bytes read from the source are checked' },
    storage: sectionsOf(storageSchema),
  },
} as const;

/**
 * grimseld's schema, compiled. The daemon reads its file once and lets the compiled schema go: kept, it
 * would stay resident for the whole run (~1 MB, BENCHMARKS.md).
 */
export function grimseldValidator(): ValidateFunction<GrimseldConfig> {
  return compileSchema<GrimseldConfig>(grimseldSchema as unknown as Record<string, unknown>);
}

/** G1: exactly one INTERNAL, at most one EXTERNAL. */
function checkStorageRules(config: GrimseldConfig): string[] {
  const ofType = (t: StorageType) => Object.entries(config.storage).filter(([, s]) => s.type === t).map(([id]) => id);
  const problems: string[] = [];
  const internal = ofType('INTERNAL');
  if (internal.length !== 1) {
    problems.push(`key 'type': exactly one storage must be INTERNAL, found ${internal.length}` +
      (internal.length ? ` ([storage.${internal.join('], [storage.')}])` : ''));
  }
  const external = ofType('EXTERNAL');
  if (external.length > 1) problems.push(`key 'type': at most one storage may be EXTERNAL, found [storage.${external.join('], [storage.')}]`);
  return problems;
}

/**
 * G5, G6: the ramdisk directory must lie on the watched mount. Otherwise the guard sees the mount fill up
 * while none of the delivered files counts as "on the ramdisk": nothing is ever linked or deleted, and the
 * shift clean-up does nothing either.
 */
function checkRamdiskRules(config: GrimseldConfig): string[] {
  if (atOrBelow(config.target, config.ramdisk_mountpoint)) return [];
  return [`top level (before any section), key 'target': the ramdisk directory must be ` +
    `ramdisk_mountpoint or lie below it, got target = '${config.target}' and ramdisk_mountpoint = ` +
    `'${config.ramdisk_mountpoint}': the fill guard would watch one and clean up the other (one of the two keys is wrong)`];
}

/**
 * G13: a storage's target must be its mountpoint or lie below it. Otherwise the check that the disk is mounted
 * looks at one place and the copies go to another: with a typo in either key every copy went to the root file
 * system, counted copied, while the disk's mount was checked (found by hostile tester h12).
 */
function checkMountpoints(config: GrimseldConfig): string[] {
  // As written, or as real paths as far as they exist here: a target reached through a link (/data -> /mnt/raid0)
  // with the mount point written as the link leads (reviewer r5).
  const below = (target: string, mountpoint: string): boolean =>
    atOrBelow(target, mountpoint) || atOrBelow(realPathAsFar(target), realPathAsFar(mountpoint));
  return Object.entries(config.storage).filter(([, s]) => s.mountpoint !== undefined && !below(s.target, s.mountpoint)).map(([id, s]) =>
    `section [storage.${id}], key 'target': a storage's target must be its mountpoint or lie below it, got target = '${s.target}' and ` +
    `mountpoint = '${s.mountpoint!}': grimseld would check that one is mounted and write to the other (one of the two keys is wrong)`);
}

/**
 * Places that must not share files (G3, G5, G12): a storage whose target is the ramdisk directory, lies in it
 * or holds it would have originals count as copies (and a shift change delete the only ones); a storage on
 * the ramdisk's file system fills the ramdisk; two storages on one tree overwrite each other's copies; a
 * journal on the ramdisk is gone after a reboot, and one in a storage is mixed with the copies.
 */
function checkOverlaps(config: GrimseldConfig): string[] {
  const top = 'top level (before any section)';
  const places = [
    ...Object.entries(config.storage).map(([id, s]) => ({ where: `section [storage.${id}], key 'target'`, path: s.target })),
    { where: `${top}, key 'state_dir'`, path: config.state_dir },
  ];
  const problems: string[] = [];
  const refuse = (a: { where: string; path: string }, how: string, b: { where: string; path: string }): void => {
    problems.push(`${a.where}: '${a.path}' ${how} ${b.where.replace(`${top}, `, '')} ('${b.path}'): the ramdisk, each storage ` +
      'and the journal need directory trees of their own (files would be lost or overwritten)');
  };
  const relation = (a: string, b: string): string | undefined =>
    atOrBelow(a, b) ? (path.posix.relative(path.posix.normalize(b), path.posix.normalize(a)) === '' ? 'is the same directory as' : 'lies below')
      : atOrBelow(b, a) ? 'holds' : undefined;
  places.forEach((a, i) => {
    const toRamdisk = relation(a.path, config.target);
    if (toRamdisk) refuse(a, toRamdisk, { where: `${top}, key 'target'`, path: config.target });
    else if (config.ramdisk_mountpoint !== '/' && atOrBelow(a.path, config.ramdisk_mountpoint)) {
      refuse(a, 'lies on the ramdisk, below', { where: `${top}, key 'ramdisk_mountpoint'`, path: config.ramdisk_mountpoint });
    }
    for (const b of places.slice(i + 1)) {
      const how = relation(b.path, a.path);
      if (how) refuse(b, how, a);
    }
  });
  return problems;
}

/**
 * The TCP ports grimseld listens on (0: any free one) are its own each where their addresses meet (the same
 * address, or a wildcard): two on one port would fail only at start, with "in use".
 */
function checkPorts(config: GrimseldConfig): string[] {
  const top = 'top level (before any section)';
  const listens: Array<[string, string, number]> = [['status_port', config.status_address, config.status_port],
    ['message_port', config.message_address, config.message_port]];
  if (config.metrics_address !== undefined) listens.push(['metrics_port', config.metrics_address, config.metrics_port]);
  const wildcard = (a: string): boolean => a === '0.0.0.0' || a === '::';
  const problems: string[] = [];
  listens.forEach(([key, address, port], i) => {
    const same = listens.slice(0, i).find(([, a, p]) => p === port && port !== 0 && (a === address || wildcard(a) || wildcard(address)));
    if (same) problems.push(`${top}, key '${key}': port ${port} is already ${same[0]}'s on that address; each needs a port of its own`);
  });
  return problems;
}

/** Every listen address an IP address (common/config-file.ts listenAddressProblem). */
function checkAddresses(config: GrimseldConfig): string[] {
  return ([['status_address', config.status_address], ['message_address', config.message_address], ['metrics_address', config.metrics_address]] as const)
    .map(([key, a]) => listenAddressProblem(key, a)).filter((p): p is string => p !== undefined);
}

export function parseGrimseldConfigObject(file: string, config: GrimseldConfig): GrimseldConfig {
  const problems = [...checkStorageRules(config), ...checkRamdiskRules(config), ...checkMountpoints(config), ...checkOverlaps(config), ...checkAddresses(config), ...checkPorts(config)];
  if (problems.length) throw new ConfigError(file, problems);
  return config;
}

export function loadGrimseldConfig(file: string): GrimseldConfig {
  return parseGrimseldConfigObject(file, loadConfig(file, grimseldValidator()));
}

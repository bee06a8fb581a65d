// furkad.conf: its JSON Schema (one, compiled once) and its typed form (S3).
import { compileSchema, ConfigError, listenAddressProblem, loadConfig, loggingProperties, metricsProperties, Pattern, sectionsOf } from '../common/config-file.js';
import { scheduleProblem } from './shift-schedule.js';
import { expandUsrdir, nestedTargets } from '../common/paths.js';
import { confinement } from './shift.js';
import { realpathSync } from 'node:fs';
import { isIP } from 'node:net';
import { DEFAULT_AGENT_KEY_FILE, readKeyFile } from '../common/shared-key.js';
import { DEFAULT_RSYNC_PASSWORD_FILE, DEFAULT_RSYNC_USER, rsyncLogin } from './rsync-auth.js';
import { sourcePatternProblem } from './rsync.js';
import { excludeProblem } from '../agent/name-filter.js';

export const DEFAULT_CONFIG_PATH = '/etc/ppu/furkad.conf';

export type TransportName = 'rsync' | 'agent';

export interface DetectorConfig {
  transport: TransportName;
  remoteIP: string;
  port: number;
  module: string;
  source: string;
  target: string;
  minpause: number;
  interrun_pause: number;
  remove_source: boolean;
  settle_ms: number;
  exclude: string;
  /** transport = agent: the file holding the agent's key (set to DEFAULT_AGENT_KEY_FILE when not given); unset with rsync. */
  agent_key_file?: string;
  /** transport = rsync: who furkad logs in to the daemon as, and the file holding the password (rsync-auth.ts has the defaults). */
  rsync_user?: string;
  rsync_password_file?: string;
}

export interface FurkadConfig {
  logfile?: string;
  logfile_max_number: number;
  logfile_max_size: number;
  log_level: string;
  uid: number;
  gid: number;
  usrdir: string;
  allow_root_shift: boolean;
  licensekey: string;
  /** PEM public key file verifying license keys (F8); unset: $PPU_LICENSE_PUBLIC_KEY, else the built-in key. */
  license_public_key?: string;
  state_dir: string;
  rsync_path: string;
  rsync_timeout_s: number;
  shift_schedule?: string;
  metrics_address?: string;
  metrics_port: number;
  detector: Record<string, DetectorConfig>;
}

const id = { type: 'integer', minimum: 0, maximum: 4294967294 };

const detectorSchema = {
  type: 'object',
  title: 'One detector server',
  additionalProperties: false,
  required: ['remoteIP', 'target'],
  properties: {
    transport: { type: 'string', enum: ['rsync', 'agent'], default: 'rsync', description: "how files leave the detector server: 'agent' = furka-agent streams each file once the kernel says it is complete; 'rsync' = pull from the stock rsync daemon" },
    remoteIP: { type: 'string', minLength: 1, description: 'detector server address' },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'port of the furka-agent (default 49372) or of the rsync daemon (default 49371)' },
    module: { type: 'string', pattern: Pattern.word, default: 'ramdisk', description: 'rsync module serving /ramdisk (rsync transport)' },
    source: { type: 'string', pattern: Pattern.noParent, default: '/', description: "directory below the module to pull from; no '..'" },
    target: { type: 'string', pattern: Pattern.absoluteBelow, description: "absolute PPU directory to write to, no '..'; may contain ./" },
    // Every ms or s key has a maximum: Node's timers take at most 2^31-1 ms and fire after 1 ms beyond that.
    minpause: { type: 'integer', minimum: 0, maximum: 3600000, description: 'ms between two runs (default 10 over rsync, 0 with the agent, which runs only when a file was announced)' },
    interrun_pause: { type: 'integer', minimum: 0, maximum: 3600000, default: 0, description: 'extra ms after a run that moved files' },
    remove_source: { type: 'boolean', default: true, description: 'remove copied files from the detector ramdisk' },
    settle_ms: { type: 'integer', minimum: 0, maximum: 3600000, description: 'take a file only once it has not changed for this long (a writer that pauses mid-file); default 2000 with remove_source, 0 (off) without; 0 is safe only for writers that rename into place' },
    agent_key_file: { type: 'string', pattern: Pattern.absolutePath, description: `transport = agent: file holding the agent's key (a copy of the detector server's key_file), root's, mode 0600; default ${DEFAULT_AGENT_KEY_FILE}` },
    rsync_user: { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$', description: `transport = rsync: user furkad logs in to the daemon as (its 'auth users'); default ${DEFAULT_RSYNC_USER}` },
    rsync_password_file: { type: 'string', pattern: Pattern.absolutePath, description: `transport = rsync: file holding that user's password (the detector server's key: the shipped daemon's secrets are made from it), root's, mode 0600; default ${DEFAULT_RSYNC_PASSWORD_FILE}, used only if it exists (a daemon without 'auth users' asks for none)` },
    exclude: { type: 'string', default: '', description: "rsync patterns (space-separated) of files never pulled, e.g. a writer's temp files" },
  },
};

export const furkadSchema = {
  type: 'object',
  title: 'furkad configuration',
  additionalProperties: false,
  required: ['detector'],
  properties: {
    ...loggingProperties,
    uid: { ...id, default: 1000, description: 'uid of the shift started at process start' },
    gid: { ...id, default: 1000, description: 'gid of the shift started at process start' },
    usrdir: { type: 'string', pattern: Pattern.relativeBelow, default: '$UID_$GID', description: 'per-shift directory below each target' },
    allow_root_shift: { type: 'boolean', default: false, description: 'accept uid 0 or gid 0 for a shift (files owned by root)' },
    state_dir: { type: 'string', pattern: Pattern.absolutePath, default: '/var/lib/furka', description: 'hand-over outbox (outbox.jsonl)' },
    licensekey: { type: 'string', pattern: Pattern.absolutePath, default: '/var/lib/furka/license.key', description: 'license key file (F8); missing or invalid = one transfer at a time' },
    license_public_key: { type: 'string', pattern: Pattern.absolutePath, description: 'PEM public key that verifies license keys (a distributor issuing their own); unset = $PPU_LICENSE_PUBLIC_KEY, else the built-in key' },
    rsync_path: { type: 'string', default: 'rsync', description: 'rsync client binary' },
    rsync_timeout_s: { type: 'integer', minimum: 1, maximum: 3600, default: 30, description: 'I/O timeout of one run' },
    shift_schedule: { type: 'string', description: 'cron expression (local time): start a shift with uid/gid at each boundary; unset = never' },
    ...metricsProperties(47196),
    detector: sectionsOf(detectorSchema),
  },
} as const;

/**
 * settle_ms when the file does not say (F2: the default never delivers a truncated file). Over rsync furkad
 * cannot see whether a writer still holds a file open, only whether it changed: a file is taken once it has
 * stayed unchanged this long, so a writer's pauses must be shorter. 2 s covers pauses up to 1 s with room for
 * a slow listing run; a writer that renames into place needs none (settle_ms = 0 plus its temp names in `exclude`).
 */
export const DEFAULT_SETTLE_MS = 2000;

/** Ports of the two detector-side servers when `port` is not set (F1, A1). */
const DEFAULT_PORT: Record<TransportName, number> = { rsync: 49371, agent: 49372 };
const DEFAULT_MINPAUSE: Record<TransportName, number> = { rsync: 10, agent: 0 };

const validate = compileSchema<FurkadConfig>(furkadSchema as unknown as Record<string, unknown>);

/** A host name as resolvers take it: labels of letters, digits, '-' and '_' (not first), dots between. */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?$/;

/**
 * Why `remoteIP` can reach no detector server, or undefined: an address or a host name is taken. Before, '[::1]'
 * (an IPv6 address as in a URL), '10.10.10.11:49372' or a link-local address with a zone for the agent passed the
 * check and the start, and the detector then stayed `retrying` for ever with "Invalid URL" (S3, F10).
 */
export function remoteIPProblem(value: string, transport: TransportName): string | undefined {
  const v6 = /^\[(.*)\]$/.exec(value);
  if (v6 && isIP(v6[1]!) === 6) return `'${value}': write an IPv6 address without brackets (${v6[1]}); the port goes in key 'port'`;
  if (isIP(value) === 6 && value.includes('%') && transport === 'agent') {
    return `'${value}': an IPv6 address with a zone (%${value.split('%')[1]}) cannot be used with transport = agent; ` +
      "give the detector server an address without one (a global or fd00::/8 address), or a host name";
  }
  if (isIP(value) !== 0) return undefined;
  if (/^[\d.]+$/.test(value)) return `'${value}' is not an IPv4 address`;
  if (!HOST_NAME.test(value)) {
    return `'${value}' is neither an IP address nor a host name (an address such as 10.10.10.11 or fd00::11, or a name such as ` +
      "det1.beamline; the port goes in key 'port')";
  }
  return undefined;
}

/** What the schema cannot say: defaults that depend on the transport and remove_source; no root shift unless allowed; the schedule must be a cron expression. */
export function checkFurkadConfig(file: string, config: FurkadConfig): FurkadConfig {
  for (const [id, d] of Object.entries(config.detector)) {
    const given = (key: keyof DetectorConfig): boolean => (d[key] as unknown) !== undefined;
    const host = remoteIPProblem(d.remoteIP, d.transport);
    if (host) throw new ConfigError(file, [`section [detector.${id}], key 'remoteIP': ${host}`]);
    const exclude = excludeProblem(d.exclude ?? '');
    if (exclude) throw new ConfigError(file, [`section [detector.${id}], key 'exclude': ${exclude}`]);
    if (d.transport === 'agent') {
      // The agent learns completeness from the kernel and deletes on acknowledgement: nothing to settle,
      // nothing to exclude here (the agent has its own exclude), and a source always goes once placed.
      const problems = (['settle_ms', 'exclude', 'module', 'rsync_user', 'rsync_password_file'] as const).filter((k) => given(k) && !(k === 'module' && d.module === 'ramdisk') && !(k === 'exclude' && d.exclude === ''))
        .map((k) => `section [detector.${id}], key '${k}': is for transport = rsync; with transport = agent ${k === 'exclude' ? "set 'exclude' in the agent's furka-agent.conf" : 'leave it out'}`);
      if (!d.remove_source) problems.push(`section [detector.${id}], key 'remove_source': transport = agent always removes a source once placed (the agent deletes it on acknowledgement); leave it out or use transport = rsync`);
      if (problems.length) throw new ConfigError(file, problems);
      d.settle_ms = 0;
      d.agent_key_file ??= DEFAULT_AGENT_KEY_FILE;
    } else if (given('agent_key_file')) {
      throw new ConfigError(file, [`section [detector.${id}], key 'agent_key_file': is for transport = agent; with transport = rsync the ` +
        "detector server's key goes in rsync_password_file"]);
    } else {
      const pattern = sourcePatternProblem(d.source);
      if (pattern) throw new ConfigError(file, [`section [detector.${id}], key 'source': ${pattern}`]);
    }
    d.port ??= DEFAULT_PORT[d.transport];
    d.minpause ??= DEFAULT_MINPAUSE[d.transport];
    // Without remove_source nothing is removed from under a writer, so nothing waits to settle.
    if ((d.settle_ms as number | undefined) === undefined) d.settle_ms = d.remove_source ? DEFAULT_SETTLE_MS : 0;
    if (d.settle_ms > 0 && !d.remove_source) {
      throw new ConfigError(file, [`section [detector.${id}], key 'settle_ms': needs remove_source = yes (files are ` +
        `settled in staging before their source is removed), got settle_ms = ${d.settle_ms} with remove_source = no`]);
    }
  }
  // The shift furkad starts at every start: refused at the check, not only by the daemon (which would then fail to start).
  const rootIds = (['uid', 'gid'] as const).filter((key) => config[key] === 0 && !config.allow_root_shift);
  if (rootIds.length) {
    throw new ConfigError(file, rootIds.map((key) => `top level (before any section), key '${key}': 0 makes the shift furkad starts at each ` +
      "start root's, refused unless allow_root_shift = yes"));
  }
  const unconfined = Object.entries(config.detector).filter(([, d]) => confinement(d.target) === '/');
  if (unconfined.length) {
    throw new ConfigError(file, unconfined.map(([id, d]) => `section [detector.${id}], key 'target': '${d.target}' is replicated ` +
      "from / (the part before its './', or without one its parent), and StartShift targets are confined to that directory: an " +
      "operator could have root place this detector's files anywhere (/etc); put the './' after a directory other than / " +
      "(e.g. /ramdisk/./1mf)"));
  }
  if (config.usrdir === '') {
    const nested = nestedTargets(Object.entries(config.detector).map(([id, d]) => [id, d.target]));
    if (nested.length) {
      throw new ConfigError(file, nested.map(([a, b]) => `section [detector.${b}], key 'target': '${config.detector[b]!.target}' and ` +
        `[detector.${a}]'s '${config.detector[a]!.target}' lie one in the other; with usrdir empty each shift's files go straight into its ` +
        'target, so one detector\'s would be placed through the other\'s directory: give them targets side by side, or set usrdir'));
    }
  }
  const address = listenAddressProblem('metrics_address', config.metrics_address);
  if (address) throw new ConfigError(file, [address]);
  const schedule = config.shift_schedule === undefined ? undefined : scheduleProblem(config.shift_schedule);
  if (schedule !== undefined) {
    throw new ConfigError(file, [`top level (before any section), key 'shift_schedule': must be a cron expression ` +
      `('minute hour day-of-month month day-of-week', optionally seconds first), got '${config.shift_schedule}': ${schedule}`]);
  }
  return config;
}

/**
 * On the machine, at `--check`, `ppuctl config check` and start: a target whose confinement is a link to '/' is as
 * unconfined as one written with '/' (S2, F6). One that does not exist (yet, or on this machine) is left to
 * StartShift, which resolves it again at every request.
 */
export function checkFurkadTargets(file: string, config: FurkadConfig): void {
  const problems: string[] = [];
  for (const [id, d] of Object.entries(config.detector)) {
    const allowed = confinement(d.target);
    let real: string;
    try { real = realpathSync.native(allowed); } catch { continue; }
    if (real === '/') {
      problems.push(`section [detector.${id}], key 'target': '${d.target}' is replicated from ${allowed}, which leads to / ` +
        '(a symbolic link), and StartShift targets are confined to that directory: an operator could have root place this ' +
        "detector's files anywhere (/etc); name the real directory, with the './' after a directory other than /");
    }
  }
  if (problems.length) throw new ConfigError(file, problems);
}

/**
 * At --check, `ppuctl config check` and at start, on the machine: the key file of each detector with transport = agent must hold a key
 * that only root can read (A1); without it every request would be refused, with one others can read anyone
 * on the PPU could read and delete the detector's files. The same for an rsync detector's password file, which
 * only needs to exist when `rsync_password_file` names it (rsync-auth.ts). Read again at every connection or
 * run (a key copied in meanwhile is taken without a restart).
 */
export function checkKeyFiles(file: string, config: FurkadConfig): void {
  const problems: string[] = [];
  for (const [id, d] of Object.entries(config.detector)) {
    try {
      if (d.transport === 'agent') readKeyFile(d.agent_key_file ?? DEFAULT_AGENT_KEY_FILE, 'copy');
      else rsyncLogin(d);
    } catch (e) {
      const key = d.transport === 'agent' ? "key 'agent_key_file': " : "key 'rsync_password_file': ";
      problems.push(`section [detector.${id}], ${key}${(e as Error).message}`);
    }
  }
  if (problems.length) throw new ConfigError(file, problems);
}

export function loadFurkadConfig(file: string): FurkadConfig {
  return checkFurkadConfig(file, loadConfig(file, validate));
}

export { validate as validateFurkadConfig };

/**
 * A usrdir that is the same for every shift (neither `$UID` nor `$GID` in it) is allowed, and dangerous: each new
 * shift's user gets that one directory, with the files earlier shifts left there not yet copied, which they can
 * then delete or rename (found by hostile tester h12). Said by --check, ppuctl config check and at start.
 * Undefined for the default and any usrdir that tells shifts apart, or an empty one (documented on its own).
 */
export function usrdirNote(config: FurkadConfig): string | undefined {
  const u = config.usrdir;
  if (u === '' || expandUsrdir(u, 1, 1) !== expandUsrdir(u, 2, 2)) return undefined;
  const lower = /\$\{?(uid|gid)\b/i.test(u) ? ' ($UID and $GID are expanded in capitals only)' : '';
  return `usrdir '${u}' is the same directory for every shift${lower}: each new shift's user is given it, and can delete or rename ` +
    "the files earlier shifts left there that grimseld has not copied yet; put $UID in it where successive users must not reach each other's files ($GID alone still gives one directory to users of one group)";
}


// furka-agent.conf: its JSON Schema (one, compiled once) and its typed form (A1, S3).
import { compileSchema, ConfigError, fileKind, loadConfig, loggingProperties, Pattern } from '../common/config-file.js';
import { statSync } from 'node:fs';
import { hiddenByUnits } from '../common/paths.js';
import { isIP } from 'node:net';
import { AllowList } from './allow.js';
import { excludeProblem, words } from './name-filter.js';
import { DEFAULT_AGENT_KEY_FILE, readKeyFile } from '../common/shared-key.js';

export const DEFAULT_CONFIG_PATH = '/etc/ppu/furka-agent.conf';
export const DEFAULT_PORT = 49372;

export interface AgentConfig {
  logfile?: string;
  logfile_max_number: number;
  logfile_max_size: number;
  log_level: string;
  root: string;
  address: string;
  port: number;
  allow: string;
  exclude: string;
  send_timeout: number;
  key_file: string;
}

export const agentSchema = {
  type: 'object',
  title: 'furka-agent configuration',
  additionalProperties: false,
  properties: {
    ...loggingProperties,
    root: { type: 'string', pattern: Pattern.absoluteBelow, default: '/ramdisk', description: "served directory (the detector ramdisk); absolute, no '..'" },
    address: { type: 'string', minLength: 1, default: '0.0.0.0', description: 'listen address' },
    port: { type: 'integer', minimum: 0, maximum: 65535, default: DEFAULT_PORT, description: 'listen port (HTTP/2, cleartext)' },
    allow: { type: 'string', default: '127.0.0.1 ::1', description: 'space-separated client addresses or CIDR ranges (IPv4, IPv6)' },
    exclude: { type: 'string', default: '', description: "space-separated globs (*, ?) on base names never announced, e.g. a writer's temp names" },
    key_file: { type: 'string', pattern: Pattern.absolutePath, default: DEFAULT_AGENT_KEY_FILE, description: "file holding the key every request must carry (furkad's agent_key_file holds the same); root's, mode 0600" },
    send_timeout: { type: 'integer', minimum: 1, maximum: 86400, default: 60, description: 'seconds a file body may make no progress (its client not reading) before its stream is reset' },
  },
} as const;

const validate = compileSchema<AgentConfig>(agentSchema as unknown as Record<string, unknown>);

/**
 * What the schema cannot say: `address` must be an IP address (a name would be looked up at every start, and
 * one that does not resolve failed the start with no key named), every `allow` word an address or CIDR range.
 */
export function checkAgentConfig(file: string, config: AgentConfig): AgentConfig {
  const problems: string[] = [];
  if (isIP(config.address) === 0) {
    problems.push(`top level (before any section), key 'address': '${config.address}' is not an IP address (the address to listen on: 0.0.0.0, ::, or one of this host's addresses)`);
  }
  for (const w of words(config.allow)) {
    try {
      new AllowList([w]);
    } catch (e) {
      problems.push(`top level (before any section), key 'allow': ${(e as Error).message}`);
    }
  }
  const exclude = excludeProblem(config.exclude);
  if (exclude) problems.push(`top level (before any section), key 'exclude': ${exclude}`);
  if (problems.length) throw new ConfigError(file, problems);
  return config;
}

export function loadAgentConfig(file: string): AgentConfig {
  return checkAgentConfig(file, loadConfig(file, validate));
}

/**
 * The key of `key_file`, or a ConfigError naming the key (exit 78): an agent without a private key would serve
 * and delete files for anyone on an allowed host (A1, A4). Not made here when missing: the detector package's
 * %post makes it, and an agent that made its own would only leave furkad with a key that does not match.
 */
export function loadAgentKey(file: string, config: AgentConfig): string {
  try {
    return readKeyFile(config.key_file);
  } catch (e) {
    throw new ConfigError(file, [`top level (before any section), key 'key_file': ${(e as Error).message}`]);
  }
}

/**
 * At --check and at start, on the machine: `root` must be a directory (followed if a link; the agent serves its real
 * path). One missing is a typo or a ramdisk directory never made, which starting again does not cure: a
 * ConfigError naming the key (exit 78, not restarted). A ramdisk mounted on it later is taken while the agent runs.
 */
export function checkAgentRoot(file: string, config: AgentConfig): void {
  let problem: string | undefined;
  try {
    const st = statSync(config.root);
    if (!st.isDirectory()) problem = `'${config.root}' is ${fileKind(st)}, not a directory`;
  } catch (e) {
    problem = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `'${config.root}' does not exist` : `cannot use '${config.root}': ${(e as Error).message}`;
  }
  if (problem) {
    // Where the shipped unit gives the agent a directory of its own (PrivateTmp=yes) or none (ProtectHome=yes): a root
    // an administrator's shell shows is missing there (found by a review).
    const hidden = hiddenByUnits(config.root);
    const unit = hidden ? `; the shipped unit (PrivateTmp=yes, ProtectHome=yes) hides what is below ${hidden} from the agent: serve a directory below /ramdisk` : '';
    throw new ConfigError(file, [`top level (before any section), key 'root': ${problem} (the directory served: the detector ramdisk's ` +
      `mount point, made before the agent starts; a ramdisk mounted on it later is taken as it comes${unit})`]);
  }
}

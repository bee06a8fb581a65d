// Converts the vendor's furka_dectris.conf / grimsel_dectris.conf (`key value` lines, sections opened by
// `detectorID X` / `storageID X`) into our INI (S3), reporting every line it cannot map.
import * as path from 'node:path';
import * as ini from 'ini';
import { ConfigError, parseConfig } from '../common/config-file.js';
import { checkFurkadConfig, validateFurkadConfig } from '../furkad/config.js';
import { grimseldValidator, parseGrimseldConfigObject, type GrimseldConfig } from '../grimseld/config.js';

export type VendorKind = 'furkad' | 'grimseld';

export interface VendorImport {
  kind: VendorKind;
  /** The converted configuration; lines that could not be mapped are kept in it as comments. */
  ini: string;
  /** Vendor keys carried over. */
  mapped: number;
  /** Everything not carried over or not valid, one sentence each, naming the vendor line. */
  problems: string[];
}

type ValueKind = 'text' | 'bool' | 'storageType';

/** Policy as a table: which vendor keys exist where, and how their values are read. Names are unchanged. */
const KEYS: Record<VendorKind, { section: string; opener: string; top: Record<string, ValueKind>; inSection: Record<string, ValueKind> }> = {
  furkad: {
    section: 'detector',
    opener: 'detectorid',
    top: { logfile: 'text', logfile_max_number: 'text', logfile_max_size: 'text', uid: 'text', gid: 'text', usrdir: 'text', licensekey: 'text' },
    inSection: { remoteIP: 'text', source: 'text', target: 'text', minpause: 'text', interrun_pause: 'text', port: 'text', module: 'text' },
  },
  grimseld: {
    section: 'storage',
    opener: 'storageid',
    top: {
      logfile: 'text', logfile_max_number: 'text', logfile_max_size: 'text', target: 'text', ramdisk_mountpoint: 'text',
      licensekey: 'text', create_links: 'bool', preserve_uid: 'bool', preserve_gid: 'bool', status_port: 'text',
      message_port: 'text', history_max_entries: 'text', fillstate_limit: 'text',
    },
    inSection: { type: 'storageType', target: 'text', n_copy_processes: 'text', mountpoint: 'text' },
  },
};

const TRUE_WORDS = ['yes', 'true', 'on', '1'];
const FALSE_WORDS = ['no', 'false', 'off', '0'];

/** Which daemon a vendor file configures: by its sections, else by its name. */
export function vendorKind(file: string, text: string): VendorKind {
  if (/^\s*storageID\s/im.test(text)) return 'grimseld';
  if (/^\s*detectorID\s/im.test(text)) return 'furkad';
  const base = path.basename(file).toLowerCase();
  if (base.includes('grimsel')) return 'grimseld';
  if (base.includes('furka')) return 'furkad';
  throw new ConfigError(file, ['cannot tell whether this is a furka or a grimsel file: it has no detectorID or storageID section and its name says neither']);
}

/** Finds a key of the table case-insensitively (the vendor files are not consistent about case). */
function known(table: Record<string, ValueKind>, key: string): [string, ValueKind] | undefined {
  return Object.entries(table).find(([k]) => k.toLowerCase() === key.toLowerCase());
}

function convertValue(kind: ValueKind, value: string): string | undefined {
  switch (kind) {
    case 'bool':
      if (TRUE_WORDS.includes(value.toLowerCase())) return 'yes';
      if (FALSE_WORDS.includes(value.toLowerCase())) return 'no';
      return undefined;
    case 'storageType':
      return ['INTERNAL', 'EXTERNAL', 'OPTIONAL'].includes(value.toUpperCase()) ? value.toUpperCase() : undefined;
    default:
      return value;
  }
}

/** Strips a comment: `#` at the start of a line or after white space (paths may contain `#`). */
function stripComment(line: string): string {
  const m = /(^|\s)[#;]/.exec(line);
  return (m ? line.slice(0, m.index) : line).trim();
}

export function importVendorConfig(file: string, text: string, kind: VendorKind = vendorKind(file, text)): VendorImport {
  const spec = KEYS[kind];
  const problems: string[] = [];
  const top = new Map<string, string>();
  const sections = new Map<string, Map<string, string>>();
  const unconverted: string[] = [];
  let current: Map<string, string> | undefined;
  let currentName = '';
  let mapped = 0;

  const skip = (n: number, raw: string, why: string): void => {
    problems.push(`line ${n}: '${raw.trim()}': ${why}`);
    unconverted.push(`# not converted (line ${n}, ${why}): ${raw.trim()}`);
  };

  text.split(/\r?\n/).forEach((raw, i) => {
    const n = i + 1;
    const line = stripComment(raw);
    if (!line) return;
    const m = /^(\S+)(?:\s*=\s*|\s+)?(.*)$/.exec(line)!;
    const key = m[1]!;
    const value = (m[2] ?? '').trim();
    if (key.toLowerCase() === spec.opener) {
      if (!value) return skip(n, raw, `${key} without a name`);
      const id = value.replace(/[^A-Za-z0-9_-]/g, '_');
      if (id !== value) problems.push(`line ${n}: ${spec.section} '${value}' is named '${id}' (section names allow only letters, digits, _ and -)`);
      if (sections.has(id)) problems.push(`line ${n}: ${spec.section} '${id}' appears twice; its keys are merged, the later value wins`);
      current = sections.get(id) ?? new Map();
      sections.set(id, current);
      currentName = id;
      return;
    }
    const inSection = current ? known(spec.inSection, key) : undefined;
    const atTop = known(spec.top, key);
    const entry = inSection ?? (current ? undefined : atTop);
    if (!entry) {
      if (current && atTop) return skip(n, raw, `'${key}' is a global setting but stands inside ${spec.section} '${currentName}'; move it above the first ${spec.opener === 'detectorid' ? 'detectorID' : 'storageID'}`);
      if (!current && known(spec.inSection, key)) return skip(n, raw, `'${key}' belongs to a ${spec.section} but stands before any ${spec.opener === 'detectorid' ? 'detectorID' : 'storageID'} line`);
      return skip(n, raw, `unknown key '${key}', nothing in ${kind}.conf corresponds to it`);
    }
    if (!value) return skip(n, raw, `'${key}' has no value`);
    const [name, valueKind] = entry;
    const converted = convertValue(valueKind, value);
    if (converted === undefined) return skip(n, raw, `'${value}' is not a valid value for '${name}'`);
    const into = current ?? top;
    if (into.has(name)) problems.push(`line ${n}: '${name}' is set twice${current ? ` in ${spec.section} '${currentName}'` : ''}; the later value wins`);
    into.set(name, converted);
    mapped++;
  });

  if (sections.size === 0) problems.push(`no ${spec.opener === 'detectorid' ? 'detectorID' : 'storageID'} section: ${kind}.conf needs at least one [${spec.section}.ID]`);

  // Through ini's own escaping: a vendor path holding '#' or ';' (target /data/run#1) is written as the value
  // it is, not as a comment that would cut it.
  const kv = (m: Map<string, string>): string[] => [...m].map(([k, v]) => `${k} = ${ini.safe(v)}`);
  const written = [
    `# ${kind}.conf converted by 'ppuctl config import' from ${file}`,
    ...kv(top),
    // The vendor's detector servers run the stock rsync daemon, not furka-agent.
    ...[...sections].flatMap(([id, keys]) => ['', `[${spec.section}.${id}]`, ...(kind === 'furkad' ? ['transport = rsync'] : []), ...kv(keys)]),
    ...(unconverted.length ? ['', ...unconverted] : []),
  ].join('\n') + '\n';

  // The result must also be a configuration the daemon accepts: the checks of `config check`, not the schema alone
  // (uid 0 passes the schema; furkad refuses it without allow_root_shift).
  const label = `${file} (converted)`;
  try {
    if (kind === 'furkad') checkFurkadConfig(label, parseConfig(label, written, validateFurkadConfig));
    else parseGrimseldConfigObject(label, parseConfig<GrimseldConfig>(label, written, grimseldValidator()));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems.map((p) => `the converted file is not valid: ${p}`));
  }
  return { kind, ini: written, mapped, problems };
}

// Converts the vendor's furka_dectris.conf / grimsel_dectris.conf (`key value` lines, sections opened by
// `detectorID X` / `storageID X`) into our INI (S3), reporting every line it cannot map.
import * as path from 'node:path';
import * as ini from 'ini';
import { ConfigError, invalidUtf8At, parseConfig, splitLines } from '../common/config-file.js';
import { SHIPPED_LOG_DIR } from '../common/logfile-config.js';
import { atOrBelow } from '../common/paths.js';
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
  /** Values carried over changed, to mean what the vendor's did (quotes taken off, a log file moved), naming the line. */
  notes: string[];
}

type ValueKind = 'text' | 'bool' | 'storageType' | 'logfile';

/** Policy as a table: which vendor keys exist where, and how their values are read. Names are unchanged. */
const KEYS: Record<VendorKind, { section: string; opener: string; top: Record<string, ValueKind>; inSection: Record<string, ValueKind> }> = {
  furkad: {
    section: 'detector',
    opener: 'detectorid',
    top: { logfile: 'logfile', logfile_max_number: 'text', logfile_max_size: 'text', uid: 'text', gid: 'text', usrdir: 'text', licensekey: 'text' },
    inSection: { remoteIP: 'text', source: 'text', target: 'text', minpause: 'text', interrun_pause: 'text', port: 'text', module: 'text' },
  },
  grimseld: {
    section: 'storage',
    opener: 'storageid',
    top: {
      logfile: 'logfile', logfile_max_number: 'text', logfile_max_size: 'text', target: 'text', ramdisk_mountpoint: 'text',
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

/** A value as our file takes it, with a note when it had to change to mean the same; undefined when it cannot be. */
function convertValue(kind: ValueKind, value: string, daemon: VendorKind): { value: string; note?: string } | undefined {
  switch (kind) {
    case 'bool':
      if (TRUE_WORDS.includes(value.toLowerCase())) return { value: 'yes' };
      if (FALSE_WORDS.includes(value.toLowerCase())) return { value: 'no' };
      return undefined;
    case 'storageType':
      return ['INTERNAL', 'EXTERNAL', 'OPTIONAL'].includes(value.toUpperCase()) ? { value: value.toUpperCase() } : undefined;
    case 'logfile': {
      // The shipped units let the daemons write logs only there: the vendor's /var/log/furka_dectris.log would
      // stop the daemon at its start (exit 78).
      if (!path.isAbsolute(value) || atOrBelow(value, SHIPPED_LOG_DIR)) return { value };
      const moved = path.posix.join(SHIPPED_LOG_DIR, path.basename(value));
      return { value: moved, note: `logfile '${value}' is written as '${moved}': the shipped ${daemon} unit lets it write logs only below ` +
        `${SHIPPED_LOG_DIR} (ProtectSystem=strict), and would not start with the vendor's path; leave logfile out to log to the journal` };
    }
    default:
      return { value };
  }
}

/** Where a comment starts: `#` or `;` at the start of a line or after white space (paths may contain `#`); -1 for none. */
function commentStart(line: string): number {
  return /(^|\s)[#;]/.exec(line)?.index ?? -1;
}

/**
 * A value written in quotes, taken off as the vendor's reader takes them ('usrdir "$UID_$GID"' is the directory
 * $UID_$GID, not one named with quotes): one pair of matching quotes around it. A quote at one end only is no
 * pair: an error, as its meaning is not known.
 */
function unquote(value: string): { value: string; quoted: boolean } | { unmatched: string } {
  const first = value[0];
  const last = value[value.length - 1];
  const isQuote = (c: string | undefined): boolean => c === '"' || c === "'";
  if (value.length >= 2 && isQuote(first) && first === last) return { value: value.slice(1, -1), quoted: true };
  if (isQuote(first)) return { unmatched: first! };
  if (isQuote(last)) return { unmatched: last! };
  return { value, quoted: false };
}

/** A line for messages: bytes that are not UTF-8 shown as \\xNN, not as U+FFFD. */
function showLine(bytes: Buffer): string {
  let out = '';
  for (let rest = bytes; ;) {
    const at = invalidUtf8At(rest);
    if (at === -1) return out + rest.toString('utf8');
    out += `${rest.subarray(0, at).toString('utf8')}\\x${rest[at]!.toString(16)}`;
    rest = rest.subarray(at + 1);
  }
}

/** A converted value and the vendor line it came from. */
interface Setting { value: string; n: number; raw: string }

/**
 * Converts a vendor file. `text` as read, bytes preferably: a line that is not UTF-8 is then refused by number
 * (decoded, a Latin-1 'Ä' would have become U+FFFD, and the path another one).
 */
export function importVendorConfig(file: string, text: string | Buffer, kind?: VendorKind): VendorImport {
  const lines = typeof text === 'string' ? text.split(/\r?\n/).map((l) => Buffer.from(l, 'utf8')) : splitLines(text);
  kind ??= vendorKind(file, typeof text === 'string' ? text : text.toString('utf8'));
  const spec = KEYS[kind];
  const opener = spec.opener === 'detectorid' ? 'detectorID' : 'storageID';
  const problems: string[] = [];
  const notes: string[] = [];
  // Each value with the line it came from: a value set again keeps the one it replaces as a comment.
  const top = new Map<string, Setting>();
  const sections = new Map<string, Map<string, Setting>>();
  /** The vendor's names of each section, with their lines: two that reduce to one ID are one section. */
  const vendorNames = new Map<string, { value: string; n: number }[]>();
  const unconverted: string[] = [];
  let current: Map<string, Setting> | undefined;
  let currentName = '';
  let mapped = 0;

  const skip = (n: number, raw: string, why: string): void => {
    problems.push(`line ${n}: '${raw.trim()}': ${why}`);
    unconverted.push(`# not converted (line ${n}, ${why}): ${raw.trim()}`);
  };

  lines.forEach((bytes, i) => {
    const n = i + 1;
    const lossy = bytes.toString('utf8');
    const badAt = invalidUtf8At(bytes);
    const raw = badAt === -1 ? lossy : showLine(bytes);
    const cut = commentStart(raw);
    const line = (cut === -1 ? raw : raw.slice(0, cut)).trim();
    if (!line) return;
    const m = /^(\S+)(?:\s*=\s*|\s+)?(.*)$/.exec(line)!;
    const key = m[1]!;
    const given = (m[2] ?? '').trim();
    /** Why the value cannot be carried over as the vendor meant it, or undefined. */
    const unsure = (): string | undefined => {
      // Bytes that are no UTF-8 before a comment (the comment itself is dropped anyway).
      const lossyCut = commentStart(lossy);
      if (badAt !== -1 && (lossyCut === -1 ? lossy : lossy.slice(0, lossyCut)).includes('\ufffd')) {
        return `not valid UTF-8 (the byte 0x${bytes[badAt]!.toString(16)}): ${kind}.conf is UTF-8 and cannot name it; if the vendor file is ` +
          'Latin-1 text, convert it first (iconv -f LATIN1 -t UTF-8); a directory whose name holds that byte must be renamed';
      }
      if (cut > 0) {
        const rest = raw.slice(cut).trim();
        return `'${rest[0]!}' after a space would end the value here (read as '${given}', dropping '${rest}'); whether that is a ` +
          'comment or part of the value is not known: remove the comment, or the space before it';
      }
      return undefined;
    };
    /** The value without one pair of quotes around it (noted), or undefined when a quote has no partner (skipped). */
    const unquoted = (): string | undefined => {
      const q = unquote(given);
      if ('unmatched' in q) {
        skip(n, raw, `the value has a ${q.unmatched} at one end only; write it without quotes or with a pair around it`);
        return undefined;
      }
      if (q.quoted) notes.push(`line ${n}: the quotes around ${given} were taken off: '${key}' is ${q.value === '' ? 'empty' : `'${q.value}'`}`);
      return q.value;
    };
    if (key.toLowerCase() === spec.opener) {
      if (!given) return skip(n, raw, `${key} without a name`);
      // The section is opened even so: the lines after it are its own, not kept in the one before.
      const why = unsure();
      if (why) problems.push(`line ${n}: '${raw.trim()}': ${why}`);
      const value = unquoted();
      if (value === undefined) return;
      const id = value.replace(/[^A-Za-z0-9_-]/g, '_');
      if (id !== value && !why) problems.push(`line ${n}: ${spec.section} '${value}' is named '${id}' (section names allow only letters, digits, _ and -)`);
      const earlier = vendorNames.get(id) ?? [];
      const other = earlier.find((e) => e.value !== value);
      if (other) {
        problems.push(`line ${n}: ${spec.section} '${value}' and ${spec.section} '${other.value}' (line ${other.n}) are both named '${id}'; ` +
          `their keys are merged, the later value wins (each replaced line is kept as not converted): rename one in the vendor file`);
      } else if (earlier.length) problems.push(`line ${n}: ${spec.section} '${id}' appears twice; its keys are merged, the later value wins`);
      vendorNames.set(id, [...earlier, { value, n }]);
      current = sections.get(id) ?? new Map();
      sections.set(id, current);
      currentName = id;
      return;
    }
    const inSection = current ? known(spec.inSection, key) : undefined;
    const atTop = known(spec.top, key);
    const entry = inSection ?? (current ? undefined : atTop);
    if (!entry) {
      if (current && atTop) return skip(n, raw, `'${key}' is a global setting but stands inside ${spec.section} '${currentName}'; move it above the first ${opener}`);
      if (!current && known(spec.inSection, key)) return skip(n, raw, `'${key}' belongs to a ${spec.section} but stands before any ${opener} line`);
      return skip(n, raw, `unknown key '${key}', nothing in ${kind}.conf corresponds to it`);
    }
    if (!given) return skip(n, raw, `'${key}' has no value`);
    const why = unsure();
    if (why) return skip(n, raw, why);
    const value = unquoted();
    if (value === undefined) return;
    const [name, valueKind] = entry;
    const converted = convertValue(valueKind, value, kind!);
    if (converted === undefined) return skip(n, raw, `'${value}' is not a valid value for '${name}'`);
    if (converted.note) notes.push(`line ${n}: ${converted.note}`);
    const into = current ?? top;
    const replaced = into.get(name);
    if (replaced) {
      const names = [...new Set((current ? vendorNames.get(currentName) ?? [] : []).map((e) => e.value))];
      const from = names.length > 1 ? ` (vendor ${spec.section}s ${names.map((v) => `'${v}'`).join(' and ')})` : '';
      problems.push(`line ${n}: '${name}' is set twice${current ? ` in ${spec.section} '${currentName}'${from}` : ''}; the later value wins`);
      unconverted.push(`# not converted (line ${replaced.n}, replaced by line ${n}): ${replaced.raw}`);
    }
    into.set(name, { value: converted.value, n, raw: raw.trim() });
    mapped++;
  });

  if (sections.size === 0) problems.push(`no ${opener} section: ${kind}.conf needs at least one [${spec.section}.ID]`);

  // Through ini's own escaping: a vendor path holding '#' or ';' (target /data/run#1) is written as the value
  // it is, not as a comment that would cut it.
  const kv = (m: Map<string, Setting>): string[] => [...m].map(([k, v]) => `${k} = ${ini.safe(v.value)}`);
  const written = [
    `# ${kind}.conf converted by 'ppuctl config import' from ${file}`,
    ...notes.map((note) => `# changed on the way, ${note}`),
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
  return { kind, ini: written, mapped, problems, notes };
}

// Reads a daemon's INI file and validates it against that daemon's JSON Schema (S3).
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import * as ini from 'ini';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { isJournalStream } from './logger.js';

/** A configuration problem, already phrased for the administrator. */
export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file}: invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Schema = Record<string, unknown>;

/**
 * Compiles a daemon's schema; the result validates parsed INI objects. Each gets an ajv of its own, which
 * keeps nothing else alive: a daemon that drops the result after start-up drops all of it (BENCHMARKS.md).
 */
export function compileSchema<T>(schema: Schema): ValidateFunction<T> {
  return new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: true }).compile<T>(schema);
}

/** Calls `visit` for every key of `value` that `schema` types, sections walked into, with that key's schema. */
function eachTypedKey(value: Record<string, unknown>, schema: Schema, visit: (obj: Record<string, unknown>, key: string, sub: Schema) => void): void {
  const props = (schema['properties'] ?? {}) as Record<string, Schema>;
  const patterns = (schema['patternProperties'] ?? {}) as Record<string, Schema>;
  for (const [key, v] of Object.entries(value)) {
    const sub = props[key] ?? Object.entries(patterns).find(([re]) => new RegExp(re).test(key))?.[1];
    if (!sub) continue;
    if (sub['type'] === 'object' && v && typeof v === 'object') eachTypedKey(v as Record<string, unknown>, sub, visit);
    else visit(value, key, sub);
  }
}

/** INI booleans are words; the schema wants booleans. Only keys the schema types as boolean are touched. */
function normaliseBooleans(value: Record<string, unknown>, schema: Schema): void {
  eachTypedKey(value, schema, (obj, key, sub) => {
    const v = obj[key];
    if (sub['type'] !== 'boolean' || typeof v !== 'string') return;
    const word = v.trim().toLowerCase();
    if (['yes', 'true', 'on', '1'].includes(word)) obj[key] = true;
    else if (['no', 'false', 'off', '0'].includes(word)) obj[key] = false;
  });
}

/** An integer as the README documents them: decimal digits, optionally '-'. */
const DECIMAL = /^-?[0-9]+$/;
/** Put in place of a value no integer key takes: ajv cannot coerce it, so the key is reported with the file's value. */
const NOT_AN_INTEGER = 'not an integer';

/**
 * ajv's coercion is meant for ini's strings ("10" -> 10), but it also takes what no administrator means as a
 * number: ini's boolean `true` (-> 1: fillstate_limit = true made the fill guard act at 1 %), and JavaScript's
 * number forms `0x10`, `0b11`, `1e3`, `+5`. Only plain decimal integers reach ajv's coercion; anything else in an
 * integer key is made a value it refuses, reported as the file had it.
 */
function guardIntegers(value: Record<string, unknown>, schema: Schema): void {
  eachTypedKey(value, schema, (obj, key, sub) => {
    const v = obj[key];
    if (sub['type'] === 'integer' && !(typeof v === 'string' && DECIMAL.test(v.trim()))) obj[key] = NOT_AN_INTEGER;
  });
}

/** "/detector/1MF/minpause" -> section "detector.1MF", key "minpause". */
function locate(err: ErrorObject): { section: string; key: string } {
  const parts = err.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (err.keyword === 'additionalProperties') {
    parts.push(String((err.params as { additionalProperty: string }).additionalProperty));
  } else if (err.keyword === 'required') {
    parts.push(String((err.params as { missingProperty: string }).missingProperty));
  }
  const key = parts.pop() ?? '';
  return { section: parts.join('.'), key };
}

function valueAt(data: unknown, parts: string[]): unknown {
  return parts.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), data);
}

/** String patterns the schemas use, each with the words an administrator reads when a value misses it. */
export const Pattern = {
  absolutePath: '^/[^\\u0000-\\u001f\\u007f]*$',
  /**
   * Absolute, and no '..' component: what is below it is walked from it without following links (dir-fd.ts).
   * No control character either, in any path: grimseld takes no such path (common/paths.ts hasControl), so
   * files delivered below one would be taken off the detector and never copied.
   */
  absoluteBelow: '^/(?!(.*/)?\\.\\.(/|$))[^\\u0000-\\u001f\\u007f]*$',
  /** Relative, and no '..' component: stays below the directory it is joined to. */
  relativeBelow: '^(?!/)(?!(.*/)?\\.\\.(/|$))[^\\u0000-\\u001f\\u007f]*$',
  /** Absolute or relative, and no '..' component. */
  noParent: '^(?!(.*/)?\\.\\.(/|$))[^\\u0000-\\u001f\\u007f]*$',
  word: '^[^/\\s]+$',
  /** The ID of a `[name.ID]` section. */
  sectionId: '^[A-Za-z0-9_-]+$',
} as const;

/** Keys both daemons have: logging (S4). */
export const loggingProperties = {
  logfile: { type: 'string', pattern: Pattern.absolutePath, description: 'log file; unset = stdout (journal)' },
  logfile_max_number: { type: 'integer', minimum: 1, default: 10 },
  logfile_max_size: { type: 'integer', minimum: 1, default: 10485760, description: 'bytes' },
  log_level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'], default: 'info' },
} as const;

/** The optional Prometheus endpoint of a daemon, off unless an address is given. */
export function metricsProperties(defaultPort: number) {
  return {
    metrics_address: { type: 'string', description: 'listen address of the Prometheus endpoint (GET /metrics); unset = off' },
    metrics_port: { type: 'integer', minimum: 0, maximum: 65535, default: defaultPort },
  } as const;
}

/**
 * A listen address must be an IP address (S3): a name was looked up only when the listener started, and one that
 * did not resolve (or 256.1.1.1) failed the start with exit 1 and no key named. The problem, or undefined.
 */
export function listenAddressProblem(key: string, address: string | undefined): string | undefined {
  if (address === undefined || isIP(address) !== 0) return undefined;
  return `${TOP}, key '${key}': '${address}' is not an IP address (the address to listen on: 127.0.0.1, ::1, 0.0.0.0 for ` +
    "every IPv4 address, :: for every address, or one of this host's addresses)";
}

/** `[name.ID]` sections, each validated by `schema`; at least one. */
export function sectionsOf(schema: Record<string, unknown>) {
  return { type: 'object', minProperties: 1, additionalProperties: false, patternProperties: { [Pattern.sectionId]: schema } } as const;
}

const PATTERN_WORDS: Record<string, string> = {
  [Pattern.absolutePath]: 'must be an absolute path (starting with /) without control characters',
  [Pattern.relativeBelow]: "must be a relative path without '..' or control characters",
  [Pattern.absoluteBelow]: "must be an absolute path without '..' or control characters (the real path of every directory below it is checked)",
  [Pattern.noParent]: "must be a path without '..' or control characters",
  [Pattern.word]: 'must be one word without / or spaces',
};

/** Turns ajv errors into lines naming section, key, the problem and the offending value. */
export function describeErrors(errors: ErrorObject[], data: unknown, topKeys: ReadonlySet<string> = new Set()): string[] {
  return errors.flatMap((err) => {
    const { section, key } = locate(err);
    const parts = [...(section ? section.split('.') : []), key];
    const value = valueAt(data, parts);
    const where = `${section ? `section [${section}]` : TOP}, key '${key}'`;
    const got = value === undefined || typeof value === 'object' ? '' : `, got '${String(value)}'`;
    const params = err.params as Record<string, unknown>;
    switch (err.keyword) {
      case 'additionalProperties':
        if (value && typeof value === 'object' && !Array.isArray(value)) {
          return writtenSections(parts.join('.'), value as Record<string, unknown>)
            .map((name) => `section [${name}]: unknown section (if this is not a typo, it is not supported here)`);
        }
        // A top-level key written after a section header belongs to that section in INI (h12: usrdir below [detector.1MF]).
        if (section && topKeys.has(key)) return `${where}: not a key of a section: '${key}' is a top-level key, so it goes before the first [section]`;
        return `${where}: unknown key (if this is not a typo, it is not supported here)`;
      case 'required':
        return value === undefined && (key === 'detector' || key === 'storage') && !section
          ? `no [${key}.ID] section: at least one is required`
          : `${where}: missing, it is required`;
      case 'enum':
        return `${where}: must be one of ${(params['allowedValues'] as unknown[]).join(', ')}${got}`;
      case 'type':
        return `${where}: must be ${params['type'] === 'boolean' ? 'yes or no' : `${String(params['type'])}`}${got}`;
      case 'pattern':
        return `${where}: ${PATTERN_WORDS[String(params['pattern'])] ?? 'has an invalid form'}${got}`;
      default:
        return `${where}: ${err.message ?? 'is invalid'}${got}`;
    }
  });
}

export const TOP = 'top level (before any section)';

/**
 * The sections as written that ini nested below `name`: [detectors.a] is { detectors: { a: {…} } }, and naming
 * only the outer object said [detectors], a section nobody wrote. A name holding keys (or nothing) was written.
 */
function writtenSections(name: string, value: Record<string, unknown>): string[] {
  const entries = Object.entries(value);
  const nested = entries.filter(([, v]) => v !== null && typeof v === 'object' && !Array.isArray(v));
  const own = nested.length < entries.length || entries.length === 0 ? [name] : [];
  return [...own, ...nested.flatMap(([k, v]) => writtenSections(`${name}.${k}`, v as Record<string, unknown>))];
}

/**
 * What `ini.parse` would hide, found on the raw text with ini's own line grammar: a key given twice (ini keeps
 * the last), a section opened twice (ini merges the two, so a mistake in one is reported as the other's or
 * not at all), `__proto__` as a key or section (ini drops it without a word) and a section ID that is no
 * word (reported by the section name as written, not by the nested objects ini makes of its dots).
 * Each problem names the section as written, the key and the lines.
 */
export function scanIni(text: string): string[] {
  const problems: string[] = [];
  // ini's own expression: a header, or a key with an optional '= value'.
  const re = /^\[([^\]]*)\]\s*$|^([^=]+)(=(.*))?$/;
  const sections = new Map<string, number>();
  let section: string | undefined;
  let keys = new Map<string, number>();
  const where = () => (section === undefined ? TOP : `section [${section}]`);
  text.split(/\r\n|\n|\r/).forEach((line, i) => {
    const n = i + 1;
    if (!line || /^\s*[;#]/.test(line) || /^\s*$/.test(line)) return;
    const m = re.exec(line);
    if (!m) return;
    if (m[1] !== undefined) {
      section = ini.unsafe(m[1]);
      keys = new Map();
      const first = sections.get(section);
      if (first !== undefined) {
        problems.push(`section [${section}]: opened twice, at lines ${first} and ${n} (the two would be merged into one; ` +
          'write each section once, with its own ID)');
      } else sections.set(section, n);
      const dot = section.indexOf('.');
      const id = dot === -1 ? undefined : section.slice(dot + 1);
      if (section.split('.').includes('__proto__')) {
        problems.push(`section [${section}] (line ${n}): the name '__proto__' is reserved and cannot be used`);
      } else if (id !== undefined && !new RegExp(Pattern.sectionId).test(id)) {
        // ini splits the name at every dot into nested objects: [storage.i/../x] would be reported as [storage.i/].
        problems.push(`section [${section}] (line ${n}): the ID '${id}' may hold only letters, digits, '_' and '-'`);
      }
      return;
    }
    const key = ini.unsafe(m[2]!).replace(/\[\]$/, '');
    if (key === '__proto__') {
      problems.push(`${where()}, key '__proto__' (line ${n}): the name '__proto__' is reserved and cannot be used`);
      return;
    }
    const first = keys.get(key);
    if (first !== undefined) {
      problems.push(`${where()}, key '${key}': given twice, at lines ${first} and ${n} (only one value can count; remove the other)`);
    } else keys.set(key, n);
    const cut = commentInside(m[4] ?? '');
    if (cut) {
      problems.push(`${where()}, key '${key}' (line ${n}): '${cut.mark}' starts a comment, so the value would be read as '${cut.read}'; ` +
        `if it belongs to the value, write it as '\\${cut.mark}' or quote the whole value; before a comment, put a space`);
    }
  });
  return problems;
}

/**
 * A `#` or `;` inside an unquoted value, right after a character that is not white space (`/data/run#1`): ini
 * ends the value there without a word, and a path would silently become a shorter one. One after white space
 * is a comment, as written (`port = 873 ; rsync`).
 */
function commentInside(value: string): { mark: string; read: string } | undefined {
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith("'")) return undefined; // quoted: ini takes it whole
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\') {
      i++; // an escaped character
      continue;
    }
    if (c !== '#' && c !== ';') continue;
    if (i === 0 || /\s/.test(v[i - 1]!)) return undefined; // a comment
    return { mark: c, read: ini.unsafe(v.slice(0, i)) };
  }
  return undefined;
}

/**
 * Parses INI text and validates it; returns the typed configuration with defaults filled in,
 * or throws ConfigError naming file, section, key and the problem.
 */
export function parseConfig<T>(file: string, text: string, validate: ValidateFunction<T>): T {
  // Before ini.parse: what it merges or drops cannot be seen in its result.
  const hidden = scanIni(text);
  if (hidden.length) throw new ConfigError(file, hidden);
  // ini builds null-prototype objects; ajv and the daemons want plain ones.
  const raw = JSON.parse(JSON.stringify(ini.parse(text))) as Record<string, unknown>;
  normaliseBooleans(raw, validate.schema as Schema);
  const original = JSON.parse(JSON.stringify(raw)) as unknown; // ajv coerces in place; report what the file said
  guardIntegers(raw, validate.schema as Schema);
  const topKeys = new Set(Object.keys((validate.schema as { properties?: Record<string, unknown> }).properties ?? {}));
  if (!validate(raw)) throw new ConfigError(file, describeErrors(validate.errors ?? [], original, topKeys));
  return raw as T;
}

export function loadConfig<T>(file: string, validate: ValidateFunction<T>): T {
  return parseConfig(file, readConfigText(file), validate);
}

/**
 * The bytes of a configuration file, which must be a regular file (a link to one is followed): a FIFO would block
 * `--check`, a start or `ppuctl config check` until someone writes to it, and /dev/zero would be read without end.
 * Checked with stat before opening (a device is not even opened) and with fstat on the descriptor, opened
 * O_NONBLOCK, so a file swapped in between cannot block either. Every problem is a ConfigError naming the file.
 */
export function readConfigBytes(file: string): Buffer {
  let fd: number | undefined;
  try {
    const early = statSync(file);
    if (!early.isFile()) throw new ConfigError(file, [`cannot read the file: it is ${fileKind(early)}, not a regular file`]);
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const late = fstatSync(fd);
    if (!late.isFile()) throw new ConfigError(file, [`cannot read the file: it is ${fileKind(late)}, not a regular file`]);
    return readFileSync(fd);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(file, [`cannot read the file: ${(e as Error).message}`]);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The text of a configuration file (readConfigBytes), which must be UTF-8: decoding would turn a Latin-1 'Ä' in a
 * path into U+FFFD, and the daemon would use a path nobody wrote. The lines that are not are named.
 */
export function readConfigText(file: string): string {
  const bytes = readConfigBytes(file);
  const text = bytes.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(bytes)) return text;
  throw new ConfigError(file, splitLines(bytes).flatMap((line, i) => {
    const bad = firstInvalidByte(line);
    return bad === undefined ? [] : [`line ${i + 1}: not valid UTF-8 (the byte 0x${bad.toString(16)}); save the file as UTF-8`];
  }));
}

/** The lines of `bytes` (LF or CRLF), each without its line end. */
export function splitLines(bytes: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  for (let start = 0; start <= bytes.length;) {
    let end = bytes.indexOf(0x0a, start);
    if (end === -1) end = bytes.length;
    lines.push(bytes.subarray(start, end > start && bytes[end - 1] === 0x0d ? end - 1 : end));
    start = end + 1;
  }
  return lines;
}

/** The first byte of `bytes` that is not part of valid UTF-8, or undefined when all of it is. */
export function firstInvalidByte(bytes: Buffer): number | undefined {
  const i = invalidUtf8At(bytes);
  return i === -1 ? undefined : bytes[i];
}

/** Where the first byte of `bytes` that is not part of valid UTF-8 is; -1 when all of it is. */
export function invalidUtf8At(bytes: Buffer): number {
  if (Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes)) return -1;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! < 0x80) continue;
    const len = bytes[i]! >= 0xf0 ? 4 : bytes[i]! >= 0xe0 ? 3 : bytes[i]! >= 0xc0 ? 2 : 1;
    const seq = bytes.subarray(i, i + len);
    // A sequence that decodes to something else than itself (U+FFFD, two of them) is not UTF-8.
    if (len === 1 || !Buffer.from(seq.toString('utf8'), 'utf8').equals(seq)) return i;
    i += len - 1;
  }
  return -1;
}

/** What a file is, for messages ('not a regular file' for what has no name here). */
export function fileKind(st: Stats): string {
  return st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link'
    : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() ? 'a character device'
      : st.isBlockDevice() ? 'a block device' : 'not a regular file';
}

/** Loads a daemon's config or exits with EX_CONFIG (78) and the problems on stderr: the daemon never starts half-configured. */
export function loadConfigOrExit<T>(daemon: string, file: string, load: (file: string) => T): T {
  return configOrExit(daemon, () => load(file));
}

/** Runs `fn`; a ConfigError it throws ends the daemon with EX_CONFIG (78) and the problems on stderr. */
export function configOrExit<T>(daemon: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Each line as an error to the journal (`journalctl -p err` shows it), plain in a terminal.
    const err = isJournalStream(2) ? '<3>' : '';
    process.stderr.write(`${daemon}: ${e.message}`.split('\n').map((l) => `${err}${l}\n`).join(''));
    process.exit(78);
  }
}

/**
 * Creates a directory a top-level key names (state_dir) unless it exists. One that cannot be (the path or a
 * parent is a file, no permission) is a configuration error naming the key, not an "EEXIST ... mkdir" from
 * deep inside the start (exit 1, no key). `--check` and ppuctl make nothing: they ask checkDirectory.
 */
export function prepareDirectory(file: string, key: string, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    return;
  } catch (e) {
    checkDirectory(file, key, dir);
    throw new ConfigError(file, [`${TOP}, key '${key}': cannot create '${dir}': ${(e as Error).message}`]);
  }
}

/**
 * What `--check` can tell of directory `dir` without making it: a configuration error naming the first component on
 * the way that exists and is no directory (the one the administrator must fix), as the start would say.
 */
export function checkDirectory(file: string, key: string, dir: string): void {
  const where = `${TOP}, key '${key}'`;
  const parts = path.resolve(dir).split('/').slice(1);
  for (let i = 1; i <= parts.length; i++) {
    const cur = `/${parts.slice(0, i).join('/')}`;
    let st: Stats;
    try { st = lstatSync(cur); } catch { break; }
    if (st.isDirectory() || (st.isSymbolicLink() && isDirectory(cur))) continue;
    throw new ConfigError(file, [cur === path.resolve(dir)
      ? `${where}: '${dir}' is ${fileKind(st)}, not a directory`
      : `${where}: '${dir}' cannot be a directory: '${cur}' is ${fileKind(st)}`]);
  }
}

/**
 * `p` as a real path as far as it exists: the real path of its nearest part that exists, with the rest as written
 * (a directory a start makes later); `p` itself where not even that can be resolved. For the checks that compare
 * configured paths as the machine has them (a log file's directory, a storage's target and mount point).
 */
export function realPathAsFar(p: string): string {
  const rest: string[] = [];
  for (let dir = p; ; dir = path.dirname(dir)) {
    try {
      return path.join(realpathSync.native(dir), ...rest);
    } catch {
      if (dir === '/') return p;
      rest.unshift(path.basename(dir));
    }
  }
}

/** Whether `p` leads to a directory, following links. */
function isDirectory(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

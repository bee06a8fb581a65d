#!/usr/bin/env node
// ppuctl: the operator's command for daily work (S7). Plain-word errors and exit codes scripts can trust:
// 0 ok, 1 the daemon refused or failed, 2 bad usage, 3 daemon not reachable.
import { parseArgs } from 'node:util';
import * as dbus from 'dbus-next';
import { BusAddressError, BusEnded, busFailure, busLost, CallTimeout, callMethod, connectSystemBus, watchNameOwner, within } from '../dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH, GRIMSEL_IFACE, GRIMSEL_NAME, GRIMSEL_PATH } from '../dbus/names.js';
import { checkDirectory, ConfigError, readConfigBytes, readConfigText } from '../common/config-file.js';
import { checkFifo } from '../grimseld/fifo-place.js';
import { checkFurkadTargets, checkKeyFiles, loadFurkadConfig, usrdirNote } from '../furkad/config.js';
import { loadGrimseldConfig } from '../grimseld/config.js';
import { checkAgentRoot, loadAgentConfig, loadAgentKey } from '../agent/config.js';
import { visible } from './terminal-text.js';
import { detectorRecord, formatDetectorTable, formatStatusTable, verifiedKey, type DetectorRecord, type StatusRow, type VerifiedCounts } from './status-table.js';
import type { StatusVerifiedRow, VerifiedRow } from '../dbus/grimsel-interface.js';
import type { DetectorRow } from '../dbus/furka-interface.js';
import { importVendorConfig } from './vendor-import.js';
import { checkLogfile, logfileNote } from '../common/logfile-config.js';
import { checkLicensePublicKey } from '../common/license.js';
import { licenseCommand } from './license-command.js';
import { verifyCommand, VerifyUsage } from './verify-command.js';
import { statusRecord } from '../grimseld/status-server.js';
import { unseen } from './unseen-hint.js';
import { writeNew } from './write-new.js';
import * as path from 'node:path';
import * as os from 'node:os';
import { monotonicMs } from '../common/monotonic.js';

const USAGE = `usage: ppuctl COMMAND [options]

  status [-n N] [--json] [--watch [--interval S]]
                                           shifts x storages: pending, copied, failed, verified (newest first),
                                           furkad's detectors, license, next scheduled shift;
                                           --watch refreshes every S seconds (default 2) until Ctrl-C
  shift start -u UID:GID [-d ID:SOURCE:TARGET ...]
                                           start a user shift (empty SOURCE/TARGET = configured default,
                                           no -d = every configured detector)
  shift show [--json]                      the shift furkad serves now
  add FILE...                              copy operator files (mark what to replicate with /./)
  messages [-n COUNT] [--json]             follow grimseld's messages (code, short, long) until Ctrl-C
                                           or COUNT messages
  config check FILE... [--json]            validate furkad.conf / grimseld.conf / furka-agent.conf
  config import VENDOR_FILE [-o OUT] [--json]
                                           convert furka_dectris.conf / grimsel_dectris.conf to our INI
                                           (stdout or OUT); lines it cannot map are reported, exit 1
  verify PATH... [--json]                  re-read stored images (files or directories, links not followed)
                                           and compare each with the checksum recorded on it; exit 0 all
                                           good, 1 a mismatch, an unreadable file or checksum, 2 bad usage
  license check [FILE] [--furkad-config C] [--grimseld-config C]
                                           verify a license key here as the daemons do (their licensekey
                                           and license_public_key from /etc/ppu/furkad.conf and
                                           grimseld.conf; without FILE each daemon's own key, a line
                                           each); exit 0 valid, 1 invalid with the reason
  license addresses                        permanent hardware addresses a key can be bound to here, each
                                           with its interface; those left out follow as '#' lines, why
  license issue --private-key PEM --mac ADDRESS --holder NAME [-o OUT]
                                           sign a key (the issuer's side)

The bus is the system bus, or the one DBUS_SYSTEM_BUS_ADDRESS names.
`;

class UsageError extends Error {}

function usage(msg: string): never {
  throw new UsageError(msg);
}

/** The largest user or group id: 2^32 - 2 ((uid_t)-1 means "none"). */
const MAX_ID = 2 ** 32 - 2;

function parseUidGid(s: string | undefined): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(s ?? '');
  if (!m) usage(s === undefined ? 'shift start needs -u UID:GID, the new shift\'s owner (e.g. -u 500:501)' : `-u wants UID:GID (numbers), got '${s}'`);
  const ids = [Number(m[1]), Number(m[2])] as [number, number];
  // D-Bus carries them as uint32, and 4294967295 is (uid_t)-1, no one's id: refused here, named, not by the marshaller.
  if (ids.some((id) => id > MAX_ID)) usage(`-u wants UID:GID, each 0 to ${MAX_ID}, got '${s}'`);
  return ids;
}

function parseDetector(s: string): [string, string, string] {
  const [id, source = '', ...rest] = s.split(':');
  if (!id) usage(`-d wants ID:SOURCE:TARGET, got '${s}'`);
  return [id, source, rest.join(':')];
}

/**
 * How long a daemon gets to answer one call. dbus-next waits for a reply for ever and a bus need not time out:
 * a daemon stopped (SIGSTOP), hung or swapped out would hold ppuctl, and a script calling it, without end.
 * Reading status, introspecting and AddFile are answered at once by a daemon that runs.
 */
const ANSWER_MS = 5_000;
/**
 * StartShift drains the running shift first: 10 s beyond the run in flight, and about 20 s at most when a
 * detector server freezes mid-stream (README, "A shift change never waits on a file it cannot place").
 */
const START_SHIFT_MS = 30_000;

/** A daemon that did not answer in time: stopped, hung or overloaded; ppuctl gives up with exit 3. */
class NoAnswer extends Error {
  constructor(readonly daemon: string, ms: number, after = '') {
    super(`${daemon} did not answer within ${ms / 1000} s (stopped, hung or overloaded?)${after}`);
  }
}

/** Which daemon owns a bus name, for messages. */
function daemonOf(name: string): string {
  return name === FURKA_NAME ? 'furkad' : name === GRIMSEL_NAME ? 'grimseld' : 'the bus';
}

/**
 * Aborted once the command has its outcome (the bus failed, say): a call still waiting then ends at once, and the
 * command with it, rather than printing a status after the error and holding the process for its timeout.
 */
const ended = new AbortController();

/** `work` (a call to `daemon`), or NoAnswer after `ms`. */
async function answer<T>(daemon: string, ms: number, work: Promise<T>, after?: string): Promise<T> {
  try {
    return await within(work, ms, daemon, ended.signal);
  } catch (e) {
    if (e instanceof CallTimeout) throw new NoAnswer(daemon, ms, after);
    throw e;
  }
}

/** A daemon's interface; getProxyObject introspects, which the daemon itself answers (or not). */
async function iface(bus: dbus.MessageBus, name: string, objPath: string, ifaceName: string): Promise<dbus.ClientInterface> {
  return (await answer(daemonOf(name), ANSWER_MS, bus.getProxyObject(name, objPath))).getInterface(ifaceName);
}

/** callMethod on `daemon`'s interface, given up after `ms`. */
function ask(daemon: string, i: dbus.ClientInterface, member: string, args: unknown[], ms = ANSWER_MS, after?: string): Promise<unknown> {
  return answer(daemon, ms, callMethod(i, member, ...args), after);
}

/**
 * `-n -1` as `-n-1`: parseArgs takes a value that starts with '-' for an option, and `-n -1` (all shifts, as
 * QueryStatus has it) is what an operator types.
 */
function negativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (/^-[nu]$/.test(a) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** The largest count D-Bus takes (int32). */
const INT32_MAX = 2 ** 31 - 1;

/** `parse()` (parseArgs), its refusals (an unknown option, a missing value) being bad usage: exit 2, never 1 (I4: a mismatch). */
function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException).code === 'string' && (e as NodeJS.ErrnoException).code!.startsWith('ERR_PARSE_ARGS_')) usage((e as Error).message);
    throw e;
  }
}

/**
 * Each command's options and how many words may follow it. A word or an option it does not take is bad usage,
 * never ignored: `shift start -u 500:501 1MF` meant "1MF only" and would have started every detector.
 */
const ACCEPTS: Record<string, { options: string[]; words: number }> = {
  'status': { options: ['n', 'json', 'watch', 'interval'], words: 0 },
  'messages': { options: ['n', 'json'], words: 0 },
  'shift start': { options: ['u', 'd'], words: 0 },
  'shift show': { options: ['json'], words: 0 },
  'add': { options: [], words: Infinity },
  'config check': { options: ['json'], words: Infinity },
  'config import': { options: ['o', 'json'], words: 1 },
  'verify': { options: ['json'], words: Infinity },
  'license check': { options: ['furkad-config', 'grimseld-config'], words: 1 },
  'license addresses': { options: [], words: 0 },
  'license issue': { options: ['private-key', 'mac', 'holder', 'o'], words: 0 },
};

/** How an option is written on the command line, for messages. */
function optionName(key: string): string {
  return key.length === 1 ? `-${key}` : `--${key}`;
}

/** Refuses what `positionals` and `values` hold beyond what their command takes (ACCEPTS). */
function onlyAccepted(positionals: string[], values: Record<string, unknown>): void {
  const [cmd = '', sub] = positionals;
  const key = ACCEPTS[cmd] ? cmd : `${cmd} ${sub ?? ''}`;
  const accepts = ACCEPTS[key];
  if (!accepts) return; // an unknown command or subcommand: said where it is dispatched
  const words = positionals.slice(key.split(' ').length);
  if (words.length > accepts.words) {
    usage(`${key}: unexpected argument '${words[accepts.words]}'${key === 'shift start' ? ' (detectors are chosen with -d ID:SOURCE:TARGET)' : ''}`);
  }
  const stray = Object.keys(values).find((k) => values[k] !== undefined && k !== 'help' && !accepts.options.includes(k));
  if (stray) usage(`${key}: option ${optionName(stray)} does not apply here`);
}

/** An option that takes one value given more than once is bad usage: `-u 500:501 -u 600:600` would start 600:600 unsaid. */
function givenOnce(tokens: Array<{ kind: string; name?: string }>, multiple: (name: string) => boolean): void {
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== 'option' || t.name === undefined || multiple(t.name)) continue;
    if (seen.has(t.name)) usage(`option ${optionName(t.name)} given more than once`);
    seen.add(t.name);
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals, tokens } = asUsage(() => parseArgs({
    args: negativeValues(argv),
    allowPositionals: true,
    tokens: true,
    options: {
      n: { type: 'string', short: 'n' },
      json: { type: 'boolean' },
      u: { type: 'string', short: 'u' },
      d: { type: 'string', short: 'd', multiple: true },
      watch: { type: 'boolean', short: 'w' },
      interval: { type: 'string' },
      o: { type: 'string', short: 'o' },
      'private-key': { type: 'string' },
      mac: { type: 'string' },
      holder: { type: 'string' },
      'furkad-config': { type: 'string' },
      'grimseld-config': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
  givenOnce(tokens, (name) => name === 'd');
  const [cmd, sub, ...rest] = positionals;
  if (values.help || !cmd) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  onlyAccepted(positionals, values);
  if (cmd === 'license') {
    return licenseCommand(sub, rest, values) ?? usage('license check [FILE] [--furkad-config C] [--grimseld-config C] | license addresses | license issue --private-key PEM --mac ADDRESS --holder NAME [-o OUT]');
  }
  if (cmd === 'verify') {
    const paths = [sub, ...rest].filter((p): p is string => !!p);
    if (!paths.length) usage('verify PATH...');
    try {
      return await verifyCommand(paths, !!values.json);
    } catch (e) {
      if (e instanceof VerifyUsage) usage(e.message);
      throw e;
    }
  }
  if (cmd === 'config') {
    if (sub === 'check' && rest.length > 0) return configCheck(rest, !!values.json);
    if (sub === 'import' && rest.length === 1) return configImport(rest[0]!, values.o, !!values.json);
    usage('config check FILE... | config import VENDOR_FILE [-o OUT]');
  }

  const action = plan(cmd, sub, rest, values);
  const bus = connectSystemBus();
  try {
    return await Promise.race([action(bus), busFailure(bus)]).catch((e: Error) => { throw refusedAtConnect(bus, e); });
  } finally {
    ended.abort(new Error('ppuctl is ending'));
    bus.disconnect();
  }
}

/**
 * The bus closed the socket before it gave ppuctl a name (before the Hello answer): the bus daemon refused the
 * connection, most often at authentication. dbus-daemon refuses a uid it cannot look up (no passwd entry), and
 * dbus-next then reports only the failed write ("write EPIPE").
 */
export class BusRefused extends Error {}

function refusedAtConnect(bus: dbus.MessageBus, e: Error): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if ((bus as unknown as { name?: string | null }).name || (code !== 'EPIPE' && code !== 'ECONNRESET')) return e;
  const uid = process.getuid?.();
  let user = '';
  try {
    if (uid !== undefined) user = os.userInfo().username;
  } catch { /* no passwd entry: the likeliest reason */ }
  return new BusRefused(`the bus refused the connection at authentication (${e.message})`
    + (uid !== undefined && !user ? `: uid ${uid} has no user entry (passwd), and dbus-daemon refuses such a uid` : ''));
}

/**
 * Which daemon a config file is for: by its name first (furkad.conf, grimseld.conf, furka-agent.conf and names
 * holding them), as the daemon reading it is what a name says: a furkad.conf with a stray [storage.x] section was
 * checked as a grimseld.conf, said with problems furkad --check never gives. A name that says nothing (g3.conf)
 * is decided by the sections, [storage.*] grimseld's, [detector.*] furkad's (a file holding both is checked as
 * grimseld's), and without either by the top-level keys only furka-agent takes (root, allow, ...).
 */
function configKind(file: string): 'grimseld' | 'furkad' | 'furka-agent' {
  const name = path.basename(file);
  if (/grimsel/.test(name)) return 'grimseld';
  if (/agent/.test(name)) return 'furka-agent';
  if (/furka/.test(name)) return 'furkad';
  let text = '';
  try {
    text = readConfigText(file);
  } catch { /* the loader names the unreadable file (a FIFO, say, which readFileSync would wait on for ever) */ }
  if (/^\s*\[\s*storage\./m.test(text)) return 'grimseld';
  if (/^\s*\[\s*detector\./m.test(text)) return 'furkad';
  // No section of either: keys only furka-agent takes, above any section, make it the agent's (a detector.conf).
  const top = text.split(/^\s*\[/m)[0]!;
  // Commented out too, as the shipped furka-agent.conf has them all: a copy of it is still the agent's.
  if (/^\s*(root|address|port|allow|key_file|send_timeout)\s*=/m.test(top) || /^\s*[#;]\s*(root|allow|key_file|send_timeout)\s*=/m.test(top)) return 'furka-agent';
  return 'furkad';
}

/** One file as its daemon's --check takes it, with what that prints after 'valid'; a ConfigError names the problems. */
function checkOne(file: string, kind: 'grimseld' | 'furkad' | 'furka-agent'): { summary: string; notes: Array<string | undefined> } {
  const count = (n: number, noun: string) => `${n} ${n === 1 ? noun : `${noun}s`}`;
  if (kind === 'furka-agent') {
    // In furka-agent --check's order: the key, the root, the log directory.
    const c = loadAgentConfig(file);
    loadAgentKey(file, c);
    checkAgentRoot(file, c);
    checkLogfile(file, c);
    return { summary: `root ${c.root}, port ${c.port}, key ${c.key_file}`, notes: [logfileNote(kind, c)] };
  }
  if (kind === 'grimseld') {
    const c = loadGrimseldConfig(file);
    checkLogfile(file, c);
    checkLicensePublicKey(file, c);
    checkDirectory(file, 'state_dir', c.state_dir);
    checkFifo(file, 'fifo', c.fifo);
    return { summary: count(Object.keys(c.storage).length, 'storage'), notes: [logfileNote(kind, c)] };
  }
  // On this machine, as furkad --check, in its order: a key file missing or open to others (its detectors would
  // wait for it), a log directory it could not write, a target through a link to / (either stops its start).
  const c = loadFurkadConfig(file);
  checkKeyFiles(file, c);
  checkLogfile(file, c);
  checkFurkadTargets(file, c);
  checkLicensePublicKey(file, c);
  checkDirectory(file, 'state_dir', c.state_dir);
  return { summary: count(Object.keys(c.detector).length, 'detector'), notes: [logfileNote(kind, c), usrdirNote(c)] };
}

function configCheck(files: string[], json: boolean): number {
  const results = files.map((file) => {
    try {
      const { summary, notes } = checkOne(file, configKind(file));
      return { file, valid: true, summary, problems: [] as string[], notes: notes.filter((n): n is string => n !== undefined) };
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return { file, valid: false, summary: e.message, problems: e.problems, notes: [] as string[] };
    }
  });
  process.stdout.write(json
    ? `${JSON.stringify(results.map(({ file, valid, problems, notes }) => ({ file, valid, problems, notes })), null, 2)}\n`
    : results.map((r) => (r.valid ? `${r.file}: valid (${r.summary})\n` : `${r.summary}\n`)).join(''));
  if (!json) process.stderr.write(results.flatMap((r) => r.notes.map((n) => `ppuctl: ${r.file}: ${n}\n`)).join(''));
  return results.every((r) => r.valid) ? 0 : 1;
}

function configImport(file: string, out: string | undefined, json: boolean): number {
  let bytes: Buffer;
  try {
    // Bytes, not text: a line that is not UTF-8 is refused by number instead of decoded into another path.
    bytes = readConfigBytes(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`ppuctl: ${file}: ${e.problems[0]!.replace(/ENOENT: .*/, 'it does not exist')}\n`);
    return 1;
  }
  const r = importVendorConfig(file, bytes);
  // Never overwrite: the target is usually a live /etc/ppu file. One that exists is a refusal (exit 1, one line), not
  // bad usage: the README's own example named /etc/ppu/furkad.conf, which the package ships.
  if (out !== undefined) writeNew(out, r.ini, 0o644);
  if (json) {
    process.stdout.write(`${JSON.stringify({ kind: r.kind, mapped: r.mapped, problems: r.problems, notes: r.notes,
      ...(out === undefined ? { ini: r.ini } : { written: out }) }, null, 2)}\n`);
  } else {
    if (out === undefined) process.stdout.write(r.ini);
    const head = `ppuctl: ${file}: ${r.mapped} settings converted to ${r.kind}.conf${out === undefined ? '' : ` (${out})`}`;
    const lines = [r.problems.length ? `${head}; ${r.problems.length} problems:` : `${head}, nothing left out`, ...r.problems.map((p) => `  ${p}`)];
    // Values changed to mean what the vendor's meant: carried over, but worth a look.
    if (r.notes.length) lines.push(`${r.notes.length} changed on the way:`, ...r.notes.map((n) => `  ${n}`));
    process.stderr.write(`${lines.join('\n')}\n`);
  }
  return r.problems.length ? 1 : 0;
}

/** Resolves on Ctrl-C or SIGTERM: following and watching end normally then. */
function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function unreachable(e: unknown): boolean {
  return e instanceof dbus.DBusError && /ServiceUnknown|NameHasNoOwner|NoReply|Disconnected/.test(e.type);
}

/** How a daemon that cannot be asked now is shown: not there, or there and not answering. */
function absence(daemon: string, e: unknown): string {
  return e instanceof NoAnswer ? e.message : `${daemon} is not running (or not on this bus)`;
}

/** What furkad tells about itself; every part is optional (furkad not running, or older without it). */
interface FurkadView {
  /** furkad owns its name but did not answer in time (NoAnswer's words): nothing else is known. */
  silent?: string;
  detectors?: DetectorRecord[];
  license?: { licensed: boolean; reason: string };
  nextShift?: Date;
  /** Files placed and not yet taken by grimseld, and why the last hand-over failed ('' = none); absent from an older furkad. */
  handover?: { awaiting: number; error: string };
}

/**
 * furkad's properties in one call; undefined when furkad is not there, `silent` when it does not answer:
 * status is grimseld's first.
 */
async function furkadView(bus: dbus.MessageBus): Promise<FurkadView | undefined> {
  let all: Record<string, dbus.Variant>;
  try {
    const props = await iface(bus, FURKA_NAME, FURKA_PATH, 'org.freedesktop.DBus.Properties');
    all = (await ask('furkad', props, 'GetAll', [FURKA_IFACE])) as Record<string, dbus.Variant>;
  } catch (e) {
    if (e instanceof NoAnswer) return { silent: e.message };
    if (e instanceof dbus.DBusError) return undefined;
    throw e;
  }
  const view: FurkadView = {};
  const dets = all['Detectors']?.value as DetectorRow[] | undefined;
  if (dets) view.detectors = dets.map(detectorRecord);
  const lic = all['License']?.value as [boolean, string] | undefined;
  if (lic) view.license = { licensed: lic[0], reason: lic[1] };
  const next = all['NextShift']?.value as bigint | undefined;
  if (next) view.nextShift = new Date(Number(next / 1000n));
  const handover = all['Handover']?.value as [bigint, string] | undefined;
  if (handover) view.handover = { awaiting: Number(handover[0]), error: handover[1] };
  return view;
}

/** The furkad part of `status`: detectors, license, next scheduled shift; `rates` in MB/s when watching. */
function formatFurkad(view: FurkadView | undefined, rates?: Map<string, number>): string {
  if (!view) return '\nfurkad: not running (or not on this bus)\n';
  if (view.silent) return `\nfurkad: ${visible(view.silent.replace(/^furkad /, ''))}\n`;
  const parts: string[] = [];
  if (view.detectors) parts.push(formatDetectorTable(view.detectors, rates));
  if (view.license) parts.push(`license: ${view.license.licensed ? 'valid' : 'none (one transfer at a time)'}${view.license.reason ? ` - ${visible(view.license.reason)}` : ''}\n`);
  if (view.nextShift) parts.push(`next scheduled shift change: ${view.nextShift.toLocaleString()}\n`);
  // Placed files grimseld has not taken (yet): its counts above do not have them.
  const h = view.handover;
  if (h && (h.awaiting > 0 || h.error)) {
    parts.push(`waiting to be handed over to grimseld (not in its counts): ${h.awaiting} ${h.awaiting === 1 ? 'file' : 'files'}` +
      `${h.error ? `; the last hand-over failed: ${visible(h.error)}` : ''}\n`);
  }
  return parts.length ? `\n${parts.join('\n')}` : '';
}

/**
 * `status` as JSON: `status` the rows of QueryStatus as the TCP protocol spells them; `verified` the copies
 * checked against the file's checksum (I2) per shift and storage, in the same order (absent from a grimseld
 * without QueryVerified); `furkad` its view.
 */
function statusJson(s: GrimselStatus, view: FurkadView | undefined): Record<string, unknown> {
  return {
    status: s.rows.map(statusRecord),
    ...(s.license ? { grimseld: { license: s.license } } : {}),
    ...(s.verified ? { verified: s.rows.map((r) => ({ usertime: Number(r[0]), uid: r[1], gid: r[2], storage: r[3], verified: Number(s.verified!.get(verifiedKey(r[0], r[3])) ?? 0n) })) } : {}),
    furkad: view?.silent ? { error: view.silent } : view ? { ...view, nextShift: view.nextShift?.toISOString() ?? null } : null,
  };
}

interface GrimselStatus {
  rows: StatusRow[];
  verified: VerifiedCounts | undefined;
  /** grimseld's own license (G14): without one every storage has one writer; absent from a grimseld without it. */
  license?: { licensed: boolean; reason: string } | undefined;
}

/**
 * The counts and the verified copies of one moment: QueryStatusVerified, one call (I2, G9). A grimseld without it
 * is asked QueryVerified first and QueryStatus after it, so that each row's copied count, read later, is at least
 * its verified one (copies only ever become verified after they are copied); asked the other way round, a row
 * showed more verified copies than copied ones during a stream (found by a tester). One that predates I2 has
 * neither: no column then.
 */
async function queryStatus(bus: dbus.MessageBus, n: number): Promise<GrimselStatus> {
  const grimsel = await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, GRIMSEL_IFACE);
  const has = (member: string) => typeof (grimsel as unknown as Record<string, unknown>)[member] === 'function';
  const byRow = (verified: VerifiedRow[]): VerifiedCounts => new Map(verified.map(([u, , , storage, v]) => [verifiedKey(u, storage), v]));
  if (has('QueryStatusVerified')) {
    const both = (await ask('grimseld', grimsel, 'QueryStatusVerified', [n])) as StatusVerifiedRow[];
    const license = await grimselLicense(bus);
    return { rows: both.map((r) => r.slice(0, 7) as StatusRow), verified: byRow(both.map(([u, uid, gid, storage, , , , v]) => [u, uid, gid, storage, v])), license };
  }
  const verified = has('QueryVerified') ? (await ask('grimseld', grimsel, 'QueryVerified', [n])) as VerifiedRow[] : undefined;
  const rows = (await ask('grimseld', grimsel, 'QueryStatus', [n])) as StatusRow[];
  const license = await grimselLicense(bus);
  return { rows, verified: verified && byRow(verified), license };
}

/** grimseld's License property; undefined from a grimseld without it. */
async function grimselLicense(bus: dbus.MessageBus): Promise<GrimselStatus['license']> {
  const props = await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, 'org.freedesktop.DBus.Properties');
  try {
    const v = (await ask('grimseld', props, 'Get', [GRIMSEL_IFACE, 'License'])) as dbus.Variant<[boolean, string]>;
    return { licensed: v.value[0], reason: v.value[1] };
  } catch (e) {
    if (e instanceof dbus.DBusError) return undefined;
    throw e;
  }
}

/** grimseld's license line of `status`, after its table. */
function formatGrimselLicense(s: GrimselStatus): string {
  if (!s.license) return '';
  return `
grimseld license: ${s.license.licensed ? 'valid' : 'none (one writer per storage)'}${s.license.reason ? ` - ${visible(s.license.reason)}` : ''}
`;
}

/** Redraws the status every `intervalS` until interrupted; a vanished grimseld is shown, not fatal. */
async function watchStatus(bus: dbus.MessageBus, n: number, intervalS: number, json: boolean): Promise<number> {
  const stop = interrupted();
  let stopped = false;
  void stop.then(() => { stopped = true; });
  const tty = process.stdout.isTTY === true;
  let last: { at: number; bytes: Map<string, number> } | undefined;
  while (!stopped) {
    let body: string;
    const shownAt = new Date(); // wall clock: the time of day each refresh shows
    try {
      const status = await queryStatus(bus, n);
      const view = await furkadView(bus);
      // MB/s of each detector since the previous refresh (a new shift restarts its byte count: no rate then).
      const now = monotonicMs();
      const bytes = new Map((view?.detectors ?? []).map((d) => [d.id, d.bytes]));
      const rates = last && new Map([...bytes].flatMap(([id, b]) => {
        const before = last!.bytes.get(id);
        return before === undefined || b < before ? [] : [[id, (b - before) / 1e6 / ((now - last!.at) / 1000)] as [string, number]];
      }));
      last = { at: now, bytes };
      body = json ? `${JSON.stringify({ time: shownAt.toISOString(), ...statusJson(status, view) })}\n`
        : formatStatusTable(status.rows, { progress: true, verified: status.verified }) + formatGrimselLicense(status) + formatFurkad(view, rates ?? new Map());
    } catch (e) {
      if (!unreachable(e) && !(e instanceof NoAnswer)) throw e;
      body = json ? `${JSON.stringify({ time: shownAt.toISOString(), error: absence('grimseld', e) })}\n` : `${absence('grimseld', e)}; retrying\n`;
    }
    const head = json ? '' : `ppuctl status, ${shownAt.toLocaleTimeString()} (every ${intervalS} s, Ctrl-C ends)\n\n`;
    process.stdout.write(tty && !json ? `\x1b[H\x1b[2J${head}${body}` : `${head}${body}${json ? '' : '\n'}`);
    await Promise.race([stop, sleep(intervalS * 1000)]);
  }
  return 0;
}

/**
 * Prints grimseld's Message signals (G10) until interrupted or `count` have arrived. The match rule names the
 * bus name, not the connection, so it goes on across grimseld restarts (a proxy's subscription would not).
 */
async function followMessages(bus: dbus.MessageBus, count: number, json: boolean): Promise<number> {
  await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, GRIMSEL_IFACE); // not running: exit 3 now, not silence
  const daemon = await iface(bus, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus');
  let seen = 0;
  // Only grimseld's signals: the match rule keeps others' broadcasts out, but any local peer may send a signal
  // to this connection by its unique name, and a forged DISK_OVERFLOW must not reach an operator's script.
  let owner = '';
  let ownerChanged = false;
  const done = new Promise<number>((resolve, reject) => {
    // The bus gone (its daemon restarted or killed): no message can come any more, said and exit 3, not a quiet 0.
    void busLost(bus).then(() => reject(new BusEnded()));
    bus.on('message', (msg: dbus.Message) => {
      if (msg.type !== dbus.MessageType.SIGNAL || !owner || msg.sender !== owner) return;
      if (msg.interface === GRIMSEL_IFACE && msg.member === 'Message' && msg.path === GRIMSEL_PATH) {
        const [code, short, long] = msg.body as [string, string, string];
        const time = new Date(); // wall clock: when the message came
        process.stdout.write(json
          ? `${JSON.stringify({ time: time.toISOString(), errcode: code, shortMessage: short, longMessage: long })}\n`
          : `${time.toLocaleTimeString()} ${visible(code)} ${visible(short)}\n    ${visible(long)}\n`);
        if (++seen >= count) resolve(0);
      }
    });
    void interrupted().then(() => resolve(0));
  });
  // Who grimseld is on the bus, followed across its restarts: a change seen while asking is newer than the answer.
  await watchNameOwner(bus, GRIMSEL_NAME, (now) => {
    owner = now;
    ownerChanged = true;
    process.stderr.write(now ? 'ppuctl: grimseld is back\n' : 'ppuctl: grimseld left the bus; waiting for it to come back\n');
  });
  const current = await answer('the bus', ANSWER_MS, callMethod(daemon, 'GetNameOwner', GRIMSEL_NAME).catch(() => '')) as string;
  if (!ownerChanged) owner = current;
  // AddMatch returns once the rule is in place: from then on nothing is missed.
  await ask('the bus', daemon, 'AddMatch', [`type='signal',sender='${GRIMSEL_NAME}',path='${GRIMSEL_PATH}',interface='${GRIMSEL_IFACE}',member='Message'`]);
  process.stderr.write('ppuctl: following grimseld messages (Ctrl-C ends)\n');
  return done;
}

type Action = (bus: dbus.MessageBus) => Promise<number>;
type Values = {
  n?: string | undefined; json?: boolean | undefined; u?: string | undefined; d?: string[] | undefined;
  watch?: boolean | undefined; interval?: string | undefined;
};

/** Checks a bus command's arguments and returns what it will do: usage errors never touch the bus. */
function plan(cmd: string, sub: string | undefined, rest: string[], values: Values): Action {
  switch (cmd) {
    case 'status': {
      // Decimal digits only, as the TCP status port takes them: Number() also reads '1e3', '0x10', ' 1' and '' (0).
      const n = values.n === undefined ? -1 : /^-?\d+$/.test(values.n) ? Number(values.n) : NaN;
      if (!Number.isInteger(n) || n < -1 || n > INT32_MAX) usage(`-n wants a number of shifts (-1 for all, up to ${INT32_MAX}), got '${values.n}'`);
      if (values.watch) {
        const interval = values.interval === undefined ? 2 : Number(values.interval);
        // A day at most: a timer beyond ~24.8 days fires at once in Node, and the table would be redrawn without pause.
        if (!(interval >= 0.1 && interval <= 86_400)) usage(`--interval wants seconds (0.1 to 86400), got '${values.interval}'`);
        return (bus) => watchStatus(bus, n, interval, !!values.json);
      }
      if (values.interval !== undefined) usage('--interval goes with --watch');
      return async (bus) => {
        // Both asked at once: a daemon that does not answer costs ANSWER_MS once, not once per daemon.
        const [view, status] = await Promise.all([furkadView(bus), queryStatus(bus, n).catch((e: unknown) => {
          if (!unreachable(e) && !(e instanceof NoAnswer)) throw e;
          return absence('grimseld', e);
        })]);
        if (typeof status === 'string') {
          // furkad's part is still worth seeing (its detectors go on placing files); exit 3 says grimseld is down.
          process.stdout.write(values.json ? `${JSON.stringify({ status: null, error: status, furkad: statusJson({ rows: [], verified: undefined }, view)['furkad'] }, null, 2)}\n`
            : `grimseld: ${status.replace(/^grimseld (is )?/, '')}\n${formatFurkad(view)}`);
          return 3;
        }
        process.stdout.write(values.json ? `${JSON.stringify(statusJson(status, view), null, 2)}\n`
          : formatStatusTable(status.rows, { verified: status.verified }) + formatGrimselLicense(status) + formatFurkad(view));
        // A furkad that is not there is shown (status is grimseld's first); one that owns its name and does not answer is a fault.
        return view?.silent ? 3 : 0;
      };
    }
    case 'messages': {
      const count = values.n === undefined ? Infinity : /^\d+$/.test(values.n) ? Number(values.n) : NaN;
      if (count !== Infinity && count > INT32_MAX) usage(`-n wants a number of messages (up to ${INT32_MAX}), got '${values.n}'`);
      if (!(Number.isInteger(count) && count > 0) && count !== Infinity) usage(`-n wants a number of messages, got '${values.n}'`);
      if (sub) usage(`messages takes no arguments, got '${sub}'`);
      return (bus) => followMessages(bus, count, !!values.json);
    }
    case 'shift':
      if (sub === 'start') {
        const [uid, gid] = parseUidGid(values.u);
        const detectors = (values.d ?? []).map(parseDetector);
        return async (bus) => {
          await ask('furkad', await iface(bus, FURKA_NAME, FURKA_PATH, FURKA_IFACE), 'StartShift', [uid, gid, detectors], START_SHIFT_MS,
            '; the shift may still start: see ppuctl shift show');
          process.stdout.write(`shift ${uid}:${gid} started\n`);
          return 0;
        };
      }
      if (sub === 'show') {
        return async (bus) => {
          const props = await iface(bus, FURKA_NAME, FURKA_PATH, 'org.freedesktop.DBus.Properties');
          const v = (await ask('furkad', props, 'Get', [FURKA_IFACE, 'Shift'])) as dbus.Variant<[bigint, number, number]>;
          const [t, uid, gid] = v.value;
          const since = new Date(Number(t / 1000n)).toISOString();
          const next = (await furkadView(bus))?.nextShift;
          process.stdout.write(values.json
            ? `${JSON.stringify({ usertime: Number(t), uid, gid, since, nextShift: next?.toISOString() ?? null })}\n`
            : `shift ${uid}:${gid} since ${since}${next ? `; next scheduled change ${next.toISOString()}` : ''}\n`);
          return 0;
        };
      }
      return usage(`shift wants start or show${sub ? `, got '${sub}' (a shift ends when the next one starts: ppuctl shift start)` : ''}`);
    case 'add': {
      const files = [sub, ...rest].filter((f): f is string => !!f).map((f) => (f.startsWith('/') ? f : `${process.cwd()}/${f}`));
      if (files.length === 0) usage('add FILE...');
      return async (bus) => {
        const grimsel = await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, GRIMSEL_IFACE);
        let bad = 0;
        let added = 0;
        for (const [i, f] of files.entries()) {
          // What a name that is not UTF-8 becomes on its way into this process: it would name another file.
          if (f.includes('\ufffd')) {
            process.stderr.write(`ppuctl: ${f}: the name holds U+FFFD, which is what a name that is not valid UTF-8 becomes on its way here; ` +
              'grimseld takes UTF-8 names only: rename the file and add it under its new name\n');
            bad++;
            continue;
          }
          try {
            await ask('grimseld', grimsel, 'AddFile', [f]);
            added++;
          } catch (e) {
            // The bus or the right to use it gone: no later file can be added either; which were is said.
            if (!(e instanceof dbus.DBusError) || unreachable(e) || /AccessDenied/.test(e.type)) {
              if (i > 0 || files.length > 1) process.stderr.write(`ppuctl: ${added} of ${files.length} files added; not known to be added: ${files.slice(i).join(' ')}\n`);
              throw e;
            }
            // Refused, or failed for this file alone: said, and the next one is added.
            process.stderr.write(`ppuctl: ${visible(f)}: ${visible(e.text)}${unseen(f, e.text)}\n`);
            bad++;
          }
        }
        return bad ? 1 : 0;
      };
    }
    default:
      return usage(`unknown command '${cmd}'`);
  }
}

/** The exit code of a C tool that SIGPIPE ended (128 + 13): what a shell with pipefail expects of `cmd | head`. */
const EXIT_CLOSED_OUTPUT = 141;

/**
 * A reader that went away (`ppuctl status --watch | head -1`) ends ppuctl quietly, as SIGPIPE ends a C tool:
 * Node ignores SIGPIPE and reports EPIPE as an 'error' event that, unhandled, is a stack trace. Other output
 * errors (a full disk behind `> file`) are said in a line.
 */
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && stream === process.stdout) {
      try { process.stderr.write(`ppuctl: cannot write the output: ${e.message}\n`); } catch { /* nowhere to say it */ }
    }
    process.exit(e.code === 'EPIPE' ? EXIT_CLOSED_OUTPUT : 1);
  });
}

run(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    if (e instanceof BusAddressError) {
      process.stderr.write(`ppuctl: cannot reach the bus: ${e.message}\n`);
      process.exitCode = 3;
    } else if (e instanceof NoAnswer) {
      process.stderr.write(`ppuctl: ${e.message}\n`);
      process.exitCode = 3;
    } else if (e instanceof BusRefused) {
      process.stderr.write(`ppuctl: ${e.message}\n`);
      process.exitCode = 3;
    } else if (e instanceof BusEnded) {
      process.stderr.write(`ppuctl: lost the bus (${e.message})\n`);
      process.exitCode = 3;
    } else if (e instanceof UsageError) {
      process.stderr.write(`ppuctl: ${e.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (e instanceof ConfigError) {
      process.stderr.write(`ppuctl: ${e.message}\n`);
      process.exitCode = 1;
    } else if (e instanceof dbus.DBusError) {
      const gone = unreachable(e);
      const denied = /AccessDenied/.test(e.type);
      // Which daemon, where the bus says whose name it was (org.ppu.Furka: furkad, org.ppu.Grimsel: grimseld).
      const named = /org\.ppu\.(Furka|Grimsel)\b/.exec(e.text ?? '')?.[1];
      const daemon = named === 'Furka' ? 'furkad' : named === 'Grimsel' ? 'grimseld' : 'the daemon';
      process.stderr.write(`ppuctl: ${gone ? `${daemon} is not running (or not on this bus)` : denied ? 'access denied (run as root or an operator)' : visible(e.text)}\n`);
      process.exitCode = gone ? 3 : 1;
    } else {
      const msg = (e as Error).message ?? String(e);
      // Only a failed connect is the bus: a file that is not there (config import -o, a key) is said as it is.
      const unreachable = /\bconnect (ENOENT|ECONNREFUSED)\b/.test(msg);
      process.stderr.write(`ppuctl: ${unreachable ? `cannot reach the bus: ${msg}` : msg}\n`);
      process.exitCode = unreachable ? 3 : 1;
    }
  },
);

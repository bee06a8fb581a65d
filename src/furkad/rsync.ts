// One rsync client run against a detector's rsync daemon: arguments, output parsing, exit-code policy.
import { connectTimeoutS } from './rsync-greeting.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { watchTail } from './rsync-tail.js';
import { descendantsOf, watchGreeting, watchStall } from './rsync-stall.js';
import { deliverable, nameInPattern, NAMES_FILTER } from './rsync-names.js';
import { hostPort } from './host-lookup.js';

export interface RsyncRun {
  rsync: string;
  host: string;
  port: number;
  module: string;
  source: string;
  /**
   * Who logs in to the daemon (rsync-auth.ts): the user is in the URL, the password in the client's environment
   * (RSYNC_PASSWORD: only the process's owner can read it; empty when there is none, so that rsync never prompts).
   */
  user?: string;
  password?: string;
  /** Real (unmarked) destination directory, created beforehand. */
  dest: string;
  uid: number;
  gid: number;
  removeSource: boolean;
  /** Only these files (relative to the source), instead of everything below it: settle mode's removal run. */
  only?: string[];
  /** rsync patterns of files never pulled (a detector writer's temp files). */
  exclude: string[];
  /** Further filter rules, in order, after `exclude`: rsync-depth.ts's, hiding directories too deep to take. */
  filters?: Array<['include' | 'exclude', string]>;
  /**
   * Files (relative to the source) never pulled, before any other rule: ones placed whose sources the daemon could
   * not remove (rsync-removal.ts). Given on stdin (--exclude-from=-), so not with `only` or `asShift`, which use it.
   */
  skip?: string[];
  /** The filter file of names furkad cannot hand over (rsync-names.ts): never pulled, never removed. */
  namesFilter: string;
  /**
   * Run as the shift's uid/gid (remove_source = no: rsync writes straight into the user's directory, resolving
   * its paths itself). A link the user swaps in on the way then reaches only what the user may write anyway
   * (docs/threat-model.md). The names filter comes on stdin then: state_dir is not the user's to read.
   */
  asShift?: boolean;
  /** Where rsync keeps a file while it is being received (not in dest: a killed run's temp file is then told
   *  apart from a complete file by where it is, not by its name). Same file system as dest. */
  tempDir?: string;
  /**
   * Where a file unchanged since an earlier run's copy is found (rsync's --link-dest): hard-linked into dest from
   * there instead of sent again, its source removed all the same (settle mode: rsync-settling.ts). Absolute.
   */
  linkDest?: string;
  /** Files larger than this many bytes are left on the detector (rsync's --max-size), each named in `overMax`:
   *  set while the PPU ramdisk has had no room for one (staging-room.ts). */
  maxSize?: number;
  /** Compares only (rsync's --dry-run): each file is listed as it would be moved, `>f` for one that differs
   *  from what `dest` has (counted in `sent`, though nothing is), `.f` for one the same; nothing moves. */
  dryRun?: boolean;
  /**
   * Compares mtimes to the nanosecond (rsync's --modify-window=-1): only with rsync 3.1.3 and later (3.1.2 takes any
   * two times for the same with -1) and where `dest`'s file system keeps every nanosecond (mtime-precision.ts).
   */
  exactTimes?: boolean;
  timeoutS: number;
}

/** One `[sender] hiding … because of pattern …` report of the daemon's. */
export interface Hiding {
  name: string;
  pattern: string;
  dir: boolean;
}

/** What a run's listing said of a file on the detector: its size and mtime (whole seconds, UTC: `%M` at TZ=UTC0). */
export interface Listing {
  size: number;
  mtimeS: number;
}

export interface RsyncResult {
  code: number;
  /** Regular files now on the PPU, relative to `dest`: transferred ones and ones already there. */
  files: string[];
  /** The files of `files` transferred in this run, how many, and their bytes. */
  sent: string[];
  transferred: number;
  bytes: number;
  /** Files of `files` whose source changed while they were sent: incomplete, kept on the detector (F2). */
  changed: Set<string>;
  /** Files the detector's daemon reported removed (`sender removed`): unchanged while sent, so complete (F2). */
  removed: Set<string>;
  /**
   * Files whose source the daemon found gone when it came to remove it (`sender file already removed`): renamed or
   * deleted on the detector after they were sent whole.
   */
  vanished?: Set<string>;
  /** Paths (raw bytes) the daemon reported hiding: the names filter's, and `exclude`'s (needs 'max verbosity = 2'). */
  hidden: Buffer[];
  /** Each hiding report with the pattern that hid it (decoded as UTF-8) and whether it was a directory. */
  hiding?: Hiding[];
  /** Paths (raw bytes) listed or removed although furkad cannot hand them over (a daemon that ignored the filter). */
  strays: Buffer[];
  /** Files left on the detector for being larger than `maxSize`, as shown (names decoded as in `files`). */
  overMax: string[];
  /**
   * What the run listed of each file it itemized (size and mtime as the detector has them): those of `files`, and the
   * one it failed on (noRoom), which is no file of the run.
   */
  listing?: Map<string, Listing>;
  /**
   * The file the receiver was receiving when the run ended without going through its list (furkad's signal at a
   * shift change or stop, a stall, no room): listed (in `listing`) and left on the detector, no file of the run.
   */
  unfinished?: string;
  /** The run failed for lack of room on the PPU (ENOSPC): the file it was receiving then, and its size, if any. */
  noRoom?: { rel?: string; size?: number };
  /** The client was ended in its idle tail (see rsync-tail.ts) rather than waited for. */
  tailCut?: boolean;
  /** furkad ended the run: nothing moved for timeoutS (rsync-stall.ts). Its code is then 30, rsync's own for a timeout. */
  stalled?: boolean;
  /** furkad ended the run: its daemon took the connection and sent no greeting within the connect timeout (also `stalled`). */
  ungreeted?: boolean;
  /** The client did not exit on SIGTERM within its grace and was killed with its receiver: its temp file may be left. */
  killed?: boolean;
  /** The client's process id (for logs and tests: a run started ahead keeps its pid). */
  pid?: number;
  stderr: string;
}

/** What to do after an rsync exit code (lsyncd-style policy table). */
export type Verdict = 'ok' | 'retry' | 'fatal';

const EXIT_POLICY: Record<number, Verdict> = {
  0: 'ok',
  1: 'fatal', // syntax or usage error
  2: 'fatal', // protocol incompatibility
  3: 'retry', // errors selecting input/output files, dirs (e.g. module path missing)
  4: 'fatal', // requested action not supported
  5: 'retry', // error starting client-server protocol (daemon refused, restarting)
  10: 'retry', // error in socket I/O (connection refused, network down)
  11: 'retry', // error in file I/O (PPU ramdisk full)
  12: 'retry', // error in rsync protocol data stream
  14: 'retry', // error in IPC code
  20: 'retry', // received SIGUSR1 or SIGINT
  23: 'retry', // partial transfer due to error (some files not moved; the rest were)
  24: 'ok', // partial transfer due to vanished source files: nothing to do
  30: 'retry', // timeout in data send/receive
  35: 'retry', // timeout waiting for daemon connection
};

/**
 * The verdict on a finished run. Exit 23 caused only by sources that changed while being sent is a
 * normal run: those files are left in staging and taken again by a later run (F2), not an outage.
 */
export function classifyExit(code: number, stderr = ''): Verdict {
  if (code === 23 && onlyChangedSources(stderr)) return 'ok';
  return EXIT_POLICY[code] ?? 'retry';
}

/** rsync's closing line, `rsync error: <what> (code N) at file.c(L) [Who=V]`: which exit, never why. */
const SUMMARY = /^rsync error: (.*) \(code \d+\) at \S+(?: \[.*\])?$/;
/** How many of rsync's lines on the cause a message shows: an exit 23 may have one per file. */
const CAUSE_LINES = 2;

/**
 * What a failed run's stderr says about why: rsync's own lines before its closing summary (`@ERROR: Unknown
 * module …`, `rsync: getaddrinfo: …: Name or service not known`, `rsync: [Receiver] failed to connect to …`),
 * the first few of them, and the summary's words for the exit. Only the summary when there is nothing else.
 */
export function errorCause(stderr: string): string {
  const lines = [...new Set(stderr.split('\n').map((l) => l.trim()).filter((l) => l !== ''))];
  const summaries = lines.map((l) => SUMMARY.exec(l)).filter((m): m is RegExpExecArray => m !== null);
  const causes = lines.filter((l) => !SUMMARY.test(l));
  if (causes.length === 0) return lines[lines.length - 1] ?? '';
  const more = causes.length > CAUSE_LINES ? ` (and ${causes.length - CAUSE_LINES} more)` : '';
  const what = summaries.length > 0 ? ` (${summaries[summaries.length - 1]?.[1] ?? ''})` : '';
  return `${causes.slice(0, CAUSE_LINES).join('; ')}${more}${what}`;
}

/** rsync's sender refuses --remove-source-files for a file whose size or mtime moved during the run. */
const CHANGED = /^ERROR: Skipping sender remove for changed file: (.*)$/;

/** rsync's closing line of an exit 23. */
export const NOT_ALL = /^rsync error: some files\/attrs were not transferred/;

function onlyChangedSources(stderr: string): boolean {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const errors = lines.filter((l) => !NOT_ALL.test(l));
  return errors.length > 0 && errors.every((l) => CHANGED.test(l));
}

/** A limited run's (--files-from) word for a file it was given that is gone from the detector (renamed or deleted there). */
const GONE = /^rsync: (?:\[sender\] )?link_stat ".*" \(in [^)]*\) failed: No such file or directory \(2\)$/;

/**
 * A limited run (settle mode's take run: the files a listing run found settled) without its lines on files gone
 * from the detector since that listing: a writer renamed their directory (`scan_001` to `scan_001_bad`) or deleted
 * them. Not the detector's failure, as a full run's vanished files are not (rsync's exit 24): exit 24 when nothing
 * else went wrong, or when every one of the `asked` names is gone (the sender then ends the connection at once, and
 * the receiver says "Connection reset by peer": the run had nothing to do); else the exit and the other lines, to be
 * judged on those. `gone`: how many such lines.
 */
export function besidesGone(code: number, stderr: string, asked: number): { code: number; stderr: string; gone: number } {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const rest = lines.filter((l) => !GONE.test(l.trim()));
  const gone = lines.length - rest.length;
  if (code !== 23 || gone === 0) return { code, stderr, gone: 0 };
  if (gone >= asked || rest.every((l) => NOT_ALL.test(l.trim()))) return { code: 24, stderr: '', gone };
  return { code, stderr: rest.join('\n'), gone };
}

/** Names of the files rsync kept on the detector because they changed while sent (decoded as in parseOutput). */
export function changedSources(stderr: string): Set<string> {
  const out = new Set<string>();
  for (const line of stderr.split('\n')) {
    const m = CHANGED.exec(line);
    if (m) out.add(decodeName(m[1] ?? ''));
  }
  return out;
}

/**
 * Why `source` cannot be asked of an rsync daemon, or undefined. The daemon expands '*', '?' and '[' in the path
 * it is asked for as a pattern: '/run?' next to a directory 'run1' pulled run1's files too, and every later run
 * failed on them (the settle run's --files-from names are taken literally). A backslash escapes them only in
 * some paths and daemon versions (a '\\' without a pattern character stays two characters), so such a source
 * is refused instead of escaped.
 */
export function sourcePatternProblem(source: string): string | undefined {
  const c = /[*?[]/.exec(source)?.[0];
  if (c === undefined) return undefined;
  return `'${source}' holds '${c}', which the detector's rsync daemon expands as a pattern ('*', '?' and '[' are refused): ` +
    'it would pull every directory that matches, and fail each run; rename the directory on the detector server, or use transport = agent';
}

/** The source directory below the module, without slashes at either end ('' for the module itself). */
function sourceDir(run: RsyncRun): string {
  return run.source.replace(/^\/+|\/+$/g, '');
}

/**
 * The --files-from list of a run limited to `only`: names below the module with rsync's `/./` marker, so
 * the part after the source directory is what lands in dest. (With the source directory in the URL
 * instead, rsync 3.x's sender looks for the files in the wrong place and removes none.)
 */
export function onlyList(run: RsyncRun): Buffer {
  const dir = sourceDir(run);
  return Buffer.concat((run.only ?? []).map((rel) => Buffer.from(`${dir === '' ? '' : `${dir}/./`}${rel}\0`, 'utf8')));
}

export function rsyncArgs(run: RsyncRun): string[] {
  const src = [run.module, run.only ? '' : sourceDir(run)].filter(Boolean).join('/').replace(/\/*$/, '/');
  return [
    '--recursive', // no --links/--devices/--specials: only regular files are copied (F1)
    '--times', // mtimes of the source (F3)
    // A file rewritten at the same size within the second it was copied in is sent again, not taken for the copy.
    ...(run.exactTimes ? ['--modify-window=-1'] : []),
    '--prune-empty-dirs',
    ...(run.dryRun ? ['--dry-run'] : []),
    // The shift owns it all (F3): given by root, or made by the shift's own process.
    ...(run.asShift ? [] : ['--owner', '--group', '--numeric-ids', `--chown=${run.uid}:${run.gid}`]),
    // rsync keeps a source that changed meanwhile (F2). --info=remove1 has the daemon say 'sender removed
    // NAME' for each source it removed after checking it unchanged: the moment that file is known complete
    // (needs 'max verbosity = 2' in the daemon's rsyncd.conf; without it furkad waits for the run's end).
    ...(run.removeSource ? ['--remove-source-files'] : []),
    // -vv has the daemon's sender say which files it hides ('[sender] hiding file NAME'), so that names furkad
    // cannot hand over are reported (rsync-names.ts); the client itself says only what it did before.
    '-vv', '--debug=NONE', `--info=NONE,NAME1${run.removeSource ? ',REMOVE1' : ''}${run.maxSize === undefined ? '' : ',SKIP1'}`,
    // SKIP1 has the client say 'NAME is over max-size' for each file it leaves (rsync 3.1.0 and later). Never 0:
    // rsync before 3.1 takes that for no limit.
    ...(run.maxSize === undefined ? [] : [`--max-size=${Math.max(1, Math.floor(run.maxSize))}`]),
    ...(run.only ? ['--files-from=-', '--from0'] : []),
    `--exclude-from=${run.asShift ? '-' : run.namesFilter}`,
    ...(run.skip && run.skip.length > 0 ? ['--exclude-from=-'] : []),
    ...run.exclude.map((p) => `--exclude=${p}`),
    ...(run.filters ?? []).map(([kind, p]) => `--${kind}=${p}`),
    ...(run.tempDir ? [`--temp-dir=${run.tempDir}`] : []),
    ...(run.linkDest ? [`--link-dest=${run.linkDest}`] : []),
    '--sockopts=TCP_NODELAY',
    `--contimeout=${connectTimeoutS(run.timeoutS)}`,
    `--timeout=${run.timeoutS}`,
    // -ii lists unchanged files too: a file left by an earlier, interrupted run is still handed over. %M: the file's
    // mtime on the detector, in whole seconds (UTC: gated() sets TZ), what furkad knows a file it leaves there by.
    '-ii', '--out-format=%i %l %M %n',
    `rsync://${run.user === undefined ? '' : `${run.user}@`}${hostPort(run.host, run.port)}/${src}`,
    `${run.dest.replace(/\/*$/, '/')}`,
  ];
}

/** `%M` as rsync prints it at TZ=UTC0 (YYYY/MM/DD-hh:mm:ss), in whole seconds; undefined for a token cut short. */
function utcSeconds(token: string): number | undefined {
  const t = MTIME.exec(token);
  if (!t) return undefined;
  const [y, mo, d, h, mi, sec] = t.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const at = new Date(0);
  // Not Date.UTC: it reads years 0-99 as 1900-1999.
  at.setUTCFullYear(y, mo - 1, d);
  at.setUTCHours(h, mi, sec, 0);
  return at.getTime() / 1000;
}

/** rsync prints non-printable bytes of names as \#ooo (octal). */
export function unescapeName(name: string): string {
  return name.replace(/\\#([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * `%i %l %M %n`; the mtime is optional for lines of an older furkad's format (`%i %l %n`). rsync prints `%M` in a
 * buffer of its own: a year of other than four digits (10000, -999: a detector user's `touch -d`, a broken clock)
 * comes out longer or cut short, so any such token is taken as the mtime, never as part of the name (MTIME says
 * whether it is one furkad can read).
 */
const ITEM = /^([<>ch.*])f(.{9}) (\d+) (?:(-?\d+\/\d+\/\d+-\d+:\d+(?::\d*)?) )?(.*)$/;
const MTIME = /^(-?\d+)\/(\d\d)\/(\d\d)-(\d\d):(\d\d):(\d\d)$/;
const REMOVED = /^sender removed (.*)$/;
/** rsync's sender (successful_send) when the source it is to remove is gone (ENOENT): renamed or deleted since it was sent. */
const ALREADY_REMOVED = /^sender file already removed: (.*)$/;
/** The client's SKIP1 line for a file over --max-size (3.3 and later add the sizes in brackets). */
const OVER_MAX = /^(.*) is over max-size(?: \(\d+ > \d+\))?$/;
/** The receiver's word for a full file system (write, mkstemp, rename …); ENOSPC is 28 on Linux. */
const NO_SPACE = /No space left on device \(28\)/;
/** The pattern is never the one with spaces: furkad's have none, and `exclude` is split at spaces. */
const HIDING = /^\[sender\] hiding (file|directory) (.*) because of pattern (.*)$/;

/**
 * The --exclude-from=- list of a run's `skip`: each file anchored at the source, one a line (a name furkad takes
 * has no newline), matched as it is (nameInPattern).
 */
export function skipList(run: RsyncRun): Buffer {
  return Buffer.from((run.skip ?? []).map((rel) => `/${nameInPattern(rel, false)}\n`).join(''), 'utf8');
}

/** rsync names are byte strings: escapes decoded, as bytes. */
function nameBytes(raw: string): Buffer {
  return Buffer.from(unescapeName(raw), 'latin1');
}

/** A name as rsync prints it, as bytes read as UTF-8 (see deliverable: furkad takes no other). */
export function decodeName(raw: string): string {
  return nameBytes(raw).toString('utf8');
}

/**
 * Reads rsync's stdout as it comes: `%i %l %n` lines (`>f+++…` transferred, `.f  …` already there) and the
 * daemon's `sender removed NAME` lines, which are handed to `onRemoved` a chunk at a time.
 */
export class OutputParser {
  readonly files: string[] = [];
  readonly sent: string[] = [];
  readonly removed = new Set<string>();
  readonly vanished = new Set<string>();
  readonly hidden: Buffer[] = [];
  readonly hiding: Hiding[] = [];
  readonly strays: Buffer[] = [];
  readonly overMax: string[] = [];
  readonly listing = new Map<string, Listing>();
  bytes = 0;
  /** The last file the receiver began to receive: complete once it begins the next, or the run ends well. */
  inFlight: { name: string; size: number } | undefined;
  #rest = '';

  constructor(private readonly onRemoved: (names: string[]) => void = () => {}) {}

  /** Feeds a chunk of output (latin1-decoded); complete lines are parsed now. */
  push(chunk: string): void {
    const lines = (this.#rest + chunk).split('\n');
    this.#rest = lines.pop() ?? '';
    const removed: string[] = [];
    for (const line of lines) {
      const h = HIDING.exec(line);
      if (h) {
        this.hidden.push(nameBytes(h[2] ?? ''));
        this.hiding.push({ name: decodeName(h[2] ?? ''), pattern: decodeName(h[3] ?? ''), dir: h[1] === 'directory' });
        continue;
      }
      const gone = ALREADY_REMOVED.exec(line);
      if (gone) {
        if (this.#deliverable(gone[1] ?? '')) this.vanished.add(decodeName(gone[1] ?? ''));
        continue;
      }
      const r = REMOVED.exec(line);
      if (r) {
        if (!this.#deliverable(r[1] ?? '')) continue;
        const name = decodeName(r[1] ?? '');
        this.removed.add(name);
        removed.push(name);
        continue;
      }
      // An item line first: a file named `… is over max-size` is itemized as any other (a SKIP1 line has no `%i`).
      const m = ITEM.exec(line);
      const o = m ? undefined : OVER_MAX.exec(line);
      if (o) {
        if (this.#deliverable(o[1] ?? '')) this.overMax.push(decodeName(o[1] ?? ''));
        continue;
      }
      if (!m || !this.#deliverable(m[5] ?? '')) continue;
      const name = decodeName(m[5] ?? '');
      this.files.push(name);
      const mtimeS = m[4] === undefined ? undefined : utcSeconds(m[4]);
      if (mtimeS !== undefined) this.listing.set(name, { size: Number(m[3]), mtimeS });
      if (m[1] === '>') {
        // Said before its data comes (an --out-format without %b): complete only once the receiver goes on.
        this.sent.push(name);
        this.bytes += Number(m[3]);
        this.inFlight = { name, size: Number(m[3]) };
      }
    }
    if (removed.length > 0) this.onRemoved(removed);
  }

  /** A name furkad can hand over; any other is a stray (noted once), never one of the run's files. */
  #deliverable(raw: string): boolean {
    const b = nameBytes(raw);
    if (deliverable(b)) return true;
    if (!this.strays.some((s) => s.equals(b))) this.strays.push(b);
    return false;
  }

  /** Parses a last line without its newline. */
  end(): void {
    if (this.#rest !== '') this.push('\n');
  }

  /**
   * The run ended with `code`: unless its receiver went through its list (0, 23, 24), the file it was receiving
   * never arrived (rsync removed its temp file) and is no file of the run, nor are its bytes counted. One its
   * sender reported removed had arrived.
   */
  endWith(code: number): void {
    this.end();
    const f = this.inFlight;
    if (!f || code === 0 || code === 23 || code === 24 || this.removed.has(f.name)) return;
    const drop = (list: string[]): void => {
      const i = list.lastIndexOf(f.name);
      if (i >= 0) list.splice(i, 1);
    };
    drop(this.sent);
    drop(this.files);
    this.bytes -= f.size;
  }
}

/** Picks the regular files out of a whole run's output (see OutputParser). */
export function parseOutput(stdout: string, code = 0): { files: string[]; sent: string[]; removed: Set<string>; hidden: Buffer[]; strays: Buffer[]; overMax: string[]; listing: Map<string, Listing>; transferred: number; bytes: number } {
  const p = new OutputParser();
  p.push(stdout);
  p.endWith(code);
  return { files: p.files, sent: p.sent, removed: p.removed, hidden: p.hidden, strays: p.strays, overMax: p.overMax, listing: p.listing, transferred: p.sent.length, bytes: p.bytes };
}

/**
 * The shell an rsync run starts in: it waits for one line on stdin, then becomes rsync (exec, same pid). A
 * run can so be started ahead, in the pause before it is due (RsyncLauncher): forking furkad costs
 * milliseconds that grow with its memory (BENCHMARKS.md), and a run then starts with an exec only.
 */
const GATE = 'IFS= read -r _ || exit 0; exec "$0" "$@"';

/** The client's command line for `run` (what a process started ahead is compared by). */
function argvOf(run: RsyncRun): string[] {
  if (run.asShift && run.only) throw new Error('a run as the shift takes its names filter on stdin: no --files-from there');
  if (run.skip && run.skip.length > 0 && (run.asShift || run.only)) throw new Error('a run that skips files takes them on stdin: not as the shift, nor with --files-from');
  return [run.rsync, ...rsyncArgs(run)];
}

/** Whose process a run is: root's, or the shift's (asShift). */
function idsOf(run: RsyncRun): { uid: number; gid: number } | undefined {
  return run.asShift ? { uid: run.uid, gid: run.gid } : undefined;
}

/** A run's command line, whose process it is and its password, as one string (no argument can hold a NUL). */
function keyOf(argv: string[], run: RsyncRun): string {
  const ids = idsOf(run);
  return [...argv, ids ? `${ids.uid}:${ids.gid}` : 'root', run.password ?? ''].join('\0');
}

/**
 * Starts the gate shell for `run`; as the shift's uid/gid when it runs as the shift (libuv drops the
 * supplementary groups then). Its environment carries the password: never on the command line, which
 * everyone can read; the environment only the process's owner can (docs/threat-model.md says who that is).
 */
function gated(argv: string[], run: RsyncRun): ChildProcess {
  // TZ: the mtimes of the out-format (%M) in UTC, read back as such whatever the PPU's zone (no DST fold).
  const env = { ...process.env, RSYNC_PASSWORD: run.password ?? '', TZ: 'UTC0' };
  return spawn('/bin/sh', ['-c', GATE, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env, ...(idsOf(run) ?? {}) });
}

/** One detector's next rsync run, started ahead and waiting at its gate until it is due. */
export class RsyncLauncher {
  #ahead: { key: string; child: ChildProcess } | undefined;

  /** The process started ahead for the next run, if any. */
  get aheadPid(): number | undefined {
    return this.#ahead?.child.pid;
  }

  /** Starts `run`'s process now, to wait at its gate; one started ahead for another run is let go. */
  prepare(run: RsyncRun): void {
    const argv = argvOf(run);
    const key = keyOf(argv, run);
    if (this.#ahead?.key === key && alive(this.#ahead.child)) return;
    this.discard();
    let child: ChildProcess;
    try {
      child = gated(argv, run);
    } catch {
      return; // nothing started ahead: launch() starts the run then, and reports what goes wrong
    }
    child.on('error', () => undefined); // reported when launched, if it is
    keepAlive(child, false); // a process started ahead never keeps furkad (or a test) running
    this.#ahead = { key, child };
  }

  /** The process for `run`, released: the one started ahead if it was prepared for this very run, else a new one. */
  launch(run: RsyncRun): ChildProcess {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    const argv = argvOf(run);
    if (ahead && ahead.key === keyOf(argv, run) && alive(ahead.child)) {
      keepAlive(ahead.child, true);
      return ahead.child;
    }
    if (ahead) release(ahead.child, false);
    return gated(argv, run);
  }

  /** Lets a process started ahead go without running rsync (its shell reads end of input and exits). */
  discard(): void {
    if (this.#ahead) release(this.#ahead.child, false);
    this.#ahead = undefined;
  }
}

/** How long a run ended for making no progress has to exit on SIGTERM before it is killed. */
const STALL_KILL_GRACE_MS = 5000;
/**
 * How long a run ended by its signal (a shift change that stops waiting, a drain out of time, a stop) has to exit on
 * SIGTERM before it is killed: rsync takes well under a second; the shift change waits for it, and busctl gives up
 * after 25 s (F6).
 */
const ABORT_KILL_GRACE_MS = 2000;
/** Beyond --contimeout before a run without the daemon's greeting is ended: rsync's own timeout says it first, if it can. */
const GREETING_GRACE_MS = 500;

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** Whether process `pid` is there and not a zombie (exited, waiting to be reaped). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

/** Whether `child` and its pipes keep the event loop running (a run does; a process started ahead does not). */
function keepAlive(child: ChildProcess, yes: boolean): void {
  for (const s of [child, child.stdin, child.stdout, child.stderr] as Array<{ ref?(): void; unref?(): void } | null>) {
    if (yes) s?.ref?.();
    else s?.unref?.();
  }
}

function alive(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/** Opens `child`'s gate (go: rsync runs, reading `input` if any) or closes it (the shell exits, nothing runs). */
function release(child: ChildProcess, go: boolean, input?: Buffer): void {
  child.stdin?.on('error', () => undefined); // a process that died early: its exit code says why
  if (!go) {
    child.stdin?.end();
    return;
  }
  child.stdin?.write('\n');
  child.stdin?.end(input);
}

/**
 * Runs rsync once, through `launcher` (a run it prepared starts at once); resolves with what it moved.
 * `onRemoved` hears of each file the daemon removed while the run goes on. Aborting ends the run: SIGTERM to each of
 * its processes (rsync removes its temp file), SIGKILL to those still running ABORT_KILL_GRACE_MS later.
 */
export function runRsync(run: RsyncRun, signal?: AbortSignal, onRemoved?: (names: string[]) => void, launcher = new RsyncLauncher()): Promise<RsyncResult> {
  return new Promise((resolve) => {
    const child = launcher.launch(run);
    let stalled = false;
    // A daemon that took the connection and never greets: ended after the connect timeout, as one that takes none
    // is by --contimeout, not after timeoutS (in single-thread mode the run holds every other detector up, F8).
    // Watched from before the gate opens (rsync-stall.ts).
    let ungreeted = false;
    const unwatchGreeting = child.pid === undefined ? () => undefined : watchGreeting(child.pid, connectTimeoutS(run.timeoutS) * 1000 + GREETING_GRACE_MS, () => {
      ungreeted = true;
      stalled = true;
      end(STALL_KILL_GRACE_MS);
    });
    release(child, true, run.only ? onlyList(run) : run.asShift ? NAMES_FILTER : run.skip && run.skip.length > 0 ? skipList(run) : undefined);
    // SIGTERM lets rsync remove its temp file; one that cannot even exit within `graceMs` is killed, its receiver too
    // (whoever waits for the run, a shift change or a stop, waits that long at most).
    let hardKill: NodeJS.Timeout | undefined;
    let killed = false;
    const end = (graceMs: number): void => {
      if (hardKill) return;
      // The whole tree as it is now, each signalled: a wrapper (rsync_path) that does not exec rsync dies of SIGTERM
      // and would leave the client and its receiver running on their own, holding the run's pipes open.
      const tree = child.pid === undefined ? [] : descendantsOf(child.pid);
      child.kill('SIGTERM');
      for (const pid of tree.slice(1)) signalQuietly(pid, 'SIGTERM');
      hardKill = setTimeout(() => {
        const left = new Set([...tree, ...(child.pid === undefined ? [] : descendantsOf(child.pid))]);
        for (const pid of left) {
          if (!running(pid)) continue;
          killed = true;
          signalQuietly(pid, 'SIGKILL');
        }
      }, graceMs);
    };
    const abort = (): void => end(ABORT_KILL_GRACE_MS);
    signal?.addEventListener('abort', abort, { once: true });
    if (signal?.aborted) abort();
    const parser = new OutputParser(onRemoved);
    const err: Buffer[] = [];
    child.stdout?.setEncoding('latin1');
    // Ended when nothing moves for timeoutS: rsync's own --timeout misses a daemon gone silent mid-file (rsync-stall.ts).
    const stall = child.pid === undefined ? undefined : watchStall(child.pid, run.timeoutS * 1000, () => {
      stalled = true;
      end(STALL_KILL_GRACE_MS);
    });
    child.stdout?.on('data', (s: string) => { stall?.progress(); parser.push(s); });
    child.stderr?.on('data', (b: Buffer) => { stall?.progress(); err.push(b); });
    child.on('error', (e) => {
      signal?.removeEventListener('abort', abort);
      unwatchGreeting();
      stall?.stop();
      resolve({ code: 127, files: [], sent: [], transferred: 0, bytes: 0, changed: new Set(), removed: new Set(), hidden: [], strays: [], overMax: [], stderr: e.message });
    });
    // A clean run (nothing on stderr) whose receiver has exited has moved and reported everything: its
    // client is only sleeping before it exits with 0. Cut that short; anything else ends on its own.
    let cutShort = false;
    const stopWatching = child.pid === undefined ? () => undefined : watchTail(child.pid, () => {
      // After the poll phase has read what the receiver wrote before it exited.
      setImmediate(() => {
        if (err.length > 0 || child.exitCode !== null || child.signalCode !== null) return;
        cutShort = true;
        child.kill('SIGKILL');
      });
    }, GATE);
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', abort);
      stopWatching();
      stall?.stop();
      unwatchGreeting();
      clearTimeout(hardKill);
      const tailCut = cutShort && sig === 'SIGKILL';
      const exit = stalled ? 30 : tailCut ? 0 : code ?? (sig ? 20 : 1);
      parser.end();
      const inFlight = parser.inFlight;
      parser.endWith(exit);
      const stderr = Buffer.concat(err).toString('latin1');
      // The file being received when the PPU ran out of room: the one rsync names in its message (not always
      // the last line, which is the exit's), as furkad's own name for it.
      const unfinished = inFlight && !parser.sent.includes(inFlight.name) ? inFlight : undefined;
      const noRoom = exit !== 0 && NO_SPACE.test(stderr) ? (unfinished ? { rel: unfinished.name, size: unfinished.size } : {}) : undefined;
      resolve({ code: exit, files: parser.files, sent: parser.sent, transferred: parser.sent.length,
        bytes: parser.bytes, removed: parser.removed, vanished: parser.vanished, hidden: parser.hidden, hiding: parser.hiding, strays: parser.strays, overMax: parser.overMax, listing: parser.listing, changed: changedSources(stderr), tailCut,
        ...(stalled ? { stalled } : {}), ...(ungreeted ? { ungreeted } : {}), ...(killed ? { killed } : {}),
        ...(noRoom ? { noRoom } : {}), ...(unfinished ? { unfinished: unfinished.name } : {}), ...(child.pid === undefined ? {} : { pid: child.pid }),
        stderr: Buffer.from(stderr, 'latin1').toString('utf8').trim() });
    });
  });
}

// The rsync transport: one stock rsync client run per loop run against the detector's rsync daemon, into
// staging, complete files offered to the loop the moment the daemon reports their sources removed (F1, F2, F9).
// A daemon that cannot remove sources is rsync-removal.ts's (F10).
import { lstatSync } from 'node:fs';
import { lchown, lstat, mkdir, readdir, rename, rm, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { isIP } from 'node:net';
import { besidesGone, classifyExit, errorCause, runRsync, RsyncLauncher, type Hiding, type Listing, type RsyncRun, type RsyncResult } from './rsync.js';
import { deliverable, escapeName } from './rsync-names.js';
import { DeepDirs, DEEP_MAX } from './rsync-depth.js';
import type { Logger } from '../common/logger.js';
import type { Assignment } from './shift.js';
import type { OwedShift, Placed, RunContext, RunOutcome, Transport } from './transport.js';
import { StagedProvenance } from './staged-provenance.js';
import { keyFileOutcome, ppuSideOfRsync } from './ppu-side.js';
import { fitName } from '../common/name-max.js';
import { candidateNames } from '../common/numbered-name.js';
import { tagged } from '../common/checksum.js';
import { STAGING_NAME } from '../common/paths.js';
import { StagingRoom } from './staging-room.js';
import { monotonicMs } from '../common/monotonic.js';
import { authAdvice, rsyncLogin, type RsyncLogin } from './rsync-auth.js';
import { UnplacedFiles } from './unplaced-files.js';
import { besidesRemoval, failuresIn, probeDir, RsyncRemoval, type RemovalNews } from './rsync-removal.js';
import { backToSettling, dropCopy, dropUnknownCopies, settlingDir } from './rsync-settling.js';
import { RsyncOwed, type Staged } from './rsync-owed.js';
import { removeEmptiedParents, removeEmptyStagingDirs } from './staging-dirs.js';
import { connectTimeoutS, daemonGreets } from './rsync-greeting.js';
import { keepsNanoseconds, rsyncComparesNanoseconds } from './mtime-precision.js';
import { hostPort, lookUpHost } from './host-lookup.js';
import { filesBelow } from './files-below.js';

/** rsync's temp names: `.<name>.` plus six random characters. */
const RSYNC_TEMP = /^\..+\.[A-Za-z0-9]{6}$/;
/** How long a run that got no greeting asks again for a detector server's name: short, as rsync already waited. */
const NAME_CHECK_MS = 3000;

/**
 * Where rsync receives files into staging (--temp-dir): beside the detectors' staging directories, so that
 * what is there is only ever an unfinished temp file, and what is in staging only ever a complete one.
 */
export function rsyncTempDir(staging: string): string {
  return path.join(path.dirname(staging), '.rsync-temp', path.basename(staging));
}

/** A path of raw bytes joined from a directory (a string or bytes) and a name. */
function joinRaw(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/**
 * One rsync run of the current assignment: with or without removal, into `dest`, optionally limited to `only`,
 * linking files unchanged since their copy in `linkDest` from there.
 */
interface RunHow {
  removeSource: boolean;
  dest: string;
  only?: string[];
  onRemoved?: (names: string[]) => void;
  linkDest?: string;
  /** Compares only (rsync's --dry-run): what `sent` names differs from its copy in `dest`; nothing moves. */
  dryRun?: boolean;
  /** Its files have copies on the PPU already (settle mode's, linked or compared): no --max-size, they take no more room. */
  copied?: boolean;
  /** Ends the run instead of the run context's signal (a listing after that one ended it: #listCut). */
  signal?: AbortSignal;
}
type RunWith = (how: RunHow) => Promise<RsyncResult>;

/** How long the listing after a drain run its bound ended may take (#listCut). */
const CUT_LISTING_MS = 3000;

/** Names furka-agent gives files of its own below its root (src/agent/barrier.ts, source-files.ts). */
const AGENT_NAMES = '.furka-agent-*';

export class RsyncTransport implements Transport {
  /** Files left in staging (settle_ms: among the copies settling) because their source was changing; usually none. */
  #stillChanging = new Set<string>();
  /**
   * Complete files in staging to place, by relative path: ones that could not be renamed into place (a planted
   * link, say) are offered again after a growing wait (unplaced-files.ts).
   */
  readonly #unplaced = new UnplacedFiles<{ path: string }>();
  /** settle_ms: when furkad last saw each detector file change (monotonicMs()). */
  #unchangedSince = new Map<string, number>();
  /** Bytes of files set aside for ended shifts not yet taken off the count of the shift that received them (Detectors). */
  #owedBytes = { shift: 0n, bytes: 0 };
  /** The run that lists the files left over --max-size failed, said once until one succeeds (#listingOf). */
  #saidUnlisted = false;
  /** settle_ms: files found in staging at start; placed if the detector no longer has them (see #settledRun). */
  #leftovers = new Set<string>();
  /** The staging directory the settling copies above belong to (a shift may give the detector another target). */
  #staging: string | undefined;
  /** Files the detector has whose names furkad cannot hand over, as shown (escapeName): left there, reported. */
  #refused = new Set<string>();
  /** Directories too deep to take (rsync-depth.ts): hidden from the sender, the ones too long left there, reported. */
  #deep = new DeepDirs();
  #warnedNoReports = false;
  /** The next run's rsync, started during the pause before it (see RsyncLauncher). */
  #launcher = new RsyncLauncher();
  /** The last run that took everything (not settle mode's limited one): the next run is most likely the same. */
  #lastFullRun: RsyncRun | undefined;
  readonly #provenance: StagedProvenance;
  /** Room on the PPU ramdisk: --max-size after a file did not fit (staging-room.ts). */
  readonly #room: StagingRoom;
  /** Checksums are taken one batch at a time, in the order the batches complete (one read buffer). */
  #checksumming: Promise<unknown> = Promise.resolve();
  /** Whether the daemon removes sources, and the files placed whose sources it could not remove (rsync-removal.ts). */
  readonly #removal: RsyncRemoval;
  /** Files the runs learned of and left on the detector, and the ended shifts they are owed to (rsync-owed.ts, A5). */
  readonly #owed: RsyncOwed;
  /** The current assignment's source, for #removal's records (a file's path below the module). */
  #source = '';

  /**
   * `keptFile`: where the files placed whose sources the daemon could not remove are kept (state_dir); `owedFile`:
   * where the files left on the detector and those owed to ended shifts are (state_dir).
   */
  constructor(readonly id: string, private readonly settings: { rsync: string; timeoutS: number; namesFilter: string; keptFile?: string; owedFile?: string },
    private readonly log: Logger) {
    this.#provenance = new StagedProvenance(id, log);
    this.#room = new StagingRoom(id, log);
    this.#removal = new RsyncRemoval(id, log, settings.keptFile);
    this.#owed = new RsyncOwed(id, log, settings.owedFile);
  }

  async run(ctx: RunContext): Promise<RunOutcome> {
    const a = ctx.assignment;
    this.#source = a.source;
    this.#owed.runsIn(ctx.shift.usertime);
    // Where files land (staging, or the shift's directory itself): its free space limits them after one did not fit.
    const landing = a.config.remove_source ? ctx.staging : ctx.dir.root;
    const maxSize = await this.#room.limit(landing);
    // Every place a file lands with its relative path: a directory too long for one of them is never taken.
    const settling = a.config.settle_ms > 0 ? [settlingDir(ctx.staging)] : [];
    const budget = DeepDirs.budget(a.config.remove_source ? [ctx.staging, ...settling, ctx.dir.root] : [ctx.dir.root]);
    const filters = this.#deep.rules(budget);
    // Read for every run: a password copied in after a refusal is taken at the next try.
    let login: RsyncLogin;
    try {
      login = rsyncLogin(a.config);
    } catch (e) {
      return { verdict: 'retry', ...keyFileOutcome('rsync_password_file', e), transferred: 0, bytes: 0, refused: [...this.#refused, ...this.#deep.refused] };
    }
    // Files owed to an ended shift are taken only once the place they are set aside in is ready (its record written):
    // taken onto a full PPU ramdisk without it, they could be set aside nowhere, and would fill it for good (A5).
    const unready = a.config.remove_source ? await this.#unreadyOwed(ctx) : [];
    // Not listed for being left out, not for being gone from the detector; with settle_ms they are listed and settle,
    // and only the take run leaves them out (#settledRun).
    const leftOut = new Set(unready);
    const kept = (rel: string): boolean => this.#unplaced.has(rel) || leftOut.has(rel);
    const runWith: RunWith = ({ removeSource, dest, only, onRemoved, linkDest, dryRun, copied, signal }) => this.#run({
      rsync: this.settings.rsync,
      host: a.config.remoteIP,
      port: a.config.port,
      module: a.config.module,
      source: a.source,
      user: login.user,
      password: login.password,
      dest,
      uid: ctx.shift.uid,
      gid: ctx.shift.gid,
      removeSource,
      // Straight into the user's directory (no staging): as the shift, never as root (docs/threat-model.md).
      asShift: !a.config.remove_source,
      ...(only ? { only } : {}),
      // furka-agent's own names (a barrier mark, a file taken aside to be deleted) if one runs, or ran, on
      // this detector too: never the user's data.
      // And furkad's own staging name anywhere in the source: with usrdir empty it would be placed into furkad's
      // staging itself (docs/threat-model.md).
      exclude: [...a.config.exclude.split(/\s+/).filter(Boolean), AGENT_NAMES, STAGING_NAME],
      // A limited run takes only files a listing run of these rules found (its --files-from names are not anchored alike).
      // Files placed whose sources the daemon could not remove are not pulled again while it cannot.
      ...(only ? {} : { filters, skip: a.config.remove_source ? [...this.#removal.skipped(a.source), ...(a.config.settle_ms > 0 ? [] : unready)] : [] }),
      namesFilter: this.settings.namesFilter,
      ...(a.config.remove_source ? { tempDir: rsyncTempDir(ctx.staging) } : {}),
      ...(linkDest ? { linkDest } : {}),
      ...(maxSize === undefined || copied ? {} : { maxSize }),
      ...(dryRun ? { dryRun } : {}),
      // Runs into staging and its settling copies only (remove_source): root's own file system, probed in rsync's temp
      // dir beside them (root's, 0700, emptied whenever staging is prepared), never in a directory a user can write.
      ...(a.config.remove_source && rsyncComparesNanoseconds(this.settings.rsync) && keepsNanoseconds(rsyncTempDir(ctx.staging)) ? { exactTimes: true } : {}),
      timeoutS: this.settings.timeoutS,
    }, signal ?? ctx.signal, onRemoved);

    let result: RsyncResult;
    /** What the runs that asked the daemon to remove sources taught (rsync-removal.ts). */
    let removal: RemovalNews = 'untold';
    if (!a.config.remove_source) {
      // Without remove_source there is no changed-source check to wait for, so no staging either: rsync
      // names each file itself. Every run lists every file still on both sides: only new ones are news.
      result = await runWith({ removeSource: false, dest: ctx.dir.root });
      await ctx.completeInPlace(result.sent);
    } else {
      // Each file the daemon reports removed is complete in staging: it is placed and handed over while
      // the run goes on (F2, F9). What is left at the end (a daemon that does not report removals, files
      // an earlier run could not place) is placed then, unless its source changed while it was sent.
      const offered = new Set<string>();
      const placing: Array<Promise<void>> = [];
      /** Bytes of the files set aside for ended shifts: not the current shift's (Detectors counts per shift). */
      let owedBytes = 0;
      // `failed`: files whose sources the daemon could not remove (complete: it found them unchanged first).
      const place = (rels: string[], failed: ReadonlySet<string> = new Set()): void => {
        if (rels.length === 0) return;
        for (const rel of rels) {
          offered.add(rel);
          this.#stillChanging.delete(rel);
        }
        // A file placed before, pulled again while its source stays, is not placed again.
        const fresh = this.#removal.sortOut(ctx.staging, a.source, rels, failed).catch(() => rels);
        // One furkad knew of before a shift change and could not take then is that ended shift's (A5): set aside for it.
        const sorted = fresh.then((f) => this.#byShift(ctx, f));
        // Each file's checksum from what arrived, and its provenance, before it gets its final name (I1, I3).
        const sums = this.#checksumming.then(async () => this.#checksums(ctx, (await sorted).own)).catch(() => new Map<string, string>());
        this.#checksumming = sums;
        placing.push(Promise.all([sorted, sums]).then(([f, s]) => ctx.complete(f.own, s)).then((p) => this.#placed(p)));
        placing.push(sorted.then(async (f) => {
          for (const [owed, owedRels] of f.owed) owedBytes += await this.#setAsideOwed(ctx, owed, owedRels);
        }));
      };
      // The daemon refused to remove at the last try: it is asked again with no file, and nothing is copied
      // (into staging, where the PPU's fill guard cannot free it) until it takes --remove-source-files.
      const asked = this.#removal.refused ? await runWith({ removeSource: true, dest: ctx.staging, only: [] }) : undefined;
      if (asked) removal = this.#removal.learn(asked, a.config.module);
      if (asked && removal !== 'removed') {
        result = asked;
      } else if (a.config.settle_ms > 0) {
        const settled = await this.#settledRun(ctx.staging, a.config.settle_ms, runWith, place, leftOut);
        result = settled.result;
        if (settled.took) removal = this.#removal.learn(result, a.config.module);
      } else {
        const again = this.#removal.pulledAgain(a.source);
        result = await runWith({ removeSource: true, dest: ctx.staging, onRemoved: place });
        result = { ...result, bytes: Math.max(0, result.bytes - again(result.sent)) };
        // Before learn(): a run that hid the kept files (the daemon could not remove) lists none of them.
        if (classifyExit(result.code, result.stderr) === 'ok') {
          this.#removal.listed(a.source, [...result.files, ...result.overMax]);
          this.#owed.listed(a.source, [...result.files, ...result.overMax], kept);
        }
        removal = this.#removal.learn(result, a.config.module);
      }
      // A run that went well but gave the daemon nothing to remove while it cannot: it is asked to remove one kept
      // file again, so that the detector is up again once the daemon can, without waiting for a new file.
      const went = besidesRemoval(result.code, result.stderr);
      if (removal === 'untold' && this.#removal.failing !== undefined && !this.#removal.refused && classifyExit(went.code, went.stderr) === 'ok') {
        await this.#probeRemoval(ctx, runWith, a.config.module);
      }
      await Promise.all(placing);
      const due = this.#unplaced.due().map((u) => u.path);
      const rest = [...new Set([...due, ...result.files])].filter((r) => !offered.has(r));
      const complete = rest.filter((r) => !result.changed.has(r));
      result.changed.forEach((r) => this.#stillChanging.add(r));
      // A source gone before the daemon came to remove it says nothing of whether it reports removals (tester h10).
      if (result.removed.size === 0 && result.code === 0 && result.files.some((r) => !result.changed.has(r) && !result.vanished?.has(r))) this.#warnNoRemovalReports();
      if (result.vanished?.size) {
        // Sent whole, so placed: one deleted on the detector meanwhile exists nowhere else. One renamed (its directory
        // renamed) is taken again under its new name, and so delivered under both (README, "Known limits").
        this.log.warn({ detector: this.id, files: result.vanished.size, e_g: [...result.vanished].slice(0, 3) },
          'sources renamed or deleted on the detector after they were sent, before the daemon could remove them: placed as sent; one renamed arrives again under its new name');
      }
      place(complete, removal === 'failed' ? new Set(failuresIn(result.stderr).keys()) : new Set());
      await Promise.all(placing);
      // Placing renamed the files out of staging, and rsync has exited: the directories it made there for them go
      // too, once empty (staging-dirs.ts); else staging kept an empty copy of every source directory ever pulled.
      await this.#removeEmptied(ctx.staging, offered);
      // Known complete and left on the detector (no room for it: --max-size, the file a run failed on or was cut in) or, with
      // settle_ms, settling: the current shift's if taken in it, the ending one's after a shift change (A5).
      // Known as listed (size, mtime): a file taken later under its name is the ending shift's only if it is that one.
      const listedIn = a.config.settle_ms > 0 ? settlingDir(ctx.staging) : ctx.staging;
      // A drain run its bound ended at a shift change (a large file on a slow link): the files behind it in rsync's
      // list were learned of by the run too, and are the ending shift's (A5), listed now (bounded).
      if (ctx.signal.aborted && Number.isFinite(ctx.learnedBy)) await this.#listCut(runWith, listedIn);
      const listing = await this.#listingOf(result, runWith, listedIn);
      // And the file a run ended by a shift change's cut or drain bound was receiving: listed before the change (A5).
      this.#owed.learned(a.source, [...result.overMax, ...(result.unfinished !== undefined ? [result.unfinished] : []), ...this.#unchangedSince.keys()],
        (rel) => listing.get(rel));
      // Written before the files left on the detector are said: a furkad killed after the line knows them when started again.
      this.#owed.save();
      // Received by this shift's runs and set aside for an ended one: off this shift's count, also when set aside by a
      // later run than the one that received them (no room for their record then). With settle_ms they were received
      // (copied to settle, and counted) before the shift change, in the ended shift: nothing to take off.
      const aside = a.config.settle_ms > 0 ? 0 : owedBytes;
      const carry = this.#owedBytes.shift === ctx.shift.usertime ? this.#owedBytes.bytes : 0;
      const off = Math.min(result.bytes, carry + aside);
      this.#owedBytes = { shift: ctx.shift.usertime, bytes: carry + aside - off };
      result = { ...result, bytes: result.bytes - off };
    }
    // A run furkad ended for making no progress, or killed when it did not exit on its signal, may have left its
    // temp file: a partial copy of a file still on the detector (the sender removes a source only once it arrived).
    if ((result.stalled || result.killed) && a.config.remove_source) await this.#clearTempDir(rsyncTempDir(ctx.staging));
    // The run as it went besides removing: removal failures alone leave it ok, and the detector down for them.
    const rest = besidesRemoval(result.code, result.stderr);
    const ran = classifyExit(rest.code, rest.stderr);
    const cannotRemove = a.config.remove_source ? this.#removal.failing : undefined;
    const byRemoval = cannotRemove !== undefined && (ran === 'ok' || removal === 'refused');
    const verdict = byRemoval ? 'fatal' : ran;
    // The file that did not fit is named, and the next runs leave such files on the detector; the rest go on.
    const full = result.noRoom ? await this.#room.full(landing, result.noRoom.rel, result.noRoom.size) : undefined;
    // Files owed to an ended shift left on the detector (unready) wait for room too: the limit stays meanwhile.
    if (ran === 'ok' && unready.length === 0) this.#room.ran(result.overMax, maxSize);
    if (ran === 'ok' && a.config.remove_source) await this.#dropAbandoned(a.config.settle_ms > 0 ? settlingDir(ctx.staging) : ctx.staging, result);
    if (ran === 'ok') {
      this.#noteRefused(result.hidden, result.hiding ?? []);
      this.#noteDeep(result.hiding ?? [], budget);
    }
    // Only a daemon that ignored the names filter sends such names: what it removed is renamed and placed.
    if (result.strays.length > 0 && a.config.remove_source) (await this.#rescueNames(ctx.staging)).forEach((rel) => this.#offer(rel));
    this.#removal.save();
    this.#owed.save();
    return {
      verdict,
      message: verdict === 'ok' ? '' : byRemoval ? cannotRemove : result.ungreeted ? await this.#ungreetedMessage(ctx.assignment) : result.stalled ? this.#stalledMessage(result.stderr)
        : `rsync exit ${result.code}: ${full ?? authAdvice(result.stderr, login) ?? errorCause(result.stderr)}`,
      ...(verdict === 'ok' || byRemoval ? {} : ppuSideOfRsync(result.stderr, result.noRoom !== undefined, landing)),
      ...(verdict !== 'ok' && !byRemoval && result.noRoom ? { noRoom: true } : {}),
      transferred: result.transferred,
      bytes: result.bytes,
      refused: [...this.#refused, ...this.#deep.refused],
      note: this.#room.note(),
      // rsync's own code for SIGTERM, SIGINT, SIGHUP; runRsync gives it to a process killed by a signal too.
      ...(verdict !== 'ok' && result.code === 20 ? { interrupted: true } : {}),
    };
  }

  /**
   * The directories of `rels` in `dir` (staging, or `.settling`) that placing or dropping copies emptied, removed; a
   * failure is logged, never the run's.
   */
  async #removeEmptied(dir: string, rels: Iterable<string>): Promise<void> {
    try {
      await removeEmptiedParents(dir, rels);
    } catch (e) {
      this.log.warn({ detector: this.id, dir, err: e }, 'cannot remove the directories placing emptied; tried again when staging is next prepared');
    }
  }

  /** Why a run furkad ended for want of the daemon's greeting was ended (rsync-stall.ts watchGreeting). */
  async #ungreetedMessage(a: Assignment): Promise<string> {
    const { remoteIP: host, port } = a.config;
    // rsync looks a name up itself, and one whose DNS servers do not answer looks to this watch like a daemon that
    // said nothing: asked again (bounded), a name that still does not resolve is the reason (host-lookup.ts).
    if (isIP(host) === 0) {
      const unresolved = await lookUpHost(host, NAME_CHECK_MS).then(() => undefined, (e: Error) => e.message);
      if (unresolved !== undefined) return `rsync exit 30: ${unresolved} (rsync waited for it; run ended by furkad)`;
    }
    return `rsync exit 30: the detector's rsync daemon at ${hostPort(host, port)} accepted the connection but sent no ` +
      `greeting within ${connectTimeoutS(this.settings.timeoutS)} s (stopped or hung?), run ended by furkad`;
  }

  /** Why a run furkad ended for making no progress was ended, and what rsync said meanwhile, if anything. */
  #stalledMessage(stderr: string): string {
    // Not rsync's own closing lines: they only tell of furkad's SIGTERM.
    const said = errorCause(stderr).replace(/^rsync error: .*/, '');
    return `rsync exit 30: nothing received from the detector's rsync daemon for ${this.settings.timeoutS} s (rsync_timeout_s), ` +
      `run ended by furkad; the file being received stays on the detector and is taken again${said === '' ? '' : ` (rsync said: ${said})`}`;
  }

  /**
   * Single-thread mode (F8), before the run takes the one transfer slot: the daemon's greeting within the connect
   * timeout. One that accepts the connection and says nothing (rsync's --contimeout does not cover that) or takes
   * none is retried with back-off without holding the slot (rsync-greeting.ts).
   */
  async answers(ctx: RunContext): Promise<RunOutcome | undefined> {
    const { remoteIP: host, port } = ctx.assignment.config;
    const s = connectTimeoutS(this.settings.timeoutS);
    const how = await daemonGreets(host, port, s * 1000, ctx.signal);
    if (how === 'greeted' || how === 'failed') return undefined;
    const at = `the detector's rsync daemon at ${hostPort(host, port)}`;
    const message = typeof how === 'object' ? `${how.unresolved}; retrying, without taking the single transfer slot meanwhile`
      : how === 'silent'
      ? `${at} accepted the connection but sent no greeting within ${s} s (stopped or hung?); retrying, without taking the single transfer slot meanwhile`
      : `no connection to ${at} within ${s} s; retrying, without taking the single transfer slot meanwhile`;
    return { verdict: 'retry', message, transferred: 0, bytes: 0 };
  }

  /** The pause before the next run: its rsync process is started now, waiting at its gate until the run is due. */
  waitForWork(): Promise<void> {
    if (this.#lastFullRun) this.#launcher.prepare(this.#lastFullRun);
    return Promise.resolve();
  }

  /** No run soon (held for a shift change, backing off, idle): a process started ahead for one is let go without running. */
  standDown(): void {
    this.#launcher.discard();
  }

  /** What the last runs wrote to state_dir is flushed to disk before the stop ends (json-state.ts). */
  async close(): Promise<void> {
    this.#launcher.discard();
    await Promise.all([this.#owed.flushed(), this.#removal.flushed()]);
  }

  /** settle_ms: files seen by `since` are still settling; a drain waits for them, but not beyond settle_ms + 2 s. */
  pendingSince(since: number, a: Assignment): boolean {
    const settle = a.config.settle_ms;
    return settle > 0 && monotonicMs() < since + settle + 2000 && [...this.#unchangedSince.values()].some((t) => t <= since);
  }

  /**
   * A shift change is over for `shift`: every file a run of it (its drain's included) learned of and did not take is
   * that shift's whenever a later run takes it, also after a restart (rsync-owed.ts, A5). Returns how many.
   */
  owe(_learnedBy: number, shift: OwedShift): number {
    return this.#owed.owe(shift);
  }

  owes(usertime: bigint): boolean {
    return this.#owed.owes(usertime);
  }

  /** Files the loop set aside for the shift that ended (leaveBehind): no longer this transport's to offer. */
  forget(rels: string[]): void {
    this.#removal.setAside(this.#source, rels);
    this.#owed.taken(this.#source, rels);
    for (const rel of rels) {
      this.#unplaced.drop(rel);
      this.#stillChanging.delete(rel);
      this.#leftovers.delete(rel);
    }
  }

  /** One rsync; `signal` ends it (a stop, a shift change that stopped waiting for it, a drain out of time). */
  #run(run: RsyncRun, signal: AbortSignal, onRemoved?: (names: string[]) => void): Promise<RsyncResult> {
    if (!run.only) this.#lastFullRun = run;
    return runRsync(run, signal, onRemoved, this.#launcher);
  }

  /**
   * The checksums of staged files, read from staging, with their provenance written onto them (I1, I3). Over
   * rsync this covers the PPU side only: what the detector wrote is not known here, rsync's own checks cover
   * the wire. A file gone or unreadable has none (the loop sorts it out, or it is handed over without one).
   */
  async #checksums(ctx: RunContext, rels: string[]): Promise<Map<string, string>> {
    const sums = new Map<string, string>();
    for (const rel of rels) {
      const hex = await this.#provenance.checksumOf(ctx.staging, ctx.shift, rel);
      if (hex !== undefined) sums.set(rel, tagged(hex));
    }
    return sums;
  }

  /**
   * The files owed to ended shifts whose keeping place cannot be made ready now (no room for its record on the PPU
   * ramdisk): left on the detector by this run. Made ready once, it stays so while files are set aside there.
   */
  async #unreadyOwed(ctx: RunContext): Promise<string[]> {
    const unready: string[] = [];
    for (const [owed, rels] of this.#owed.owedBelow(this.#source, ctx.shift.usertime)) {
      if (await ctx.setAside(owed, []).then(() => true, () => false)) continue;
      unready.push(...rels);
    }
    return unready;
  }

  /**
   * Files taken into staging, sorted: the current shift's own, and those owed to an ended shift (rsync-owed.ts), by
   * that shift (A5).
   */
  #byShift(ctx: RunContext, rels: string[]): { own: string[]; owed: Map<OwedShift, string[]> } {
    const own: string[] = [];
    const owed = new Map<OwedShift, string[]>();
    for (const rel of rels) {
      let staged: Staged | undefined;
      try {
        const st = lstatSync(path.join(ctx.staging, rel), { bigint: true });
        const s = st.mtimeNs / 1_000_000_000n;
        // Whole seconds as rsync lists them: rounded down, also before 1970 (BigInt division rounds towards zero).
        staged = { size: Number(st.size), mtimeMs: Number(st.mtimeMs), mtimeS: Number(st.mtimeNs < 0n && s * 1_000_000_000n !== st.mtimeNs ? s - 1n : s) };
      } catch { /* gone from staging: whoever it was owed to, nothing is set aside */ }
      const to = this.#owed.owedTo(this.#source, rel, ctx.shift.usertime, staged);
      if (to === undefined) own.push(rel);
      else if (owed.has(to)) owed.get(to)!.push(rel);
      else owed.set(to, [rel]);
    }
    return { own, owed };
  }

  /**
   * Files in staging owed to the ended shift `owed`: given its owner and provenance (received as the current shift's)
   * and set aside for it by the loop, which places them into its directory and hands them over with it (A5). One
   * that cannot be is offered again, and set aside then; never placed in the current shift.
   */
  async #setAsideOwed(ctx: RunContext, owed: OwedShift, rels: string[]): Promise<number> {
    const ready: string[] = [];
    const sizes = new Map<string, number>();
    for (const rel of rels) {
      try {
        // Staging is root's alone, the staged file rsync's own regular file: lchown all the same.
        sizes.set(rel, (await lstat(path.join(ctx.staging, rel))).size);
        await lchown(path.join(ctx.staging, rel), owed.uid, owed.gid);
        // In the checksums' turn (one read buffer), as the current shift's files are (#checksums).
        const sum = this.#checksumming.then(() => this.#provenance.checksumOf(ctx.staging, owed, rel));
        this.#checksumming = sum.catch(() => undefined);
        await sum;
        ready.push(rel);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          this.#placed({ placed: [], failed: [], gone: [rel] });
          continue;
        }
        this.log.error({ detector: this.id, file: rel, err: (e as Error).message }, "cannot give a file owed to an earlier shift that shift's owner; it is tried again");
        this.#placed({ placed: [], failed: [rel], gone: [] });
      }
    }
    // Not set aside (no room for its record on a full PPU ramdisk, say): still in staging, offered again.
    const moved = new Set(await ctx.setAside(owed, ready).catch((e: Error) => {
      this.log.warn({ detector: this.id, files: ready.length, err: e.message }, 'files owed to an earlier shift cannot be set aside for it yet; they are tried again');
      return [] as string[];
    }));
    if (moved.size > 0) {
      this.#removal.setAside(this.#source, [...moved]);
      this.log.info({ detector: this.id, files: moved.size, uid: owed.uid, gid: owed.gid, usertime: String(owed.usertime) },
        "files furkad knew of before a shift change, taken now, set aside for that ended shift: placed into its directory with its owner");
    }
    const left = ready.filter((rel) => !moved.has(rel));
    this.#owed.taken(this.#source, moved);
    for (const rel of moved) this.#unplaced.drop(rel);
    if (left.length > 0) this.#placed({ placed: [], failed: left, gone: [] });
    return [...moved].reduce((n, rel) => n + (sizes.get(rel) ?? 0), 0);
  }

  /** A file that could not be placed is offered again every run; one placed, or gone from staging, no more. */
  #placed(p: Placed): void {
    this.#owed.taken(this.#source, [...p.placed, ...p.gone]);
    this.#removal.placed(this.#source, p.placed);
    this.#removal.gone(this.#source, p.gone);
    const now = monotonicMs();
    for (const rel of p.failed) this.#unplaced.failed({ path: rel }, now);
    for (const rel of [...p.placed, ...p.gone]) this.#unplaced.drop(rel);
  }

  /** A complete file in staging, to be placed with the next run. */
  #offer(rel: string): void {
    this.#unplaced.offer({ path: rel });
  }

  /**
   * settle_ms (F2, for writers that pause in the middle of a file): a first run copies beside staging
   * (rsync-settling.ts) and removes nothing; a file is taken (removed from the detector, placed) only once
   * furkad has seen it unchanged for settle_ms, by a second run over just those files into staging, which
   * links the copy made (nothing is sent twice). The time is furkad's own, so the two servers' clocks do not
   * matter. Only the second run writes into staging: whatever furkad is killed in, staging holds no copy of
   * a file never known complete.
   */
  async #settledRun(staging: string, settleMs: number, runWith: RunWith, place: (rels: string[]) => void, unready: ReadonlySet<string>): Promise<{ result: RsyncResult; took: boolean }> {
    const settling = settlingDir(staging);
    // Files placed before, pulled again to have their sources removed now, are not counted again.
    const again = this.#removal.pulledAgain(this.#source);
    // What this run lists is the detector as it was when the run began (rsync builds its file list first): a file
    // counts as unchanged up to then, not up to the run's end, which a large file being copied puts seconds later.
    const listedAt = monotonicMs();
    const pulled = await this.#lookAtCopies(settling, await runWith({ removeSource: false, dest: settling }), runWith);
    const look = { ...pulled, bytes: Math.max(0, pulled.bytes - again(pulled.sent)) };
    const now = monotonicMs();
    for (const rel of look.sent) this.#unchangedSince.set(rel, now);
    for (const rel of look.files) if (!this.#unchangedSince.has(rel)) this.#unchangedSince.set(rel, now);
    // A listing run removes nothing: what it copied beside staging before it failed (the PPU ramdisk full, the
    // daemon gone) has its source still on the detector, perhaps still being written, or a writer's temp name.
    // None of it is placed at the run's end; it is settling like any file seen (so neither taken for a
    // leftover of a killed furkad when staging is prepared again, nor kept once its source is gone), and the
    // next runs take what settles, once. Only files an earlier run could not place are placed now.
    if (classifyExit(look.code, look.stderr) !== 'ok') {
      // Listed: its source is on the detector, so it is no leftover of a killed furkad's removal either.
      await this.#settleAgain(staging, look.files.filter((rel) => this.#leftovers.has(rel)));
      return { result: { ...look, files: [], sent: [], removed: new Set(), changed: new Set(), strays: [] }, took: false };
    }
    this.#removal.listed(this.#source, [...look.files, ...look.overMax]);
    // Not forgotten: files taken already (their sources gone), waiting to be placed, also a killed furkad's left in
    // staging, which are offered below: one owed to an ended shift is set aside for it then. Forgotten for not being
    // listed, they were placed as the current shift's (found by a hostile tester: a furkad killed while it set aside
    // 91 owed files, 17 of them went to the new shift's directory, some still owned by the old shift's user).
    this.#owed.listed(this.#source, [...look.files, ...look.overMax], (rel) => this.#unplaced.has(rel) || this.#leftovers.has(rel));
    // A file left over --max-size is on the detector all the same: neither gone, nor a leftover whose source is gone.
    const seen = new Set(look.files);
    const listed = new Set([...look.files, ...look.overMax]);
    for (const rel of this.#unchangedSince.keys()) {
      if (listed.has(rel)) continue;
      // Gone from the detector without furkad removing it: its writer deleted or renamed it.
      this.#unchangedSince.delete(rel);
      this.#stillChanging.add(rel);
    }
    // Left in staging by a furkad killed between removal and placing: complete, their source is gone.
    for (const rel of this.#leftovers) if (!listed.has(rel)) this.#offer(rel);
    await this.#settleAgain(staging, [...this.#leftovers].filter((rel) => listed.has(rel)));
    this.#leftovers.clear();
    // Only what this run saw unchanged: a copy over --max-size that #lookAtCopies could not compare is not known unchanged.
    const settled = [...this.#unchangedSince].filter(([rel, since]) => seen.has(rel) && listedAt - since >= settleMs && !unready.has(rel)).map(([rel]) => rel);
    // Only what the second run took counts as listed: nothing else may be placed at the end of this one.
    if (settled.length === 0) return { result: { ...look, files: [], sent: [], removed: new Set() }, took: false };
    const taken = (rels: string[]): void => {
      for (const rel of rels) dropCopy(settling, rel);
      place(rels);
    };
    const took = await runWith({ removeSource: true, dest: staging, only: settled, onRemoved: taken, linkDest: settling, copied: true });
    // Files gone from the detector since the listing (their directory renamed, say): the next listing shows them
    // under their new names, or not at all; their copies are dropped then (#dropAbandoned). No outage.
    const { code, stderr } = besidesGone(took.code, took.stderr, settled.length);
    const take = { ...took, code, stderr, hidden: look.hidden, overMax: look.overMax, hiding: look.hiding ?? [] };
    // In staging now, complete: its copy is no longer needed. One the run did not take (its source gone meanwhile,
    // the run failed) stays settling: the next first run drops it or has it taken again.
    for (const rel of new Set([...take.files, ...take.removed])) {
      if (take.changed.has(rel)) continue;
      this.#unchangedSince.delete(rel);
      dropCopy(settling, rel);
    }
    // Its source changed while it was sent and stays on the detector: what arrived settles again, out of staging.
    for (const rel of take.changed) {
      this.#unchangedSince.set(rel, monotonicMs());
      await backToSettling(staging, settling, rel);
    }
    // The directories the first runs made for the copies taken, once empty: else `.settling` kept an empty copy of
    // every source directory ever pulled, with its mode, on the PPU ramdisk for good.
    await this.#removeEmptied(settling, settled);
    return { result: { ...take, transferred: take.transferred + look.transferred, bytes: take.bytes + look.bytes,
      listing: new Map([...(look.listing ?? []), ...(take.listing ?? [])]) }, took: true };
  }

  /**
   * After a drain run its bound ended: the run had the detector's whole file list, but itemizes a file only as its data
   * begins, so only the one it was receiving was known (`unfinished`), and every file behind it went to the next shift
   * although the log said they stayed the ending one's (found by a hostile tester: 58 files closed before StartShift,
   * behind a 100 MB one on a 10 MB/s link). What the detector holds now is listed (--dry-run, at most
   * CUT_LISTING_MS, so the change stays under busctl's 25 s) and known: owed to the ending shift by owe().
   * A file completed between the run's start and this listing goes with them, as one the run listed would have.
   */
  async #listCut(runWith: RunWith, dest: string): Promise<void> {
    const bound = new AbortController();
    const timer = setTimeout(() => bound.abort(), CUT_LISTING_MS);
    try {
      const look = await runWith({ removeSource: false, dest, dryRun: true, copied: true, signal: bound.signal });
      if (classifyExit(look.code, look.stderr) !== 'ok') {
        this.log.warn({ detector: this.id, err: errorCause(look.stderr) || `rsync exit ${look.code}` }, 'cannot list the detector after the ' +
          "drain's run was ended: only the file it was receiving stays the ending shift's; the others it had not taken go to the next shift");
        return;
      }
      this.#owed.learned(this.#source, look.files, (rel) => look.listing?.get(rel));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * What the detector has of the files a run listed (its itemize lines) and of those it left over --max-size, which it
   * did not itemize: those are listed by a run that only compares (--dry-run, no limit, just them) into `dest`, but
   * for files owed already (their listing before the change counts, not a later one: thousands of them may wait behind
   * a full ramdisk). None for them if that run fails: they are known without a listing then (rsync-owed.ts).
   */
  async #listingOf(result: RsyncResult, runWith: RunWith, dest: string): Promise<Map<string, Listing>> {
    const listing = new Map(result.listing ?? []);
    const over = result.overMax.filter((rel) => !listing.has(rel) && this.#owed.listens(this.#source, rel));
    if (over.length === 0) return listing;
    const compared = await runWith({ removeSource: false, dest, only: over, dryRun: true, copied: true });
    if (classifyExit(compared.code, compared.stderr) !== 'ok') {
      // Tried again by the next run. A shift change before it owes them by name: the ending shift's when taken,
      // unless one is listed otherwise later (rsync-owed.ts).
      if (!this.#saidUnlisted) {
        this.log.warn({ detector: this.id, files: over.length, e_g: over.slice(0, 3), err: errorCause(compared.stderr) || `rsync exit ${compared.code}` },
          'cannot list the size and mtime of the files left on the detector for want of room (rsync --dry-run failed); tried again ' +
          "with the next run; a shift change before then gives them to the ending shift by their names alone");
        this.#saidUnlisted = true;
      }
      return listing;
    }
    this.#saidUnlisted = false;
    for (const [rel, l] of compared.listing ?? []) listing.set(rel, l);
    return listing;
  }

  /**
   * A listing run under --max-size (the PPU ramdisk short of room: staging-room.ts) leaves every file over it
   * unlooked at, the copies an earlier run made beside staging among them. Those need no more room: a run that only
   * compares (--dry-run, no limit) looks at them, so that they settle and are taken (linked, not sent again), and
   * are neither taken for gone from the detector nor pulled again. Found by a hostile tester: with 2.5 MB free and
   * five 1 MB files, the two copied were dropped as "vanished" and pulled again, run after run, and none was
   * delivered. A copy whose source changed since is dropped: that file waits on the detector with the others.
   */
  async #lookAtCopies(settling: string, pulled: RsyncResult, runWith: RunWith): Promise<RsyncResult> {
    if (pulled.overMax.length === 0 || classifyExit(pulled.code, pulled.stderr) !== 'ok') return pulled;
    const copied: string[] = [];
    for (const rel of pulled.overMax) {
      if (this.#unchangedSince.has(rel) && (await lstat(path.join(settling, rel)).catch(() => undefined))?.isFile()) copied.push(rel);
    }
    if (copied.length === 0) return pulled;
    const compared = await runWith({ removeSource: false, dest: settling, only: copied, dryRun: true, copied: true });
    // Not compared (the daemon gone, a source gone meanwhile): the cycle fails as its listing run would have.
    if (classifyExit(compared.code, compared.stderr) !== 'ok') return { ...pulled, code: compared.code, stderr: compared.stderr };
    const changed = new Set(compared.sent);
    for (const rel of changed) {
      this.#unchangedSince.delete(rel);
      dropCopy(settling, rel);
    }
    const same = new Set(compared.files.filter((rel) => !changed.has(rel)));
    return { ...pulled, files: [...pulled.files, ...same], overMax: pulled.overMax.filter((rel) => !same.has(rel)),
      listing: new Map([...(pulled.listing ?? []), ...(compared.listing ?? [])]) };
  }

  /**
   * While the daemon cannot remove sources, a run that gave it none to remove asks it to remove the smallest file
   * placed whose source stayed: once it can again, the detector is up without waiting for a new file, and the others
   * are taken off it. What arrives is not placed again; its bytes are not counted.
   */
  async #probeRemoval(ctx: RunContext, runWith: RunWith, module: string): Promise<void> {
    const rel = this.#removal.probe(ctx.assignment.source);
    if (rel === undefined) return;
    // Received beside staging (probeDir): staging holds only files to place, and this copy is most likely dropped.
    // A copy a probe that did not end left there is overwritten, or sorted out when staging is prepared (returnCopies).
    const dir = probeDir(ctx.staging);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const asked = await runWith({ removeSource: true, dest: dir, only: [rel] });
    const news = this.#removal.learn(asked, module);
    const rewritten = await this.#removal.probed(dir, ctx.staging, ctx.assignment.source, rel, asked, news);
    if (rewritten !== undefined) this.#offer(rewritten);
  }

  /**
   * Files found in staging when it was prepared whose source a first run lists on the detector: taken by a run
   * the daemon had not yet removed them for when furkad was stopped, or what a removing run received of a source
   * that changed meanwhile. Not known complete: dropped there, they settle again from their copy beside staging.
   */
  async #settleAgain(staging: string, rels: string[]): Promise<void> {
    for (const rel of rels) {
      this.#leftovers.delete(rel);
      await unlink(path.join(staging, rel)).catch(() => undefined);
    }
    if (rels.length > 0) this.log.info({ detector: this.id, files: rels.length }, 'files found in staging whose source is still on the detector dropped there; they are taken once they settle');
  }

  /**
   * The files a listing run found hidden by the names filter (rsync-names.ts): each logged once while it is on
   * the detector, all of them reported with every run (the loop shows them in lastError). Hidden by `exclude`
   * (a writer's temp files) is not news.
   */
  #noteRefused(hidden: Buffer[], hiding: Hiding[]): void {
    const now = new Set(hidden.filter((h) => !deliverable(h)).map(escapeName));
    for (const name of now) {
      if (this.#refused.has(name)) continue;
      this.log.error({ detector: this.id, file: name }, 'a file on the detector has a name furkad cannot hand over (not UTF-8, or ' +
        'with control characters; shown with such bytes as \\#ooo): it is left there, neither copied nor removed; rename it on the detector');
    }
    // furkad's own staging name, anywhere in the tree: excluded from every run, so said here as the agent transport
    // says it; before, such a file stayed there without a word (found by hostile tester h10). The agent's names
    // (AGENT_NAMES) are its own state where it runs beside the rsync daemon: not the operator's to rename.
    for (const h of hiding) {
      if (h.pattern !== STAGING_NAME) continue;
      const name = `${h.name}${h.dir ? '/' : ''}`;
      if (!this.#refused.has(name)) {
        this.log.error({ detector: this.id, [h.dir ? 'dir' : 'file']: name }, `a ${h.dir ? 'directory' : 'file'} on the detector is named ` +
          `${STAGING_NAME}, which furkad keeps for its own use: it is left there with what is in it, neither copied nor removed; rename it on the detector`);
      }
      now.add(name);
    }
    this.#refused = now;
  }

  /**
   * Directories the sender hid at a depth that could be too long (rsync-depth.ts): the ones too long are left on
   * the detector, each logged once while it is there and reported with every run, as the agent does (A2).
   */
  #noteDeep(hiding: Array<{ name: string; pattern: string; dir: boolean }>, budget: number): void {
    for (const dir of this.#deep.learn(hiding)) {
      this.log.error({ detector: this.id, dir },
        `a directory deeper than furkad takes (its path ${budget} bytes or more: with the ${DEEP_MAX - budget} of the PPU's staging or ` +
        'shift directory above it, a file in it would not fit PATH_MAX, 4096): nothing in it is taken or removed, it is left on the detector; move it up there');
    }
  }

  /** Once per process: the detector's daemon does not say which sources it removed, so files wait for the run's end. */
  #warnNoRemovalReports(): void {
    if (this.#warnedNoReports) return;
    this.#warnedNoReports = true;
    this.log.warn({ detector: this.id }, "the detector's rsync daemon does not report removed files ('max verbosity = 2' " +
      'missing in its rsyncd.conf): files get their final names only when each run ends, which adds latency');
  }

  /**
   * A file left in `dir` (staging, or settle_ms: among the copies settling) while still changing whose source is
   * gone from the detector (its writer deleted or renamed it) would stay there for ever.
   */
  async #dropAbandoned(dir: string, result: RsyncResult): Promise<void> {
    if (this.#stillChanging.size === 0) return;
    // Left over --max-size (no room on the PPU) is still on the detector.
    const listed = new Set([...result.files, ...result.overMax]);
    const gone: string[] = [];
    for (const rel of this.#stillChanging) {
      if (listed.has(rel) || this.#unchangedSince.has(rel)) continue;
      this.#stillChanging.delete(rel);
      await unlink(path.join(dir, rel)).catch(() => undefined);
      gone.push(rel);
    }
    if (gone.length === 0) return;
    await this.#removeEmptied(dir, gone);
    // One line for them all: a directory renamed on the detector is hundreds of files.
    this.log.warn({ detector: this.id, count: gone.length, files: gone.slice(0, 20) }, 'files vanished from the detector before furkad took them ' +
      '(their writer deleted or renamed them there): the copies furkad had made are dropped; under a new name they are taken as new files');
  }

  /**
   * Files found in staging when it is (re)prepared were transferred by a run whose promotion never
   * happened (furkad was killed in between, the source already removed on the detector): they are placed
   * by the next run like any unplaced file, unless that run finds their source still on the detector (F2).
   * Without this they would sit in a hidden directory for ever, never copied. Copies of files still settling
   * that no run of this furkad made are an earlier one's: never known complete, they are dropped.
   */
  async adoptLeftovers(ctx: RunContext): Promise<void> {
    const staging = ctx.staging;
    await this.#leaveStaging(staging);
    await this.#clearTempDir(rsyncTempDir(staging));
    // What a probe that did not end left beside staging: copies of files placed before dropped, others into staging.
    await this.#removal.returnCopies(probeDir(staging), staging, ctx.assignment.source);
    await this.#dropEarlierCopies(staging, ctx.assignment.config.settle_ms > 0);
    await this.#rescueNames(staging);
    // Directories an earlier furkad's placing (or a shift change setting files aside) emptied: no run is in flight.
    try {
      const swept = removeEmptyStagingDirs(staging);
      if (swept > 0) this.log.info({ detector: this.id, directories: swept }, 'empty directories removed from staging');
    } catch (e) {
      this.log.warn({ detector: this.id, err: e }, 'cannot remove the empty directories in staging; tried again when staging is next prepared');
    }
    const found = await filesBelow(staging, { missing: 'throw', keep: async (full, name) => !(await this.#oldTempFile(full, name)) });
    const unknown = found.filter((rel) => !this.#unplaced.has(rel) && !this.#stillChanging.has(rel) && !this.#unchangedSince.has(rel));
    // A file placed before whose source stayed (the daemon could not remove it), pulled again: not placed again.
    const fresh = await this.#removal.unplaced(staging, ctx.assignment.source, unknown);
    if (fresh.length === 0) return;
    // With settle_ms most of staging is files still settling, source present: the next run sorts them out.
    if (ctx.assignment.config.settle_ms > 0) {
      fresh.forEach((rel) => this.#leftovers.add(rel));
      return;
    }
    this.log.warn({ detector: this.id, files: fresh.length }, 'complete files from an interrupted run found in staging; they are placed with the next run');
    for (const rel of fresh) this.#offer(rel);
  }

  /**
   * Copies an earlier furkad's first runs made of files still settling (settle_ms) when it was stopped or
   * killed: their writers may have deleted them or renamed them away since, so they are never placed; a source
   * still on the detector is copied again and settles anew (F2). Named in the log.
   */
  async #dropEarlierCopies(staging: string, settles: boolean): Promise<void> {
    const known = (rel: string): boolean => this.#unchangedSince.has(rel) || this.#stillChanging.has(rel);
    const settling = settlingDir(staging);
    const dropped = await dropUnknownCopies(settling, staging, known, settles);
    try {
      removeEmptyStagingDirs(settling);
    } catch (e) {
      this.log.warn({ detector: this.id, dir: settling, err: e }, 'cannot remove the empty directories of copies settling; tried again when staging is next prepared');
    }
    if (dropped.length === 0) return;
    this.log.warn({ detector: this.id, count: dropped.length, files: dropped.slice(0, 20) },
      `copies of files still settling that this furkad does not know dropped from ${settling} (an earlier furkad's, or a failed ` +
      "run's): never known complete, never placed; a source still on the detector is copied again");
  }

  /**
   * A shift that gives the detector another target gives it another staging directory. The copies still settling
   * in the one it leaves (settle_ms: their sources are on the detector, perhaps still being written) are dropped
   * there, and settle again in the new one from the start. Left there, they were taken for a killed furkad's
   * leftovers when a later shift (or a restart) used that target again, and placed a second time, truncated
   * ones among them, owned by the shift they were copied for (found by a hostile tester). Complete files that
   * could not be placed are not among them: the loop set those aside for their shift (leaveBehind).
   */
  async #leaveStaging(staging: string): Promise<void> {
    const left = this.#staging;
    this.#staging = staging;
    if (left === undefined || left === staging) return;
    const settling = new Set([...this.#unchangedSince.keys(), ...this.#stillChanging]);
    for (const rel of settling) {
      if (this.#unplaced.has(rel)) continue;
      await unlink(path.join(left, rel)).catch(() => undefined);
    }
    await rm(settlingDir(left), { recursive: true, force: true });
    this.#unchangedSince.clear();
    this.#stillChanging.clear();
    this.#leftovers.clear();
    if (settling.size > 0) this.log.info({ detector: this.id, left, files: settling.size }, 'copies still settling dropped from the staging of the target left; they settle again in the new one');
  }

  /**
   * Called only between runs of this detector (its runs end before the loop prepares again, and a furkad's
   * runs die with it): whatever is in the temp directory is what a killed run was receiving. Its source is
   * still on the detector, so it is simply dropped.
   */
  async #clearTempDir(dir: string): Promise<void> {
    const left = await readdir(dir, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
    if (left.length > 0) this.log.info({ detector: this.id, files: left.length }, 'removing temp files of an rsync run that was killed; their sources are still on the detector');
    for (const name of left) await rm(joinRaw(Buffer.from(dir), name), { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }

  /**
   * A temp file an rsync run of an earlier furkad left in staging itself (before --temp-dir): rsync's temp
   * name, created by root for root only. A complete file has the shift's owner and the source's mode by the
   * time it has a name without the suffix, so one with a temp-like name is kept unless the shift is root's
   * and the source private (see README).
   */
  async #oldTempFile(full: string, name: string): Promise<boolean> {
    if (!RSYNC_TEMP.test(name)) return false;
    const st = await lstat(full);
    if (st.uid !== 0 || (st.mode & 0o077) !== 0) return false;
    await unlink(full);
    this.log.info({ detector: this.id, file: name }, 'removed the temp file of an rsync run an earlier furkad was killed in');
    return true;
  }

  /**
   * Files and directories in staging whose names furkad cannot hand over (not UTF-8, control characters:
   * pulled by a furkad without the names filter, or from a daemon that ignored it) are renamed in place to
   * their shown names (escapeName: such bytes as \#ooo), beside any file of that name, so that they are
   * placed and copied like the rest instead of staying in staging for ever. Returns the files renamed.
   */
  async #rescueNames(staging: string): Promise<string[]> {
    const renamed: string[] = [];
    const walk = async (dir: Buffer, rel: string, renamedAbove: boolean): Promise<void> => {
      for (const name of await readdir(dir, { encoding: 'buffer' })) {
        let full = joinRaw(dir, name);
        let shown = name.toString('utf8');
        let moved = renamedAbove;
        if (!deliverable(name)) {
          // Its shown form is up to four times as long (\#ooo for a byte): cut to fit NAME_MAX, with its hash.
          shown = await freeName(dir.toString('utf8'), fitName(escapeName(name), 0));
          await rename(full, path.join(dir.toString('utf8'), shown));
          this.log.warn({ detector: this.id, file: path.join(rel, escapeName(name)), as: path.join(rel, shown) },
            'a file in staging has a name grimseld cannot take (not UTF-8, or with control characters): renamed and placed under its shown name');
          full = Buffer.from(path.join(dir.toString('utf8'), shown));
          moved = true;
        }
        const st = await lstat(full);
        if (st.isDirectory()) await walk(full, path.join(rel, shown), moved);
        else if (st.isFile() && moved) renamed.push(path.join(rel, shown));
      }
    };
    await walk(Buffer.from(staging), '', false);
    return renamed;
  }
}

/** `name` in `dir`, or NAME.~N~ when that is taken (as placing does beside a different file). */
async function freeName(dir: string, name: string): Promise<string> {
  for (const candidate of candidateNames(name)) {
    if (!(await lstat(path.join(dir, candidate)).catch(() => undefined))) return candidate;
  }
  throw new Error(`${path.join(dir, name)} and all its numbered names are taken`);
}

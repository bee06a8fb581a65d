// The inotifywait child process (inotify-tools) and its events, restarted with back-off when it dies (A2).
import { deepDirs } from './scanner.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, statSync } from 'node:fs';
import { dirId, maxUserWatches, watchedDirs, type DirId } from './watch-check.js';
import type { Logger } from '../common/logger.js';
import { sleep } from '../common/abort.js';
import { CsvRecords } from './csv-records.js';
import type { Component } from '../common/service.js';
import { monotonicMs } from '../common/monotonic.js';

/** What the kernel said about a path below the root (bytes, relative to the root). */
export type WatchEvent =
  | { kind: 'created'; rel: Buffer }
  /** `closed`: by its writer's close (CLOSE_WRITE), not by a rename into the tree (MOVED_TO). */
  | { kind: 'complete'; rel: Buffer; closed?: boolean }
  | { kind: 'gone'; rel: Buffer }
  | { kind: 'dir-gone'; rel: Buffer }
  | { kind: 'dir-new'; rel: Buffer }
  | { kind: 'root-gone' }
  | { kind: 'overflow' };

/**
 * What one record of inotifywait means: an event for the catalog, or `unmounted`: the file system a watch was on
 * was unmounted, and the watch is gone with it (handled by the watcher itself, Watcher.#unmounted).
 */
export type RecordKind = WatchEvent['kind'] | 'unmounted';

/**
 * q_overflow must be asked for: inotifywait prints only events in its -e list, and without it the kernel's word
 * that its queue overflowed (events dropped) never reached the agent, so no rescan came and the files whose
 * events were dropped stayed on the detector until a restart (found 2026-12-01 with a writer at ~20 000 renames
 * a second on tmpfs). unmount too: each watch on a file system that is unmounted ends with it (the kernel says
 * UNMOUNT whatever the mask, but inotifywait prints only what it was asked for), the root's among them when its
 * ramdisk is unmounted to mount a fresh one: the run then watched nothing and said nothing, and no file written
 * afterwards was announced until a restart (found by a hostile tester).
 */
export const INOTIFY_EVENTS = 'close_write,moved_to,moved_from,create,delete,delete_self,move_self,q_overflow,unmount';

/**
 * What one CSV record of inotifywait says. An overflow belongs to no watch, so it has no directory: inotifywait
 * writes it as just "Q_OVERFLOW," (two fields).
 */
export function recordKind(fields: Buffer[]): RecordKind | undefined {
  if (fields.length === 2 && fields[0]!.toString('latin1') === 'Q_OVERFLOW') return 'overflow';
  const events = fields[1];
  if (!fields[0] || !events) return undefined;
  return classify(new Set(events.toString('latin1').split(',')));
}

/** Event-name set of one CSV record → what it means to the agent; unlisted combinations mean nothing. */
export function classify(events: Set<string>): RecordKind | undefined {
  if (events.has('Q_OVERFLOW')) return 'overflow';
  if (events.has('UNMOUNT')) return 'unmounted';
  if (events.has('DELETE_SELF') || events.has('MOVE_SELF')) return 'root-gone';
  const dir = events.has('ISDIR');
  if (events.has('CREATE') || events.has('MOVED_TO')) {
    if (dir) return 'dir-new';
    return events.has('MOVED_TO') ? 'complete' : 'created';
  }
  if (events.has('CLOSE_WRITE')) return dir ? undefined : 'complete';
  if (events.has('DELETE') || events.has('MOVED_FROM')) return dir ? 'dir-gone' : 'gone';
  return undefined;
}

export interface WatcherHooks {
  event(e: WatchEvent): void;
  /** Watches are in place (at start and after each restart): the caller rescans, as events were missed. */
  established(): void;
  /** Some files have no watch to report them (inotifywait cannot run, or the watch limit is reached): rescan. */
  rescan(): void;
  /** These directories (below the root) have no watch: look for new files in them now. */
  unwatched(dirs: Buffer[]): void;
  /** The root is another directory now (a file system mounted on it or unmounted): let go of handles on the old one. */
  rootReplaced?(): void;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/**
 * inotifywait's words when its first walk met an entry that was gone by the time it looked at it (a writer's temp
 * name, renamed meanwhile): it then ends (inotify-tools 3.14 to 3.22 at least); about every second start next to
 * a writer renaming as fast as it can. Run again, after a pause growing from the first to the second figure (ms).
 */
const VANISHED = /^Couldn't watch .*: No such file or directory$/;
const VANISHED_PAUSE_MS = [10, 1000] as const;
/** One warning per this many first walks lost in a row. */
const VANISHED_LOG_EVERY = 50;
/**
 * How inotify-tools 3.14 (EPEL 7: what CentOS 7 has) ends at a record that belongs to no watch it knows: the
 * kernel's word that its event queue overflowed (wd -1; q_overflow must be asked for, INOTIFY_EVENTS), and events
 * still queued for a directory just moved out of the tree. Its --csv output writes the record's directory without
 * looking whether it has one; later versions write an empty field. The restart and its rescan find every file, as
 * after any end: said as what it most likely was (a warning), not as a failure with a signal to chase (found
 * 2026-12-04 with 3.14 built from its source: "inotifywait ended … signal SIGSEGV" at each overflow, and the
 * agent's own word of the overflow never said; the same for a run directory moved out of the root with events
 * of it still queued).
 */
const CRASHED = 'signal SIGSEGV';
const CRASHED_SAY = 'inotifywait crashed (inotify-tools 3.14 does at a kernel event queue overflow, events dropped, or a directory moved out of the tree): restarting it, then rescanning';
/** Directories walked by scans are checked this long after (check()). */
const CHECK_DELAY_MS = 250;
/** Checks in a row that could not read the kernel's list before that is said. */
const UNREADABLE_SAY = 3;
/**
 * Runs of inotifywait ended on purpose (a directory it does not watch) are this far apart at least: from the
 * first figure, doubling while they come within RESTART_CALM_MS of each other, up to the second (ms).
 */
const RESTART_GAP_MS = [1000, 60_000] as const;
const RESTART_CALM_MS = 30_000;
/**
 * At inotify's limit on watches a directory without a watch is not worth a new run, whose walk would fail the
 * same way and leave no watch at all: its files are found by a rescan every POLL_MS instead, and an error says so
 * once per LIMIT_SAY_MS. The limit counts as reached from inotifywait's word of it, or when its watches and the
 * missing ones would come above this share of fs.inotify.max_user_watches (which counts every inotify user of
 * the same uid), until a check finds every directory watched.
 */
const LIMIT_SAY_MS = 600_000;
const LIMIT_MARGIN = 0.9;
const POLL_MS = 5000;
/** A directory still unwatched this long after the first look gets inotifywait run again (check()). */
const CONFIRM_MS = 1000;
const WATCH_LIMIT = /upper limit on inotify watches reached|No space left on device/;
/**
 * inotifywait's words when it could not watch a new directory (latin1: the path's own bytes). It then reports
 * nothing of the files in it: the agent looks into it every LOOK_MS until a new run watches it (A1), and a
 * barrier looks into it first (A5).
 */
const NEW_DIR_UNWATCHED = /^Couldn't watch new directory (.*): No such file or directory$/s;
/** Looks into directories without a watch are this far apart at least, and ten times their own cost. */
const LOOK_MS = 100;
/**
 * Directories walked whose watch could not be checked (no list of watches to read) are kept for a barrier up
 * to this many; beyond, the barrier walks the whole tree.
 */
const UNCHECKED_MAX = 10_000;
/**
 * The root's identity (device and inode) is compared with that of the directory the running inotifywait was
 * started on this often (ms): a file system mounted on the root, over the one watched or after it was unmounted,
 * raises no event on the old watches, and nothing written on it would ever be seen (checkRoot).
 */
const ROOT_CHECK_MS = 1000;
/** UNMOUNT records come one per watch on the file system: looked into once, this long (ms) after the first. */
const UNMOUNT_SETTLE_MS = 50;
/** Bytes of excluded paths passed as arguments at most (the kernel takes some 2 MB of arguments in all). */
const ARGS_MAX = 256 * 1024;

/**
 * Runs `inotifywait -m -r --csv` on the root. Not `-q`: its "Watches established." line on stderr is when
 * events start to count. A DELETE_SELF/MOVE_SELF of a subdirectory is its own watch ending (the DELETE/
 * MOVED_FROM in its parent said what matters); only the root's ends the run, and the restart waits for it.
 */
export class Watcher implements Component {
  readonly name = 'watches and first scan';
  #child: ChildProcess | undefined;
  /** The running child has its watches in place (and the rescan after them was asked for). */
  #established = false;
  /** The child this agent ended on purpose, to be run again at once. */
  #endedOnPurpose: ChildProcess | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  /** Directories to check (check()), and the timer that will. */
  #toCheck = new Map<DirId, Buffer>();
  #checkTimer: NodeJS.Timeout | undefined;
  #lastRestart = -Infinity;
  /** Inotify's limit on watches is reached (LIMIT_MARGIN), when that was last said, and the rescan timer meanwhile. */
  #atLimit = false;
  #limitSaidAt = -Infinity;
  /** Watches of the running inotifywait at the last check. */
  #watches = 0;
  #pollTimer: NodeJS.Timeout | undefined;
  #restartGap: number = RESTART_GAP_MS[0];
  /** Checks in a row that could not read the watch list. */
  #unreadable = 0;
  /**
   * Directories the running inotifywait does not watch (it said so, or a check found them missing) until a new
   * run's walk (latin1 path -> path and identity), and the timer that looks into them meanwhile.
   */
  #unwatched = new Map<string, { rel: Buffer; id: DirId }>();
  #lookTimer: NodeJS.Timeout | undefined;
  /** Directories walked whose watch could not be checked, until a new run's walk (latin1 path -> path). */
  #unchecked = new Map<string, Buffer>();
  /** The root's identity when the running inotifywait was started on it, the timer comparing, and one after UNMOUNT. */
  #rootId: DirId | undefined;
  #rootTimer: NodeJS.Timeout | undefined;
  #unmountTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Aborted by stop(): ends the pauses between runs at once. */
  readonly #stopping = new AbortController();
  readonly #rootPrefix: Buffer;

  constructor(private readonly root: string, private readonly hooks: WatcherHooks, private readonly log: Logger,
    private readonly command = 'inotifywait', private readonly pollMs = POLL_MS) {
    this.#rootPrefix = Buffer.from(root.endsWith('/') ? root : `${root}/`);
  }

  /**
   * Resolves once the first run has its watches; rejects if that run cannot start or dies first. A `signal`
   * aborted before then (a stop during start) ends the wait: stop() follows.
   */
  start(signal?: AbortSignal): Promise<void> {
    this.#rootTimer ??= setInterval(() => this.checkRoot(), ROOT_CHECK_MS);
    this.#rootTimer.unref();
    return new Promise((resolve, reject) => {
      let first = true;
      signal?.addEventListener('abort', () => {
        if (first) { first = false; resolve(); }
      }, { once: true });
      const loop = async (): Promise<void> => {
        let backoff = BACKOFF_MIN_MS;
        let walks = 0;
        let pause: number = VANISHED_PAUSE_MS[0];
        while (!this.#stopped) {
          const { established, code, vanished, onPurpose, said } = await this.#runOnce(() => {
            if (first) { first = false; resolve(); }
          });
          if (this.#stopped) return;
          if (established) {
            walks = 0;
            pause = VANISHED_PAUSE_MS[0];
          }
          if (onPurpose) {
            backoff = BACKOFF_MIN_MS;
            continue; // said when it was ended (#cover); the rescan after the new run's walk finds what was missed
          }
          // A first walk that lost the race with a writer's rename is no fault of the tree or the system: run
          // again (without growing the back-off of real failures).
          if (vanished && !established && this.#rootIsDirectory()) {
            if (++walks % VANISHED_LOG_EVERY === 1) {
              this.log.warn({ inotifywait: vanished, walks }, 'inotifywait lost its walk of the tree to a file renamed meanwhile; running it again');
            }
            await sleep(pause, this.#stopping.signal);
            pause = Math.min(pause * 2, VANISHED_PAUSE_MS[1]);
            continue;
          }
          walks = 0;
          pause = VANISHED_PAUSE_MS[0];
          if (first) {
            // Its own words first (a limit of the kernel's, say): the guess only when it said nothing.
            reject(new Error(`inotifywait on ${this.root} ended before its watches were in place (${code})` +
              (said ? `: ${said}` : '; is inotify-tools installed and the root a directory?')));
            return;
          }
          if (established) backoff = BACKOFF_MIN_MS;
          if (established && code === CRASHED) {
            this.log.warn({ exit: code, retryInMs: backoff }, CRASHED_SAY);
          } else {
            this.log.error({ exit: code, retryInMs: backoff }, 'inotifywait ended; restarting it, then rescanning');
          }
          // Without watches (a walk that keeps failing: the watch limit, say), files are found by rescans meanwhile.
          if (!established) this.hooks.rescan();
          await sleep(backoff, this.#stopping.signal);
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        }
      };
      void loop();
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#stopping.abort();
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#checkTimer);
    clearTimeout(this.#pollTimer);
    clearTimeout(this.#lookTimer);
    clearInterval(this.#rootTimer);
    clearTimeout(this.#unmountTimer);
    this.#child?.kill('SIGTERM');
  }

  /**
   * Whether the root was found to be another directory than the one the running inotifywait watches (device and
   * inode; the root is a real path): a file system was mounted on it, over the running one or after that was
   * unmounted (what detector software does between experiments). The old watches see nothing of the new one,
   * and say nothing either. Then that is said, hooks.rootReplaced() lets go of handles on the old root, and
   * inotifywait is run again at once on the new one: the rescan after its walk finds what was written there
   * meanwhile. Asked every ROOT_CHECK_MS, after an UNMOUNT, and by a barrier before its mark is placed (A5).
   * A run not established yet is left alone: it watches the root as it found it, and is checked once it is.
   * `againstWatches`: also whether the root is still in the run's list of watches (watch-check.ts): a tmpfs
   * unmounted and a fresh one mounted has the same device and inode as the old one had (the kernel hands the
   * freed device number out again, and a tmpfs's root is inode 1), so only the watch, gone with the old one,
   * tells them apart; read after an UNMOUNT and for a barrier only (it costs some µs per watch).
   */
  checkRoot(againstWatches = false): boolean {
    const child = this.#child;
    if (this.#stopped || !child || !this.#established || this.#endedOnPurpose === child) return false;
    const now = this.#currentRootId();
    if (now === undefined) return false; // gone: a DELETE_SELF says so (root-gone)
    const moved = now !== this.#rootId;
    if (!moved && !(againstWatches && !this.#rootWatched(child, now))) return false;
    this.log.warn({ root: this.root, watched: this.#rootId, now, found: moved ? 'another directory (device:inode)' : 'its watch gone with the file system unmounted' },
      'the root is no longer the directory inotifywait watches (a file system was mounted on it or unmounted from it): watching the new one, then rescanning');
    this.hooks.rootReplaced?.();
    this.#endedOnPurpose = child;
    this.#established = false;
    child.kill('SIGTERM');
    return true;
  }

  /** Whether `child`'s list of watches holds the root, of identity `id`; true when the list cannot be read. */
  #rootWatched(child: ChildProcess, id: DirId): boolean {
    try {
      return child.pid === undefined || watchedDirs(child.pid).has(id, Buffer.from(this.root));
    } catch {
      return true; // said by check() when it lasts; a rescan's check covers the root too
    }
  }

  /** The root's identity now (it is followed if a link), or undefined if it cannot be had. */
  #currentRootId(): DirId | undefined {
    try {
      return dirId(statSync(this.root, { bigint: true }));
    } catch {
      return undefined;
    }
  }

  /**
   * A file system the run watched was unmounted: its watches are gone. The root's own: checkRoot() runs the
   * watch again on what is there now. One below the root: a rescan walks what is there now, and its check
   * finds the directories without a watch (check()).
   */
  #unmounted(): void {
    this.#unmountTimer ??= setTimeout(() => {
      this.#unmountTimer = undefined;
      if (this.#stopped) return;
      if (!this.checkRoot(true)) this.hooks.rescan();
    }, UNMOUNT_SETTLE_MS);
    this.#unmountTimer.unref();
  }

  /**
   * Checks that the running inotifywait watches each of `dirs` (identity -> path below the root), which a scan just
   * walked: one it skipped without a word (watch-check.ts) would never report anything again. Checked together
   * CHECK_DELAY_MS later (a new subdirectory's watch may still be on its way; reading the kernel's list costs a
   * few ms, once for a burst of new directories); a directory unwatched then, and still there, gets inotifywait
   * run again: the rescan after its walk finds what went unseen, and checks again.
   */
  check(dirs: Map<DirId, Buffer>): void {
    if (!this.#established || dirs.size === 0) return;
    for (const [id, rel] of dirs) this.#toCheck.set(id, rel);
    this.#checkTimer ??= setTimeout(() => {
      this.#checkTimer = undefined;
      const toCheck = this.#toCheck;
      this.#toCheck = new Map();
      const child = this.#child;
      const missing = this.#missing(child, toCheck);
      if (missing === undefined) return this.#keepUnchecked(toCheck);
      for (const [id, rel] of toCheck) if (!missing.has(id)) this.#unwatched.delete(rel.toString('latin1'));
      if (missing.size === 0) {
        // The whole tree watched (a rescan's walk includes the root, ''): a later skip is worth a new run again.
        if ([...toCheck.values()].some((rel) => rel.length === 0)) this.#atLimit = false;
        return;
      }
      if (this.#nearLimit(missing.size)) this.#atLimit = true;
      this.#lookInto(missing);
      // Looked at once more a little later: under load inotifywait may be behind with the new subdirectories
      // of a new one. A new run costs a walk of the whole tree and a rescan.
      setTimeout(() => {
        const still = this.#missing(child, missing);
        if (still === undefined) return; // they stay unwatched (#unwatched) until a new run
        for (const [id, rel] of missing) if (!still.has(id)) this.#unwatched.delete(rel.toString('latin1'));
        if (still.size) this.#cover(child!, still);
      }, CONFIRM_MS).unref();
    }, CHECK_DELAY_MS);
    this.#checkTimer.unref();
  }

  /**
   * Whether every directory below the root is known to have its watch: a run is established, the watch limit
   * was not reached, and no directory is unwatched or waiting for its check. Only then does every rename or
   * removal of a directory come as an event (source-files.ts keeps directory handles only then).
   */
  everyDirWatched(): boolean {
    return this.#established && !this.#atLimit && this.#toCheck.size === 0 && this.#unchecked.size === 0 && this.#unwatched.size === 0;
  }

  /** Why some files are found by rescans rather than at once, for the agent's STATUS= line; '' while none is. */
  get degraded(): string {
    return this.#atLimit ? `inotify's watch limit reached: new directories rescanned every ${this.pollMs / 1000} s (raise fs.inotify.max_user_watches)` : '';
  }

  /**
   * Directories whose watch is not known to be in place: walked by a scan and not checked yet (or not
   * checkable), or found missing (until a new run's walk). A barrier looks into them first (A5).
   */
  unwatched(): Buffer[] {
    this.#prune();
    const out = [...this.#toCheck.values(), ...this.#unchecked.values()];
    for (const d of this.#unwatched.values()) out.push(d.rel);
    return out;
  }

  /** Walked directories the list of watches could not be read for: kept for a barrier, up to UNCHECKED_MAX. */
  #keepUnchecked(dirs: Map<DirId, Buffer>): void {
    for (const rel of dirs.values()) this.#unchecked.set(rel.toString('latin1'), rel);
    if (this.#unchecked.size > UNCHECKED_MAX) {
      this.#unchecked.clear();
      this.#unchecked.set('', Buffer.alloc(0)); // the root: all of them
    }
  }

  /** Forgets unwatched directories that are gone (or replaced): nothing in them to look for. */
  #prune(): void {
    for (const [key, d] of this.#unwatched) if (!this.#isDirectory(d.rel, d.id)) this.#unwatched.delete(key);
  }

  /**
   * `dirs` have no watch: looked into now, and again while that lasts (and they are there), LOOK_MS apart or
   * ten times what the last look cost, so that a file in them waits for a look rather than the next run of
   * inotifywait, which may be seconds away (A1). Not at inotify's watch limit: there may be thousands of them,
   * and the rescans every pollMs find their files (#cover).
   */
  #lookInto(dirs: Map<DirId, Buffer>): void {
    if (dirs.size === 0 || this.#stopped) return;
    for (const [id, rel] of dirs) this.#unwatched.set(rel.toString('latin1'), { rel, id });
    if (this.#atLimit) return;
    this.hooks.unwatched([...dirs.values()]);
    this.#lookAgain(LOOK_MS);
  }

  #lookAgain(delay: number): void {
    this.#lookTimer ??= setTimeout(() => {
      this.#lookTimer = undefined;
      if (this.#stopped || this.#atLimit) return;
      this.#prune();
      if (this.#unwatched.size === 0) return;
      const started = monotonicMs();
      this.hooks.unwatched([...this.#unwatched.values()].map((d) => d.rel));
      this.#lookAgain(Math.max(LOOK_MS, 10 * (monotonicMs() - started)));
    }, delay);
    this.#lookTimer.unref();
  }

  /** Whether the running inotifywait's watches and `more` would come within LIMIT_MARGIN of the limit on watches. */
  #nearLimit(more: number): boolean {
    const max = maxUserWatches();
    return max !== undefined && this.#watches + more > max * LIMIT_MARGIN;
  }

  /** Which of `dirs` the running `child` does not watch and are still there; undefined if that cannot be said. */
  #missing(child: ChildProcess | undefined, dirs: Map<DirId, Buffer>): Map<DirId, Buffer> | undefined {
    if (!child?.pid || child !== this.#child || !this.#established) return undefined; // a new run checks for itself
    try {
      const watched = watchedDirs(child.pid);
      this.#watches = watched.size;
      this.#unreadable = 0;
      return new Map([...dirs].filter(([id, rel]) => !watched.has(id, Buffer.concat([this.#rootPrefix, rel])) && this.#isDirectory(rel, id)));
    } catch (e) {
      // Once in a while it is ending meanwhile; never readable (a kernel without inotify's fdinfo): said once.
      if (++this.#unreadable === UNREADABLE_SAY) this.log.warn({ err: e }, "cannot read inotifywait's watch list: a directory it skips goes unnoticed until it is run again");
      return undefined;
    }
  }

  /**
   * Directories `child` does not watch: it is run again, unless that would not help or is not due yet. At the
   * watch limit (inotifywait said so, or its watches and these would come within LIMIT_MARGIN of
   * fs.inotify.max_user_watches) a new run's walk would fail and leave no watch at all: rescans every pollMs
   * find their files instead. Between two runs ended on purpose (RESTART_GAP_MS) rescans do too.
   */
  #cover(child: ChildProcess, missing: Map<DirId, Buffer>): void {
    const shown = [...missing.values()].map((rel) => `/${rel.toString('utf8')}`);
    const max = maxUserWatches();
    if (this.#nearLimit(missing.size)) this.#atLimit = true;
    if (this.#atLimit) {
      const now = monotonicMs();
      if (now - this.#limitSaidAt >= LIMIT_SAY_MS) {
        this.#limitSaidAt = now;
        this.log.error({ unwatched: shown.slice(0, 10), count: shown.length, watches: this.#watches, max_user_watches: max },
          `inotify's limit on watches is reached: files in these directories are found by a rescan every ${this.pollMs / 1000} s instead of at once; ` +
          'raise fs.inotify.max_user_watches (sysctl), or remove old empty directories from the detector ramdisk');
      }
      this.#poll();
      return;
    }
    if (this.#restartTimer !== undefined) return;
    const wait = Math.max(0, this.#lastRestart + this.#restartGap - monotonicMs());
    if (wait > 0) this.#poll();
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#stopped || child !== this.#child || !this.#established) return; // a new run checks for itself
      const now = monotonicMs();
      // The gap doubles while runs keep being ended on purpose, back to the first after a calm spell.
      this.#restartGap = now - this.#lastRestart < this.#restartGap + RESTART_CALM_MS ? Math.min(this.#restartGap * 2, RESTART_GAP_MS[1]) : RESTART_GAP_MS[0];
      this.#lastRestart = now;
      this.log.warn({ unwatched: shown.slice(0, 10), count: shown.length },
        'inotifywait does not watch every directory (it skips one when a file in it is renamed while it sets the watch up); running it again, then rescanning');
      this.#endedOnPurpose = child;
      this.#established = false;
      child.kill('SIGTERM');
    }, wait);
    this.#restartTimer.unref();
  }

  /** inotifywait could not watch the new directory at `dir` (its path as it printed it): looked into, and covered. */
  #newDirUnwatched(child: ChildProcess, dir: Buffer): void {
    if (this.#stopped) return;
    if (!dir.subarray(0, this.#rootPrefix.length).equals(this.#rootPrefix)) return;
    let rel = dir.subarray(this.#rootPrefix.length);
    while (rel.length > 0 && rel[rel.length - 1] === 0x2f) rel = rel.subarray(0, rel.length - 1);
    let id: DirId;
    try {
      const st = lstatSync(Buffer.concat([this.#rootPrefix, rel]), { bigint: true });
      if (!st.isDirectory()) return;
      id = dirId(st);
    } catch {
      return; // gone already: nothing in it to miss
    }
    const dirs = new Map([[id, rel]]);
    this.#lookInto(dirs);
    this.#cover(child, dirs);
  }

  /** A rescan pollMs from now (one at a time): the files of directories without a watch are found meanwhile. */
  #poll(): void {
    this.#pollTimer ??= setTimeout(() => {
      this.#pollTimer = undefined;
      if (this.#stopped) return;
      this.#prune();
      this.hooks.rescan();
    }, this.pollMs);
    this.#pollTimer.unref();
  }

  #isDirectory(rel: Buffer, id: DirId): boolean {
    try {
      const st = lstatSync(Buffer.concat([this.#rootPrefix, rel]), { bigint: true });
      return st.isDirectory() && dirId(st) === id;
    } catch {
      return false;
    }
  }

  #rootIsDirectory(): boolean {
    try {
      return statSync(this.root).isDirectory();
    } catch {
      return false;
    }
  }

  /**
   * One run of inotifywait until it ends; `vanished`: the line in which it gave up its walk (VANISHED);
   * `onPurpose`: ended by #restart.
   */
  #runOnce(onFirstEstablished: () => void): Promise<{ established: boolean; code: string; vanished?: string; onPurpose: boolean; said?: string }> {
    return new Promise((resolve) => {
      // Directories too deep to watch are left out ('@DIR'): inotifywait would give up its whole walk at the first
      // (scanner.ts DEEP_MAX). Listed on its standard input (--fromfile -), as bytes: as arguments, a few hundred
      // of them passed the kernel's limit and the spawn threw (found by a review). The list is read by line: a
      // directory whose path holds a newline goes as an argument instead; past ARGS_MAX bytes of those, the rest
      // are left out at the name with the newline (nothing below a control character is sent anyway; that
      // directory then has no watch, and inotifywait is restarted for it now and then, which costs a walk).
      const deep = deepDirs(this.root);
      const listed = deep.filter((d) => !d.includes(0x0a));
      const byName = new Set<string>();
      let argBytes = 0;
      for (const d of deep.filter((x) => x.includes(0x0a))) {
        const end = d.indexOf(0x2f, d.indexOf(0x0a));
        const at = argBytes + d.length < ARGS_MAX || end < 0 ? d : d.subarray(0, end);
        const arg = `@${this.#rootPrefix.toString('utf8')}${at.toString('utf8')}`;
        if (!byName.has(arg)) argBytes += at.length;
        byName.add(arg);
      }
      const args = ['-m', '-r', '--csv', '-e', INOTIFY_EVENTS, ...(listed.length > 0 ? ['--fromfile', '-'] : []), this.root, ...byName];
      // Taken before the walk: a root replaced meanwhile is found by the next checkRoot(), and watched again.
      this.#rootId = this.#currentRootId();
      let child: ChildProcess;
      try {
        child = spawn(this.command, args, { stdio: [listed.length > 0 ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      } catch (e) {
        // Some failures are thrown, not reported as 'error': a run that did not start, as one that died at once.
        resolve({ established: false, code: (e as Error).message, onPurpose: false });
        return;
      }
      if (listed.length > 0) {
        child.stdin!.on('error', () => undefined); // an inotifywait gone at once: said by its exit
        child.stdin!.end(Buffer.concat(listed.flatMap((d) => [Buffer.from('@'), this.#rootPrefix, d, Buffer.from('\n')])));
      }
      this.#child = child;
      this.#established = false;
      let established = false;
      let vanished: string | undefined;
      // inotifywait says so on stderr before it reports any event on stdout, but the two pipes are read
      // independently: an event read first means the line is still on its way. The rescan comes first all the
      // same, so that no event (a barrier's mark, A5) is passed on ahead of what the rescan owes.
      const establish = (): void => {
        if (established) return;
        established = true;
        if (child === this.#child) this.#established = true;
        // Its walk watched what it could; the rescan's walk is checked again.
        this.#unwatched.clear();
        this.#unchecked.clear();
        this.hooks.established();
        onFirstEstablished();
      };
      const csv = new CsvRecords();
      child.stdout!.on('data', (chunk: Buffer) => {
        establish();
        for (const record of csv.push(chunk)) this.#record(record);
      });
      let errText = '';
      /** Its other lines on stderr (the last 500 characters): why a run that never had its watches ended. */
      let said: string | undefined;
      // latin1: a path in a line keeps its bytes (UTF-8 or not); shown as UTF-8.
      child.stderr!.setEncoding('latin1');
      child.stderr!.on('data', (text: string) => {
        errText += text;
        let nl;
        while ((nl = errText.indexOf('\n')) >= 0) {
          const raw = errText.slice(0, nl).trim();
          errText = errText.slice(nl + 1);
          const line = Buffer.from(raw, 'latin1').toString('utf8');
          const newDir = NEW_DIR_UNWATCHED.exec(raw);
          if (line.startsWith('Watches established')) {
            establish();
          } else if (!established && VANISHED.test(line)) {
            vanished ??= line; // the run ends by itself
          } else if (newDir) {
            // A lost race, no fault of the tree: said when it is run again for it (#cover).
            if (child === this.#child) this.#newDirUnwatched(child, Buffer.from(newDir[1]!, 'latin1'));
          } else if (line && !line.startsWith('Setting up watches')) {
            // Other reasons (the watch limit, a directory it may not read) are left to the check (check()).
            if (WATCH_LIMIT.test(line)) this.#atLimit = true;
            said = (said === undefined ? line : `${said} ${line}`).slice(-500);
            this.log.warn({ inotifywait: line }, 'inotifywait says');
          }
        }
      });
      let done = false;
      const finish = (code: string): void => {
        if (done) return;
        done = true;
        if (child === this.#child) this.#established = false;
        const onPurpose = this.#endedOnPurpose === child;
        if (onPurpose) this.#endedOnPurpose = undefined;
        resolve({ established, code, onPurpose, ...(vanished ? { vanished } : {}), ...(said ? { said } : {}) });
      };
      child.on('error', (e) => finish(e.message));
      child.on('close', (code, sig) => finish(sig ? `signal ${sig}` : `exit ${code}`));
    });
  }

  #record(fields: Buffer[]): void {
    const [dir, , name] = fields;
    const kind = recordKind(fields);
    if (kind === undefined || !dir) return;
    if (kind === 'overflow') {
      this.hooks.event({ kind });
      return;
    }
    if (kind === 'unmounted') {
      this.#unmounted();
      return;
    }
    if (kind === 'root-gone') {
      // A subdirectory's own watch ending says nothing its parent's DELETE/MOVED_FROM did not. The root's
      // does: this run watches nothing any more, so it ends, and the restart waits for the root to be back.
      if (!dir.equals(this.#rootPrefix)) return;
      // Watching nothing from now on, not only once the child's exit is seen (everyDirWatched).
      this.#established = false;
      this.hooks.event({ kind });
      this.#child?.kill('SIGTERM');
      return;
    }
    if (!name || name.length === 0) return;
    if (!dir.subarray(0, this.#rootPrefix.length).equals(this.#rootPrefix)) return;
    // dir is the root's prefix plus 'sub/dir/' (nothing more for the root itself).
    const rel = Buffer.concat([dir.subarray(this.#rootPrefix.length), name]);
    const closed = kind === 'complete' && !fields[1]!.toString('latin1').split(',').includes('MOVED_TO');
    this.hooks.event((closed ? { kind, rel, closed } : { kind, rel }) as WatchEvent);
  }
}

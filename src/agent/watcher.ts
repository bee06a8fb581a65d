// The inotifywait child process (inotify-tools) and its events, restarted with back-off when it dies (A2).
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import type { Logger } from '../common/logger.js';
import { sleep } from '../common/abort.js';
import { CsvRecords } from './csv-records.js';
import type { Component } from '../common/service.js';

/** What the kernel said about a path below the root (bytes, relative to the root). */
export type WatchEvent =
  | { kind: 'created'; rel: Buffer }
  | { kind: 'complete'; rel: Buffer }
  | { kind: 'gone'; rel: Buffer }
  | { kind: 'dir-gone'; rel: Buffer }
  | { kind: 'dir-new'; rel: Buffer }
  | { kind: 'root-gone' }
  | { kind: 'overflow' };

export const INOTIFY_EVENTS = 'close_write,moved_to,moved_from,create,delete,delete_self,move_self';

/** Event-name set of one CSV record → what it means to the agent; unlisted combinations mean nothing. */
export function classify(events: Set<string>): WatchEvent['kind'] | undefined {
  if (events.has('Q_OVERFLOW')) return 'overflow';
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
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/**
 * inotifywait's words when a directory walk met an entry that was gone by the time it looked at it: it then
 * gives up the whole directory (inotify-tools 3.14 to 3.22 at least): a new one goes unwatched for good, and at
 * the start the whole run ends. A writer that renames its temp names (camserver) does that all the time.
 */
const VANISHED = /^Couldn't watch (new directory )?.*: No such file or directory$/;
/** Pause between walks that keep losing that race before the watches were in place (a very busy tree). */
const VANISHED_PAUSE_MS = 10;
/** One warning per this many walks lost in a row before the watches were in place. */
const VANISHED_LOG_EVERY = 50;

/**
 * Runs `inotifywait -m -r --csv` on the root. Not `-q`: its "Watches established." line on stderr is when
 * events start to count. A DELETE_SELF/MOVE_SELF of a subdirectory is its own watch ending (the DELETE/
 * MOVED_FROM in its parent said what matters); only the root's ends the run, and the restart waits for it.
 */
export class Watcher implements Component {
  readonly name = 'watches and first scan';
  #child: ChildProcess | undefined;
  #stopped = false;
  readonly #rootPrefix: Buffer;

  constructor(private readonly root: string, private readonly hooks: WatcherHooks, private readonly log: Logger,
    private readonly command = 'inotifywait') {
    this.#rootPrefix = Buffer.from(root.endsWith('/') ? root : `${root}/`);
  }

  /**
   * Resolves once the first run has its watches; rejects if that run cannot start or dies first. A `signal`
   * aborted before then (a stop during start) ends the wait: stop() follows.
   */
  start(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      let first = true;
      signal?.addEventListener('abort', () => {
        if (first) { first = false; resolve(); }
      }, { once: true });
      const loop = async (): Promise<void> => {
        let backoff = BACKOFF_MIN_MS;
        let walks = 0;
        while (!this.#stopped) {
          const { established, code, vanished } = await this.#runOnce(() => {
            if (first) { first = false; resolve(); }
          });
          if (this.#stopped) return;
          // A directory walk that lost the race with a writer's rename is no fault of the tree or the system:
          // run again at once (without growing the back-off). The rescan after it finds what went unseen.
          if (vanished && statSync(this.root, { throwIfNoEntry: false })?.isDirectory()) {
            const say = 'inotifywait lost a directory to a file renamed while it set up the watch; running it again, then rescanning';
            if (established) {
              walks = 0;
              this.log.warn({ inotifywait: vanished }, say);
            } else {
              if (++walks % VANISHED_LOG_EVERY === 1) this.log.warn({ inotifywait: vanished, walks }, say);
              await sleep(VANISHED_PAUSE_MS);
            }
            continue;
          }
          walks = 0;
          if (first) {
            reject(new Error(`inotifywait on ${this.root} ended before its watches were in place (${code}); ` +
              'is inotify-tools installed and the root a directory?'));
            return;
          }
          if (established) backoff = BACKOFF_MIN_MS;
          this.log.error({ exit: code, retryInMs: backoff }, 'inotifywait ended; restarting it, then rescanning');
          await sleep(backoff);
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        }
      };
      void loop();
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#child?.kill('SIGTERM');
  }

  /** One run of inotifywait until it ends; `vanished`: the line in which it gave up a directory (VANISHED). */
  #runOnce(onFirstEstablished: () => void): Promise<{ established: boolean; code: string; vanished?: string }> {
    return new Promise((resolve) => {
      const args = ['-m', '-r', '--csv', '-e', INOTIFY_EVENTS, this.root];
      const child = spawn(this.command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.#child = child;
      let established = false;
      let vanished: string | undefined;
      // inotifywait says so on stderr before it reports any event on stdout, but the two pipes are read
      // independently: an event read first means the line is still on its way. The rescan comes first all the
      // same, so that no event (a barrier's mark, A5) is passed on ahead of what the rescan owes.
      const establish = (): void => {
        if (established) return;
        established = true;
        this.hooks.established();
        onFirstEstablished();
      };
      const csv = new CsvRecords();
      child.stdout!.on('data', (chunk: Buffer) => {
        establish();
        for (const record of csv.push(chunk)) this.#record(record);
      });
      let errText = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (text: string) => {
        errText += text;
        let nl;
        while ((nl = errText.indexOf('\n')) >= 0) {
          const line = errText.slice(0, nl).trim();
          errText = errText.slice(nl + 1);
          if (line.startsWith('Watches established')) {
            establish();
          } else if (VANISHED.test(line)) {
            // A new directory it will never report anything in: a new run watches it. At the start, the run
            // ends by itself.
            vanished ??= line;
            if (established) child.kill('SIGTERM');
          } else if (line && !line.startsWith('Setting up watches')) {
            this.log.warn({ inotifywait: line }, 'inotifywait says');
          }
        }
      });
      let done = false;
      const finish = (code: string): void => {
        if (done) return;
        done = true;
        resolve({ established, code, ...(vanished ? { vanished } : {}) });
      };
      child.on('error', (e) => finish(e.message));
      child.on('close', (code, sig) => finish(sig ? `signal ${sig}` : `exit ${code}`));
    });
  }

  #record(fields: Buffer[]): void {
    const [dir, events, name] = fields;
    if (!dir || !events) return;
    const kind = classify(new Set(events.toString('latin1').split(',')));
    if (kind === undefined) return;
    if (kind === 'overflow') {
      this.hooks.event({ kind });
      return;
    }
    if (kind === 'root-gone') {
      // A subdirectory's own watch ending says nothing its parent's DELETE/MOVED_FROM did not. The root's
      // does: this run watches nothing any more, so it ends, and the restart waits for the root to be back.
      if (!dir.equals(this.#rootPrefix)) return;
      this.hooks.event({ kind });
      this.#child?.kill('SIGTERM');
      return;
    }
    if (!name || name.length === 0) return;
    if (!dir.subarray(0, this.#rootPrefix.length).equals(this.#rootPrefix)) return;
    // dir is the root's prefix plus 'sub/dir/' (nothing more for the root itself).
    const rel = Buffer.concat([dir.subarray(this.#rootPrefix.length), name]);
    this.hooks.event({ kind, rel } as WatchEvent);
  }
}

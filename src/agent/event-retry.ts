// A file event or rescan the catalog could not handle (out of file descriptors, EMFILE, say) ended the agent: the
// exception left inotifywait's line handler and nothing caught it (found by a hostile tester who used up the
// agent's descriptors). Now it is said, and a rescan follows RETRY_MS later, which finds what the event was for
// (A2); a rescan that fails too is tried again the same way, for as long as it fails.
import type { Logger } from '../common/logger.js';

export const RETRY_MS = 1000;

export class EventRetry {
  #timer: NodeJS.Timeout | undefined;
  /** Failures since the last rescan that went through: the first is logged with its error, the rest counted. */
  #failures = 0;

  constructor(private readonly rescan: () => void, private readonly log: Logger, private readonly retryMs = RETRY_MS) {}

  /** Runs `fn` (handling `what`); if it throws, says so once and has a rescan follow. */
  run(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (this.#failures++ === 0) {
        this.log.error({ err: (e as Error).message, what }, `cannot handle ${what}: looking at the whole tree again in ${this.retryMs / 1000} s ` +
          '(files stay on the detector until then)');
      }
      this.#schedule();
    }
  }

  /** A rescan that must happen (a watch set up again): run now, and again later if it fails. */
  rescanNow(what: string): void {
    this.run(what, () => {
      this.rescan();
      this.#recovered();
    });
  }

  /** Ends a pending retry (the agent stops). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.rescanNow('a rescan after a failure');
    }, this.retryMs);
    this.#timer.unref();
  }

  #recovered(): void {
    if (this.#failures > 1) this.log.info({ failures: this.#failures }, 'the tree could be looked at again: events handled as before');
    this.#failures = 0;
  }
}

// systemd's notify protocol (S1): READY=1, STATUS=, STOPPING=1 and the watchdog.
// Without NOTIFY_SOCKET (tests, a shell) every call does nothing; a notify failure never stops a daemon.
import type { Logger } from './logger.js';

interface SdNotify {
  ready(): void;
  stopping(pid: number): void;
  watchdog(): void;
  watchdogInterval(): number;
  sendStatus(text: string): void;
}

export class Notifier {
  #sd: SdNotify | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #lastStatus = '';

  constructor(private readonly log: Logger) {
    if (!process.env['NOTIFY_SOCKET']) return;
    try {
      // Loaded lazily: it is a native module and only needed under systemd.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      this.#sd = require('sd-notify') as SdNotify;
    } catch (e) {
      log.warn({ err: e }, 'sd-notify unavailable; systemd will not see readiness');
    }
  }

  #call(what: string, fn: (sd: SdNotify) => void): void {
    if (!this.#sd) return;
    try {
      fn(this.#sd);
    } catch (e) {
      this.log.warn({ err: e }, `sd_notify ${what} failed`);
    }
  }

  /**
   * READY=1, and from now on pets the watchdog at half the interval systemd asked for, as long as `healthy`
   * says so: a daemon whose event loop runs but whose work is wedged (grimseld's copy threads) stops the
   * pings, and systemd restarts it as it would a hung one.
   */
  ready(status: string, healthy: () => boolean = () => true): void {
    this.status(status);
    this.#call('READY', (sd) => sd.ready());
    this.#call('WATCHDOG', (sd) => {
      const ms = sd.watchdogInterval();
      if (ms > 0) {
        this.#watchdog = setInterval(() => {
          if (healthy()) this.#call('WATCHDOG', (s) => s.watchdog());
        }, Math.max(ms / 2, 100));
        this.#watchdog.unref();
      }
    });
  }

  status(text: string): void {
    if (text === this.#lastStatus) return;
    this.#lastStatus = text;
    this.#call('STATUS', (sd) => sd.sendStatus(text));
  }

  stopping(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#call('STOPPING', (sd) => sd.stopping(process.pid));
  }
}

// Structured logging (SPEC S4): pino to stdout, which systemd hands to the journal.
import pino, { type Logger } from 'pino';

export type { Logger };

export interface LogSettings {
  logfile?: string;
  log_level?: string;
}

/**
 * Creates the daemon's logger. Without `logfile` logs go to stdout (the journal under
 * systemd); with it, to that file (appended, created if missing).
 */
export function createLogger(name: string, settings: LogSettings = {}): Logger {
  const level = process.env['LOG_LEVEL'] ?? settings.log_level ?? 'info';
  const dest = settings.logfile
    ? pino.destination({ dest: settings.logfile, mkdir: true, sync: false })
    : pino.destination({ fd: 1, sync: false });
  return pino({ name, level, base: { daemon: name } }, dest);
}

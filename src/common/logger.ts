// Structured logging (S4): pino to stdout, which systemd hands to the journal.
import pino, { type Logger } from 'pino';
import { rotatingDestination } from './log-rotation.js';

export type { Logger };

export interface LogSettings {
  logfile?: string;
  logfile_max_size?: number;
  logfile_max_number?: number;
  log_level?: string;
}

/**
 * Creates the daemon's logger. Without `logfile` logs go to stdout (the journal under
 * systemd); with it, to that file, rotated by size (S4).
 */
export function createLogger(name: string, settings: LogSettings = {}): Logger {
  const level = process.env['LOG_LEVEL'] ?? settings.log_level ?? 'info';
  const dest = settings.logfile
    ? rotatingDestination({ ...settings, logfile: settings.logfile })
    : pino.destination({ fd: 1, sync: false });
  return pino({ name, level, base: { daemon: name } }, dest);
}

// Structured logging (S4): pino to stdout, which systemd hands to the journal.
import { fstatSync } from 'node:fs';
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
  if (settings.logfile) return pino({ name, level, base: { daemon: name } }, rotatingDestination({ ...settings, logfile: settings.logfile }));
  const out = pino.destination({ fd: 1, sync: false });
  return pino({ name, level, base: { daemon: name } }, stdoutIsJournal() ? { write: (line: string) => out.write(withPriority(line)) } : out);
}

/**
 * Whether stdout is the journal's stream: systemd sets JOURNAL_STREAM to its device and inode (systemd.exec(5));
 * not so in a terminal, a pipe of the tests, or with StandardOutput= set to something else.
 */
function stdoutIsJournal(): boolean {
  return isJournalStream(1);
}

/** Whether descriptor `fd` (1 or 2) is the journal's stream (systemd 231 and later say so; CentOS 7's does not). */
export function isJournalStream(fd: number): boolean {
  const stream = process.env['JOURNAL_STREAM'];
  if (!stream) return false;
  try {
    const st = fstatSync(fd);
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** pino's levels as syslog priorities: fatal crit, error err, warn warning, info info, debug and trace debug. */
const PRIORITY: Record<string, number> = { 60: 2, 50: 3, 40: 4, 30: 6, 20: 7, 10: 7 };

/**
 * A line with the kernel-style `<N>` prefix journald reads as its priority (SyslogLevelPrefix=, on by default):
 * without it every line, errors included, was stored as info, and `journalctl -u grimseld -p err` showed none.
 * pino writes the level first in each line.
 */
export function withPriority(line: string): string {
  const level = /^\{"level":(\d+)/.exec(line)?.[1];
  return `<${(level && PRIORITY[level]) ?? 6}>${line}`;
}

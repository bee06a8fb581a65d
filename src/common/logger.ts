// Structured logging (S4): pino to stdout, which systemd hands to the journal.
import { fstatSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { RotatingLog } from './log-rotation.js';

export type { Logger };

export interface LogSettings {
  logfile?: string;
  logfile_max_size?: number;
  logfile_max_number?: number;
  log_level?: string;
}

/**
 * Creates the daemon's logger. Without `logfile` logs go to stdout (the journal under systemd); with it, to
 * that file, rotated by size (S4): `file` when the start opened it already (logfile-config.ts openLogfile). A log
 * file that cannot be written, then or later (disk full, remounted read-only, a rotation failing), never ends
 * the daemon: from then on its lines go to stderr (the journal), and that is said there once.
 */
export function createLogger(name: string, settings: LogSettings = {}, file?: RotatingLog): Logger {
  const level = process.env['LOG_LEVEL'] ?? settings.log_level ?? 'info';
  const options = { name, level, base: { daemon: name } };
  if (!settings.logfile) {
    const out = pino.destination({ fd: 1, sync: false });
    return pino(options, stdoutIsJournal() ? { write: (line: string) => out.write(withPriority(line)) } : out);
  }
  const logfile = settings.logfile;
  const journal = (line: string): void => { process.stderr.write(isJournalStream(2) ? withPriority(line) : line); };
  let told = false;
  /** Lines the file did not take go to the journal, after one line that says why. */
  const divert = (err: unknown, lines: string[]): void => {
    if (!told) {
      told = true;
      pino(options, { write: journal }).warn({ logfile, err }, `logfile ${logfile}: cannot write ${log?.current ?? 'it'} ` +
        `(${err instanceof Error ? err.message : String(err)}): logging to the journal (stderr) instead until ${name} restarts`);
    }
    lines.forEach(journal);
  };
  let log = file;
  try {
    log ??= new RotatingLog({ ...settings, logfile });
  } catch (e) {
    divert(e, []);
  }
  log?.onFailure(divert);
  const write = (line: string): void => {
    if (!log?.write(line)) divert(log?.failure, [line]);
  };
  return pino(options, { write });
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

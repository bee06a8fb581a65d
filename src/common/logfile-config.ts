// The `logfile` key checked on the machine (S3, S4): a log file the daemon cannot write is a configuration error
// naming the key, at --check and at start, not a crash of the logger once the daemon runs.
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, fileKind, realPathAsFar } from './config-file.js';
import type { LogSettings } from './logger.js';
import { RotatingLog } from './log-rotation.js';
import { mountOf, mountsOf, readMountinfo } from './mounts.js';
import { atOrBelow } from './paths.js';

/** The one directory the shipped units let the daemons write logs in (LogsDirectory=ppu, ProtectSystem=strict). */
export const SHIPPED_LOG_DIR = '/var/log/ppu';

const WHERE = "top level (before any section), key 'logfile'";

/** What to do about a log file outside SHIPPED_LOG_DIR, for a message about it; '' for one inside. */
function unitHint(logfile: string): string {
  if (atOrBelow(logfile, SHIPPED_LOG_DIR)) return '';
  return ` (the shipped units let the daemons write logs only below ${SHIPPED_LOG_DIR}: set logfile = ` +
    `${SHIPPED_LOG_DIR}/${path.basename(logfile)}, or leave logfile out to log to the journal)`;
}

/**
 * Why the directory of `logfile` cannot take it, or undefined: it, or the nearest part of it that exists (the
 * rest is created at start), must be a directory this process may write in. Creates nothing.
 */
function directoryProblem(logfile: string): string | undefined {
  for (let dir = path.dirname(logfile); ; dir = path.dirname(dir)) {
    let st: Stats;
    try {
      st = statSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dir !== '/') continue;
      return `cannot write '${logfile}': ${(e as Error).message}`;
    }
    if (!st.isDirectory()) return `cannot write '${logfile}': '${dir}' is ${fileKind(st)}, not a directory`;
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (e) {
      return `cannot write '${logfile}' in '${dir}': ${(e as Error).message}`;
    }
    return undefined;
  }
}

/** The directories PrivateTmp=yes gives a service of its own. */
const PRIVATE_TMP_DIRS = ['/tmp', '/var/tmp'];

/**
 * Why a log file in real directory `dir` would be lost, or undefined: there it is writable under the shipped units
 * too, but PrivateTmp=yes gives the service a /tmp and /var/tmp of its own, which systemd removes when it stops
 * (mountinfo shows each as a bind mount of a systemd-private-… directory's tmp), so the log went with them.
 */
export function privateTmpProblem(logfile: string, dir: string, mountinfo: string): string | undefined {
  const m = mountOf(dir, mountsOf(mountinfo));
  if (!m || !/\/systemd-private-[^/]+\/tmp$/.test(m.root)) return undefined;
  return `'${logfile}' lies in ${m.at}, which this service has to itself (PrivateTmp=yes) and systemd removes when it stops: the log would be lost with it`;
}

/**
 * At --check, in `ppuctl config check` and at start: the log file's directory must be writable here, and not a
 * private /tmp the log would be lost with.
 */
export function checkLogfile(file: string, settings: LogSettings): void {
  if (settings.logfile === undefined) return;
  let problem = directoryProblem(settings.logfile);
  if (!problem) {
    let mountinfo = '';
    try { mountinfo = readMountinfo(); } catch { /* no /proc: no private /tmp to tell */ }
    problem = privateTmpProblem(settings.logfile, realPathAsFar(path.dirname(settings.logfile)), mountinfo);
  }
  if (problem) throw new ConfigError(file, [`${WHERE}: ${problem}${unitHint(settings.logfile)}`]);
}

/**
 * At start: the log file opened (its directory created), for createLogger; undefined without `logfile`. One that
 * cannot be is a ConfigError naming the key, the path and the error (exit 78, which the units do not restart).
 */
export function openLogfile(file: string, settings: LogSettings): RotatingLog | undefined {
  if (settings.logfile === undefined) return undefined;
  checkLogfile(file, settings);
  try {
    return new RotatingLog({ ...settings, logfile: settings.logfile });
  } catch (e) {
    throw new ConfigError(file, [`${WHERE}: cannot write '${settings.logfile}': ${(e as Error).message}${unitHint(settings.logfile)}`]);
  }
}

/**
 * A note for --check and `ppuctl config check` when `logfile` lies outside SHIPPED_LOG_DIR: writable here (as
 * root, by hand), it is not under the shipped unit, whose start would then refuse it.
 */
export function logfileNote(daemon: string, settings: LogSettings): string | undefined {
  if (settings.logfile === undefined || atOrBelow(settings.logfile, SHIPPED_LOG_DIR)) return undefined;
  const tmp = PRIVATE_TMP_DIRS.find((d) => atOrBelow(settings.logfile!, d));
  if (tmp) {
    return `note: logfile '${settings.logfile}' lies in ${tmp}, which the shipped ${daemon} unit gives ${daemon} to itself (PrivateTmp=yes) and ` +
      `systemd removes when it stops: started by that unit, ${daemon} would refuse it (exit 78); use ${SHIPPED_LOG_DIR}`;
  }
  return `note: logfile '${settings.logfile}' lies outside ${SHIPPED_LOG_DIR}, the one log directory the shipped ${daemon} unit ` +
    `lets it write (ProtectSystem=strict): started by that unit, ${daemon} would refuse it (exit 78) unless a drop-in adds ReadWritePaths= for it`;
}

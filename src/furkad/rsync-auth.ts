// What furkad says to a detector's rsync daemon that asks for a user and password (`auth users`, `secrets file`):
// the shipped daemon does, so that a local user of the PPU cannot pull or delete the detector's files (F1, S6).
// The password is the detector server's key (the same file furka-agent's requests carry, A1); the detector
// package's daemon makes its secrets from it at every start (scripts/rsyncd-secrets.sh).
import { existsSync } from 'node:fs';
import { DEFAULT_AGENT_KEY_FILE, readKeyFile } from '../common/shared-key.js';
import type { DetectorConfig } from './config.js';

/** The user furkad logs in as when `rsync_user` is not set: the one the shipped secrets name. */
export const DEFAULT_RSYNC_USER = 'furkad';
/** The password file when `rsync_password_file` is not set: the detector server's key, copied as for the agent. */
export const DEFAULT_RSYNC_PASSWORD_FILE = DEFAULT_AGENT_KEY_FILE;

/** How one run logs in: the user, and the password (empty: none to give, the daemon asks for none, we hope). */
export interface RsyncLogin {
  user: string;
  password: string;
  /** Where the password came from, and whether that file was there (for the message when the daemon refuses). */
  file: string;
  missing: boolean;
}

/**
 * The login of a detector's next run, read again for every run (a key copied in is taken at the next try).
 * The default password file may be missing: a vendor's daemon without `auth users` asks for no password, and
 * rsync sends none then. One named in `rsync_password_file` must be there. A file others can read, or that
 * holds no key, is refused either way (anyone on the PPU could log in with it): throws a KeyFileError saying so.
 */
export function rsyncLogin(d: Pick<DetectorConfig, 'rsync_user' | 'rsync_password_file'>): RsyncLogin {
  const user = d.rsync_user ?? DEFAULT_RSYNC_USER;
  const file = d.rsync_password_file ?? DEFAULT_RSYNC_PASSWORD_FILE;
  if (d.rsync_password_file === undefined && !existsSync(file)) return { user, password: '', file, missing: true };
  return { user, password: readKeyFile(file, 'copy'), file, missing: false };
}

/** rsync's line when the daemon refused the user or password (or was given none). */
const AUTH_FAILED = /@ERROR: auth failed on module (\S+)/;

/**
 * What to do about a run the daemon refused for its login, or undefined when it was not that. Names the user,
 * the file and where the password must come from, not just rsync's "auth failed".
 */
export function authAdvice(stderr: string, login: RsyncLogin): string | undefined {
  const m = AUTH_FAILED.exec(stderr);
  if (!m) return undefined;
  const given = login.missing
    ? `furkad had no password to give: ${login.file} (rsync_password_file) does not exist`
    : `the password in ${login.file} (rsync_password_file) is not the daemon's for user '${login.user}' (rsync_user)`;
  return `the detector's rsync daemon asks for a password for module ${m[1]!} and refused furkad's: ${given}; ` +
    `copy the detector server's key (/etc/ppu/furka-agent.key there, from which the shipped daemon makes its secrets when it ` +
    'starts: after a new key there, restart ppu-detector-rsyncd) to ' +
    `${login.file} on the PPU, root's, mode 0600 (README, Install)`;
}

/**
 * Detectors whose rsync runs as the shift's user (remove_source = no) with a password: that user can read it from
 * the run's process (docs/threat-model.md). Said at start, once, so that the administrator gives such a detector
 * a daemon user of its own whose module is read-only.
 */
export function passwordsShiftsCanRead(detectors: Record<string, DetectorConfig>): string[] {
  return Object.entries(detectors).filter(([, d]) => {
    if (d.transport !== 'rsync' || d.remove_source) return false;
    try {
      return rsyncLogin(d).password !== '';
    } catch {
      return false;
    }
  }).map(([id]) => id);
}

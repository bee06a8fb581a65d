// The key furka-agent and furkad share (A1): read from a file only root may read, sent by furkad with every
// request as `authorization: Bearer KEY`, compared by the agent in constant time. Without it, any local user of
// an allowed host could read every image and have the agent delete files never delivered.
import { createHash, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';

/** Where both sides look when nothing else is configured: one host running both (the demo) needs no setting. */
export const DEFAULT_AGENT_KEY_FILE = '/etc/ppu/furka-agent.key';

/** Fewest characters of a key: what the packages make has 64 (32 random bytes in hex). */
const KEY_MIN = 16;
/** Visible ASCII only: it travels in an HTTP header. */
const KEY_CHARS = /^[\x21-\x7e]+$/;

/** How a key file is made, for messages (what the detector package's %post runs). */
export const MAKE_KEY = "(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \\n' > FILE)";

/** What is wrong with a key file: `file` is the file, on this machine (a PPU's copy is the PPU's own problem). */
export class KeyFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(message);
  }
}

/** Whose key a file holds: the detector server's own ('own': made there), or the PPU's copy of it ('copy'). */
export type KeyRole = 'own' | 'copy';

/**
 * The key in `file`, or throws a KeyFileError whose message says what is wrong with the file (and, when it is missing,
 * how to make it, or for a copy where to copy it from): missing, not a regular
 * file, readable or writable by group or others, owned by another user than this process's, or not a key
 * (fewer than 16 visible ASCII characters; surrounding white space and a final newline are ignored).
 */
export function readKeyFile(file: string, role: KeyRole = 'own'): string {
  let fd: number;
  try {
    // O_NOFOLLOW: a link in the key's place is refused, not followed to whatever it names.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new KeyFileError(file, role === 'copy'
        ? `${file} does not exist; copy the detector server's key (${DEFAULT_AGENT_KEY_FILE} there) to it, root's, mode 0600: a key made here would not match (README, Install)`
        : `${file} does not exist; make it with ${MAKE_KEY.replace('FILE', file)} (README, Install)`);
    }
    if (code === 'ELOOP') throw new KeyFileError(file, `${file} is a symbolic link: the key must be a regular file`);
    throw new KeyFileError(file, `cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new KeyFileError(file, `${file} is not a regular file`);
    const me = process.geteuid?.() ?? 0;
    if (st.uid !== me && st.uid !== 0) throw new KeyFileError(file, `${file} is owned by uid ${st.uid}: it must be root's (chown root: ${file})`);
    if ((st.mode & 0o077) !== 0) {
      throw new KeyFileError(file, `${file} is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): ` +
        `anyone who reads it can read and delete the detector's files; chmod 0600 ${file}`);
    }
    const key = readFileSync(fd, 'latin1').trim();
    if (key.length < KEY_MIN || !KEY_CHARS.test(key)) {
      throw new KeyFileError(file, `${file} holds no key: it must be one line of at least ${KEY_MIN} visible ASCII characters, e.g. made with ${MAKE_KEY.replace('FILE', file)}`);
    }
    return key;
  } finally {
    closeSync(fd);
  }
}

/** The `authorization` header value that carries `key`. */
export function bearer(key: string): string {
  return `Bearer ${key}`;
}

/** Compares what a request carries with the key, in time that depends on neither (both hashed first: equal lengths). */
export class KeyCheck {
  readonly #digest: Buffer;

  constructor(key: string) {
    this.#digest = createHash('sha256').update(bearer(key), 'latin1').digest();
  }

  /** Whether `authorization` (the header, possibly absent) carries the key. */
  accepts(authorization: string | string[] | undefined): boolean {
    const given = typeof authorization === 'string' ? authorization : '';
    return timingSafeEqual(createHash('sha256').update(given, 'latin1').digest(), this.#digest);
  }
}

// The key furka-agent and furkad share (A1): read from a file only root may read. Without it, any local user of
// an allowed host could read every image and have the agent delete files never delivered. furkad never sends it:
// at each connection both prove they hold it (a challenge each way, keyChallenge below), so a program that took
// the agent's port (any local user of the detector server can bind 49372 while the agent is down) learns nothing
// and cannot feed furkad files. A request may also carry the key itself (`authorization: Bearer KEY`: curl, and
// furkads before 2026-12-05), compared by the agent in constant time.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
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

/** The `authorization` scheme of a request that proves the key without carrying it (keyChallenge). */
export const PROOF_SCHEME = 'Furka-Proof';

/** A challenge: 32 random bytes in hex. */
export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

/** Whether `s` may be a challenge: 32 to 128 hex digits (both sides' own are 64). */
export function validNonce(s: unknown): s is string {
  return typeof s === 'string' && /^[0-9a-f]{32,128}$/.test(s);
}

/**
 * The two proofs of one connection's challenges: furkad sends `furkadNonce` (GET /v1/hello), the agent answers with
 * its own `agentNonce` and `agent`, which only a holder of the key can make; furkad then proves itself with
 * `furkad` on every request of that connection. Each is an HMAC-SHA256 under the key of both challenges, labelled
 * by who makes it, so that neither side's proof can be passed off as the other's, nor one connection's in another
 * (the agent's challenge is new for each).
 */
export function keyProofs(key: string, furkadNonce: string, agentNonce: string): { agent: string; furkad: string } {
  const mac = (who: string): string => createHmac('sha256', Buffer.from(key, 'latin1')).update(`${who}\n${furkadNonce}\n${agentNonce}`).digest('hex');
  return { agent: mac('furka-agent'), furkad: mac('furkad') };
}

/** Whether `a` and `b` are the same, in time that depends on neither (both hashed first: equal lengths). */
export function sameSecret(a: string, b: string): boolean {
  const h = (x: string): Buffer => createHash('sha256').update(x, 'latin1').digest();
  return timingSafeEqual(h(a), h(b));
}

/** Compares what a request carries with the key, in time that depends on neither (both hashed first: equal lengths). */
export class KeyCheck {
  readonly #bearer: string;

  constructor(private readonly key: string) {
    this.#bearer = bearer(key);
  }

  /**
   * Whether `authorization` (the header, possibly absent) carries the key, or proves it for the connection whose
   * challenge was answered with `proof` (the `furkad` of keyProofs; none before one was answered).
   */
  accepts(authorization: string | string[] | undefined, proof?: string): boolean {
    const given = typeof authorization === 'string' ? authorization : '';
    if (proof !== undefined && given.startsWith(`${PROOF_SCHEME} `)) return sameSecret(given, `${PROOF_SCHEME} ${proof}`);
    return sameSecret(given, this.#bearer);
  }

  /** The agent's answer to furkad's challenge `furkadNonce`: its own challenge and proof, and the proof to expect. */
  answer(furkadNonce: string): { nonce: string; proof: string; expect: string } {
    const nonce = newNonce();
    const proofs = keyProofs(this.key, furkadNonce, nonce);
    return { nonce, proof: proofs.agent, expect: proofs.furkad };
  }
}

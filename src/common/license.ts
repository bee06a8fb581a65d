// License keys (F8, G14): an Ed25519-signed text file bound to a network interface's hardware address.
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './config-file.js';

/**
 * The project's verification key. Its private half stays with whoever issues keys; a distributor who
 * issues their own keys replaces this constant. Tests point PPU_LICENSE_PUBLIC_KEY at a test key instead.
 */
const BUILT_IN_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAL9HKFtcGZo4eH2uaphOgnFvnsSwr8pxV9npDhHJyM2M=
-----END PUBLIC KEY-----
`;

/** Environment variable naming a PEM public key file that replaces the built-in one (tests, own issuers). */
export const PUBLIC_KEY_ENV = 'PPU_LICENSE_PUBLIC_KEY';

const FORMAT = 'ppu-license-v1';
const FIELDS = ['holder', 'mac', 'issued'] as const;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export interface LicenseFields {
  holder: string;
  mac: string;
  /** ISO date-time of issue. */
  issued: string;
}

export interface LicenseCheck {
  valid: boolean;
  /** Why the key is not valid, or what it is bound to when it is: shown in status lines and logs. */
  reason: string;
  fields?: LicenseFields;
}

export interface CheckOptions {
  /** PEM public key; default: publicKeyFile's, else $PPU_LICENSE_PUBLIC_KEY's file, else the built-in key. */
  publicKey?: string;
  /** A PEM public key file: the daemons' `license_public_key` setting. */
  publicKeyFile?: string | undefined;
  /** Where interfaces are listed (default /sys/class/net). */
  netDir?: string;
}

/** The signed bytes: fixed order, one `key=value` per line, so that editing any field breaks the signature. */
function payload(f: LicenseFields): Buffer {
  return Buffer.from([FORMAT, ...FIELDS.map((k) => `${k}=${f[k]}`)].join('\n') + '\n');
}

export function normalizeMac(mac: string): string {
  return mac.trim().toLowerCase().replace(/-/g, ':');
}

/** The issuer's key is not an Ed25519 private key; the message says what it is instead. */
export class IssuerKeyError extends Error {}

/**
 * The Ed25519 private key in `pem`. OpenSSL's own refusal ("error:1E08010C:DECODER routines::unsupported") tells
 * an issuer nothing: the usual mistake is handing it the public half, which is said as such.
 */
function issuerKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    let isPublic = false;
    try { isPublic = createPublicKey(pem).type === 'public'; } catch { /* neither */ }
    throw new IssuerKeyError(isPublic
      ? 'is a public key; issuing needs the private half of the pair (an Ed25519 private key in PEM, BEGIN PRIVATE KEY)'
      : 'is not a private key of the expected kind (an Ed25519 private key in PEM, BEGIN PRIVATE KEY)');
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new IssuerKeyError(`is a private key of type ${key.asymmetricKeyType ?? 'unknown'}, not the Ed25519 key licenses are signed with`);
  return key;
}

/** Issues a key text for `fields`, signed with a PEM Ed25519 private key. */
export function issueLicense(privateKeyPem: string, fields: LicenseFields): string {
  const mac = normalizeMac(fields.mac);
  if (!MAC.test(mac)) throw new Error(`'${fields.mac}' is not a hardware address (expected six hex pairs, e.g. 02:42:ac:11:00:02)`);
  // What checkLicense reads back as the holder: one line, so no line terminator JavaScript's '.' stops at (CR,
  // U+2028, U+2029 as well as LF), and no control character; otherwise the key would never validate.
  if (/[=\u0000-\u001f\u007f\u2028\u2029]/.test(fields.holder) || fields.holder.trim() === '') {
    throw new Error('holder must be one non-empty line of printable characters without "="');
  }
  const f = { ...fields, mac, holder: fields.holder.trim() };
  const key = issuerKey(privateKeyPem);
  const signature = sign(null, payload(f), key).toString('base64');
  return [`# PPU data movers license key (${FORMAT}); any edit invalidates the signature`,
    ...FIELDS.map((k) => `${k} = ${f[k]}`), `signature = ${signature}`, ''].join('\n');
}

/** One network interface as a key can see it: its address, and why a key cannot be bound to it (if so). */
export interface InterfaceAddress {
  name: string;
  /** Normalized address, or undefined when it has none of six bytes (loopback, tun, ip tunnels). */
  mac?: string;
  /** Why a key cannot be bound to this address; undefined for a permanent hardware address. */
  leftOut?: string;
}

/** /sys/class/net/IF/addr_assign_type: only 0 is the address the hardware came with (linux/netdevice.h). */
const ASSIGN_TYPES: Record<string, string> = {
  '1': 'random address, made when the interface was created (addr_assign_type 1): another one after a reboot',
  '2': 'address taken over from another interface (addr_assign_type 2), not its own',
  '3': 'address set at run time (addr_assign_type 3), not the one the hardware came with',
};

function readTrimmed(file: string): string | undefined {
  try { return readFileSync(file, 'utf8').trim(); } catch { return undefined; }
}

/**
 * Every interface of this machine with its address and, for one a key cannot be bound to, why (F8, G14). A key
 * binds to a permanent hardware address (addr_assign_type 0): down or renamed interfaces count, and so does a
 * bonded interface's permanent address (bonding_slave/perm_hwaddr), whose current address is the bond's. A
 * random address (ifb, bridges, veth, anything created at run time) or one set at run time is left out: a key
 * issued for it would lapse at the next boot, dropping the PPU into single-thread mode unannounced.
 */
export function interfaceAddresses(netDir = '/sys/class/net'): InterfaceAddress[] {
  let names: string[] = [];
  try { names = readdirSync(netDir).sort(); } catch { return []; }
  const out: InterfaceAddress[] = [];
  for (const name of names) {
    const dir = path.join(netDir, name);
    const raw = readTrimmed(path.join(dir, 'address'));
    const mac = raw === undefined ? undefined : normalizeMac(raw);
    const perm = readTrimmed(path.join(dir, 'bonding_slave', 'perm_hwaddr'));
    if (perm !== undefined && MAC.test(normalizeMac(perm))) {
      out.push({ name, mac: normalizeMac(perm) });
      if (mac !== undefined && mac !== normalizeMac(perm) && MAC.test(mac)) out.push({ name, mac, leftOut: "the bond's address, not this interface's own" });
      continue;
    }
    if (mac === undefined || !MAC.test(mac) || mac === '00:00:00:00:00:00') {
      out.push({ name, leftOut: readTrimmed(path.join(dir, 'type')) === '772' ? 'loopback, no hardware address' : 'no hardware address' });
      continue;
    }
    const type = readTrimmed(path.join(dir, 'addr_assign_type'));
    if (type === '0') out.push({ name, mac });
    else out.push({ name, mac, leftOut: ASSIGN_TYPES[type ?? ''] ?? `not known to be permanent (addr_assign_type ${type ?? 'unreadable'})` });
  }
  return out;
}

/** The permanent hardware addresses of this machine: those a key can be bound to. */
export function hardwareAddresses(netDir = '/sys/class/net'): Set<string> {
  return new Set(interfaceAddresses(netDir).filter((i) => !i.leftOut).map((i) => i.mac!));
}

/**
 * The file whose public key verifies keys: the daemon's `license_public_key`, else $PPU_LICENSE_PUBLIC_KEY,
 * else none (the built-in key). ppuctl resolves it the same way from the daemons' config files.
 */
export function verificationKeyFile(configured: string | undefined): string | undefined {
  return configured ?? (process.env[PUBLIC_KEY_ENV] || undefined);
}

function publicKey(opts: CheckOptions): KeyObject {
  const file = verificationKeyFile(opts.publicKeyFile);
  const pem = opts.publicKey ?? (file ? readFileSync(file, 'utf8') : BUILT_IN_PUBLIC_KEY);
  return createPublicKey(pem);
}

/** A key is a few hundred bytes; anything larger is not one, and reading it whole could exhaust memory. */
export const MAX_KEY_BYTES = 64 * 1024;

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Why `st` cannot be a key file, or undefined when it may be one. */
function refusal(file: string, st: Stats, what: string): string | undefined {
  if (!st.isFile()) return `${file} is ${kindOf(st)}, not a regular file`;
  if (st.size > MAX_KEY_BYTES) return `${file} is ${st.size} bytes, too large for a ${what} (at most ${MAX_KEY_BYTES})`;
  return undefined;
}

/**
 * The key's text, or why it cannot be read. Only a regular file of at most MAX_KEY_BYTES is read: a FIFO would
 * block the daemon's start for ever and /dev/zero would grow its memory until it aborts. A symbolic link is
 * followed (a key linked into /var/lib is legitimate); what it leads to is checked with stat before opening (so
 * no device is even opened) and again with fstat on the descriptor, opened O_NONBLOCK, so a file swapped in
 * between cannot block or flood the read either.
 */
function readKey(file: string, what = 'license key'): { text: string } | { reason: string } {
  let fd: number | undefined;
  try {
    const early = refusal(file, statSync(file), what);
    if (early) return { reason: early };
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const late = refusal(file, fstatSync(fd), what);
    if (late) return { reason: late };
    const buf = Buffer.alloc(MAX_KEY_BYTES + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length;) n += (got = readSync(fd, buf, n, buf.length - n, null));
    if (n > MAX_KEY_BYTES) return { reason: `${file} grew beyond ${MAX_KEY_BYTES} bytes while read, too large for a ${what}` };
    return { text: buf.toString('utf8', 0, n) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { reason: code === 'ENOENT' ? `no ${what} at ${file}` : `cannot read ${file}: ${(e as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * At --check and `ppuctl config check`: a `license_public_key` that is no readable PEM public key, said for the
 * key. Not at start: a daemon without it runs unlicensed (one transfer at a time, one writer per storage) and
 * says why; --check and config check passed it, and the daemon then ran unlicensed without a word before.
 */
export function licensePublicKeyProblem(configured: string | undefined): string | undefined {
  if (configured === undefined) return undefined;
  const read = readKey(configured, 'public key');
  let problem = 'reason' in read ? read.reason : undefined;
  if (!('reason' in read)) {
    try {
      createPublicKey(read.text);
    } catch (e) {
      problem = `${configured} is not a PEM public key (${(e as Error).message})`;
    }
  }
  return problem && `top level (before any section), key 'license_public_key': ${problem}; no license key can be verified ` +
    'with it, and the daemon would run unlicensed';
}

/** licensePublicKeyProblem as a ConfigError naming `file`: --check exits 78, `ppuctl config check` 1, in the same words. */
export function checkLicensePublicKey(file: string, config: { license_public_key?: string }): void {
  const problem = licensePublicKeyProblem(config.license_public_key);
  if (problem) throw new ConfigError(file, [problem]);
}

/** Reads and checks a key file; never throws and never blocks: every problem becomes a `reason`. */
export function checkLicense(file: string, opts: CheckOptions = {}): LicenseCheck {
  const read = readKey(file);
  if ('reason' in read) return { valid: false, reason: read.reason };
  const { text } = read;
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([a-z]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) kv.set(m[1]!, m[2]!);
  }
  const missing = [...FIELDS, 'signature'].filter((k) => !kv.get(k));
  if (missing.length) return { valid: false, reason: `${file} is not a license key: ${missing.join(', ')} missing` };
  const fields: LicenseFields = { holder: kv.get('holder')!, mac: normalizeMac(kv.get('mac')!), issued: kv.get('issued')! };
  let ok = false;
  try {
    ok = verify(null, payload(fields), publicKey(opts), Buffer.from(kv.get('signature')!, 'base64'));
  } catch (e) {
    return { valid: false, reason: `cannot verify ${file}: ${(e as Error).message}`, fields };
  }
  if (!ok) return { valid: false, reason: `${file} has a bad signature (edited, or issued with another key)`, fields };
  const interfaces = interfaceAddresses(opts.netDir);
  if (!interfaces.some((i) => !i.leftOut && i.mac === fields.mac)) {
    const temporary = interfaces.find((i) => i.mac === fields.mac);
    return { valid: false, fields, reason: temporary
      ? `${file} is bound to ${fields.mac}, which here is only ${temporary.name}'s ${temporary.leftOut}; a key binds to a permanent hardware address`
      : `${file} is bound to ${fields.mac}, which no network interface of this machine has` };
  }
  return { valid: true, reason: `licensed to ${fields.holder} (${fields.mac})`, fields };
}

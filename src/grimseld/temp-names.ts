// The names of grimseld's copy temp files (G3, G12), made so that no one but grimseld can make a name that
// the sweeps (temp-sweep.ts, the copier's own) take for a temp file of grimseld's, and the key they are made with.
//
// A temp name is `.NAME.grimsel-` + 8 hex digits at random + 16 hex digits of an HMAC, under a key only grimseld
// reads, of all before them (NAME shortened where the whole would not fit: common/name-max.ts). A form anyone
// can give a file is not enough: a user's file of that form, delivered and copied, would be removed from
// every storage once old enough, after its original had been replaced by a link to the copy: lost while
// counted as copied. The name still decides, without reading anything but the directory, so a sweep stays
// one readdir and a copy pays one HMAC of a few dozen bytes (microseconds next to its fsync: BENCHMARKS.md). The
// key is kept in state_dir, so that the temp files of a grimseld that was killed are still recognised by
// the next one; nothing is written per copy. A mark on the temp file itself (an extended attribute, set
// at its creation and taken off before its rename) was the other way: two more system calls on every
// copy, a read of every candidate's attributes in a sweep, and nothing to go by on a storage without
// extended attributes (vfat, some NFS exports), where its temp files would never be swept.
//
// What this does not prevent: a user who reads a temp name while that copy runs (in a storage directory
// they can list) and delivers a file of exactly that name gets that one file of theirs swept from the
// storages once it is old enough, as if they had deleted it; they cannot name a file of anyone else's.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, linkSync, openSync, readSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempPrefix } from '../common/name-max.js';
import type { Logger } from '../common/logger.js';

const TAG = '.grimsel-';
const NONCE_HEX = 8;
const MAC_HEX = 16;
/** Hex digits after TAG: the nonce (two copies of one file at once get two names), then the MAC. */
export const SUFFIX_HEX = NONCE_HEX + MAC_HEX;

/** A temp name's form: the part the MAC is of, and the MAC. */
const KEYED = new RegExp(`^(\\..+\\.grimsel-[0-9a-f]{${NONCE_HEX}})([0-9a-f]{${MAC_HEX}})$`);
/**
 * The temp names of releases before the key (`.NAME.grimsel-` + 8 hex digits): anyone could make one, so
 * none is removed any more; the sweep names those it finds (temp-sweep.ts).
 */
const UNKEYED = /^\..+\.grimsel-[0-9a-f]{8}$/;

/** The file in state_dir holding the key. */
export const TEMP_KEY_FILE = 'temp-names.key';
const KEY_BYTES = 32;

/** Structured-cloneable, so a copy thread gets it in its workerData (a Buffer arrives as a Uint8Array). */
export type TempKey = Uint8Array;

function macOf(key: TempKey, stem: string): string {
  return createHmac('sha256', key).update(stem).digest('hex').slice(0, MAC_HEX);
}

/** A new temp name for a copy of `name`, beside it. */
export function tempName(key: TempKey, name: string): string {
  const stem = `${tempPrefix(name, TAG, SUFFIX_HEX)}${randomBytes(NONCE_HEX / 2).toString('hex')}`;
  return `${stem}${macOf(key, stem)}`;
}

/** Whether `entry` is a temp name grimseld made with `key` (for any final name). */
export function isOwnTemp(key: TempKey, entry: string): boolean {
  const m = KEYED.exec(entry);
  return m !== null && timingSafeEqual(Buffer.from(macOf(key, m[1]!)), Buffer.from(m[2]!));
}

/** Whether `entry` is a temp name grimseld made with `key` for a copy of `name` (and of no other final name). */
export function isOwnTempOf(key: TempKey, entry: string, name: string): boolean {
  const prefix = tempPrefix(name, TAG, SUFFIX_HEX);
  return entry.length === prefix.length + SUFFIX_HEX && entry.startsWith(prefix) && isOwnTemp(key, entry);
}

/**
 * The temp name of the link that replaces original `name` of record `id` (G6, G7): the same for every try, so that
 * a link a killed grimseld left under it is found and removed by the next try or by the deletion, and keyed like
 * a copy's, for the same reason: the reclaimer removes that name unlooked-at, so a name anyone can work out (the
 * record ids count up) would let a user have their own file beside the original deleted.
 */
export function linkTempName(key: TempKey, name: string, id: number): string {
  const stem = `${tempPrefix(name, LINK_TAG, LINK_ID_HEX + MAC_HEX)}${(id >>> 0).toString(16).padStart(LINK_ID_HEX, '0')}`;
  return `${stem}${macOf(key, stem)}`;
}

const LINK_TAG = '.grimsel-link-';
const LINK_ID_HEX = 8;

/** Whether `entry` has the form of a temp name of a release before the key. */
export function isUnkeyedTemp(entry: string): boolean {
  return UNKEYED.test(entry);
}

/**
 * The key in `stateDir`, made (0600) at the first start and then kept for good. Where it cannot be read or
 * made (state_dir full or read-only, a damaged key file), a key for this run only is used, with a warning:
 * the temp files this run leaves when it is killed are then never swept, which costs room, never a file.
 * A new key has the same effect on the temp files an earlier key made.
 */
export function loadTempKey(stateDir: string, log: Logger): TempKey {
  const file = path.join(stateDir, TEMP_KEY_FILE);
  try {
    return readKey(file) ?? makeKey(file);
  } catch (e) {
    log.warn({ file, err: (e as Error).message },
      'cannot keep the key of copy temp names: one for this run only is used; temp files this run leaves if killed will not be swept (remove them by hand)');
    return randomBytes(KEY_BYTES);
  }
}

/** The key in `file`; undefined if there is none yet. */
function readKey(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size !== KEY_BYTES) throw new Error(`${file} is not a key of ${KEY_BYTES} bytes`);
    // Whoever can read the key can make names the sweeps remove.
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    const key = Buffer.alloc(KEY_BYTES);
    if (readSync(fd, key, 0, KEY_BYTES, 0) !== KEY_BYTES) throw new Error(`${file} was cut short while it was read`);
    return key;
  } finally {
    closeSync(fd);
  }
}

/** Writes a new key whole and flushed under a side name, then links it in: a crash never leaves half a key under `file`. */
function makeKey(file: string): Buffer {
  const key = randomBytes(KEY_BYTES);
  const side = `${file}.new`;
  rmSync(side, { force: true });
  const fd = openSync(side, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeFileSync(fd, key);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(side, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return readKey(file)!; // made meanwhile: that one is the key
  } finally {
    unlinkSync(side);
  }
  const dir = openSync(path.dirname(file), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return key;
}

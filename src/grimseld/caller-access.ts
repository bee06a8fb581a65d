// Whether a caller of AddFile who is not root could read a file themselves (G8, docs/threat-model.md): grimseld
// reads every file as root, so an operator's AddFile must not copy a file they could not read (a secret in a
// 0700 directory, /etc/shadow) to a storage where others, or they, can.
//
// The check is the kernel's own walk done by hand, as root, through held directory handles (dir-fd.ts): from
// `/` one component at a time, each directory opened without following links and checked for search
// permission on its open handle before the next name is looked up in it; a symbolic link on the way is read and
// its target walked the same way (as the kernel would for the caller). The file itself is opened without
// following a link and checked for read permission on its descriptor, and what is taken is that descriptor's
// inode: the copier copies that inode or nothing (copy-source.ts), so swapping a directory or the file for a
// link after the check gains nothing. grimseld's unit has no CAP_SETUID (it cannot become the caller), hence
// the check by hand.
import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { fileAttribute } from '../common/provenance.js';
import { monotonicMs } from '../common/monotonic.js';

const run = promisify(execFile);

/** Who calls: a uid that is not 0, and all the groups it has (primary and supplementary). */
export interface Caller {
  uid: number;
  gids: ReadonlySet<number>;
}

/** The caller may not read the file (or reach it): the message names the path and why. */
export class NotReadable extends Error {}

/**
 * The groups of `uid` from the user database through NSS (`getent passwd`, then `id -G`: files, LDAP, SSSD
 * alike), the groups any login of that user gets and the ones the bus daemon itself goes by for its policy
 * (the operators group). /etc/group alone would miss directory-service groups and the primary group. Throws
 * when the user database does not know the uid: the caller is then refused (fail closed).
 */
export async function callerOf(uid: number): Promise<Caller> {
  const now = monotonicMs();
  const cached = known.get(uid);
  if (cached && now - cached.at < GROUPS_KEPT_MS) return cached.caller;
  const caller = await lookUp(uid);
  known.set(uid, { caller, at: now });
  if (known.size > 256) known.delete(known.keys().next().value as number);
  return caller;
}

/**
 * How long a uid's groups are kept: an operator's `ppuctl add` of many files asks two commands once, not twice
 * per file (a slow directory service would otherwise outlast ppuctl's wait), and a group change still counts
 * within a minute, as it would for a new login.
 */
const GROUPS_KEPT_MS = 60_000;
const known = new Map<number, { caller: Caller; at: number }>();

async function lookUp(uid: number): Promise<Caller> {
  const fail = (why: string): never => {
    throw new NotReadable(`cannot tell the groups of the calling uid ${uid} (${why}), so it may add no file; ask root to add it`);
  };
  let name = '';
  let primary = NaN;
  try {
    const f = (await run('getent', ['passwd', String(uid)], { timeout: 10_000 })).stdout.split('\n')[0]!.split(':');
    if (f.length >= 4 && Number(f[2]) === uid) [name, primary] = [f[0]!, Number(f[3])];
  } catch (e) {
    fail(`getent passwd: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!name || !Number.isInteger(primary)) fail('the user database has no such user');
  let ids: number[] = [];
  try {
    ids = (await run('id', ['-G', '--', name], { timeout: 10_000 })).stdout.trim().split(/\s+/).map(Number);
  } catch (e) {
    fail(`id -G: ${(e as Error).message.split('\n')[0]}`);
  }
  if (ids.length === 0 || !ids.every((g) => Number.isInteger(g) && g >= 0)) fail('id -G printed no groups');
  return { uid, gids: new Set([primary, ...ids]) };
}

const READ = 4;
const SEARCH = 1;

// Tags of a Linux POSIX ACL as stored in `system.posix_acl_access` (include/uapi/linux/posix_acl.h).
const USER_OBJ = 0x01;
const USER = 0x02;
const GROUP_OBJ = 0x04;
const GROUP = 0x08;
const MASK = 0x10;
const OTHER = 0x20;

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

/** The entries of an ACL attribute (version 2, then 8 bytes per entry: u16 tag, u16 perm, u32 id); undefined if malformed. */
export function parseAcl(buf: Buffer): AclEntry[] | undefined {
  if (buf.length < 4 || (buf.length - 4) % 8 !== 0 || buf.readUInt32LE(0) !== 2) return undefined;
  const out: AclEntry[] = [];
  for (let at = 4; at < buf.length; at += 8) out.push({ tag: buf.readUInt16LE(at), perm: buf.readUInt16LE(at + 2), id: buf.readUInt32LE(at + 4) });
  return out;
}

/**
 * Whether `caller` has permission `want` (4 read, 1 search) on a file with owner, group and mode `st` and, when
 * it has one, the access ACL `acl`: the kernel's rules (posix_acl_permission, generic_permission), owner class
 * first, then named user, then any matching group, then others.
 */
export function permits(st: Pick<Stats, 'uid' | 'gid' | 'mode'>, caller: Caller, want: number, acl?: AclEntry[]): boolean {
  if (!acl) {
    const bits = st.uid === caller.uid ? st.mode >> 6 : caller.gids.has(st.gid) ? st.mode >> 3 : st.mode;
    return (bits & want) === want;
  }
  const mask = acl.find((e) => e.tag === MASK)?.perm ?? 7;
  let groupMatched = false;
  for (const e of acl) {
    if (e.tag === USER_OBJ && st.uid === caller.uid) return (e.perm & want) === want;
    if (e.tag === USER && e.id === caller.uid) return (e.perm & mask & want) === want;
    if ((e.tag === GROUP_OBJ && caller.gids.has(st.gid)) || (e.tag === GROUP && caller.gids.has(e.id))) {
      groupMatched = true;
      if ((e.perm & mask & want) === want) return true;
    }
    if (e.tag === OTHER) return !groupMatched && (e.perm & want) === want;
  }
  return false; // no OTHER entry: not an ACL the kernel would have stored
}

/** Checks `want` on the open `fd` (its stat `st`), its ACL included; throws NotReadable saying `what`. */
function check(fd: number, st: Stats, caller: Caller, want: number, what: string): void {
  const raw = fileAttribute(fd, 'system.posix_acl_access');
  const acl = raw && parseAcl(raw);
  if (raw && !acl) throw new NotReadable(`${what} has an access ACL grimseld cannot read, so uid ${caller.uid} may not add it`);
  if (!permits(st, caller, want, acl)) {
    throw new NotReadable(want === READ ? `uid ${caller.uid} may not read ${what}` : `uid ${caller.uid} may not search directory ${what}`);
  }
}

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** As the kernel's limit on links followed in one lookup (MAXSYMLINKS). */
const LINKS_MAX = 40;

/**
 * The file at the absolute, normalized path `src`, checked as above for `caller`: its stat (inode, size, mtime)
 * as the descriptor the check was made on shows it. Throws NotReadable when the caller could not read it, and
 * for what a plain AddFile refuses too (missing, a link, not a regular file), so that no answer tells a caller
 * more about a directory they cannot search than that they cannot.
 */
export function statAsCaller(src: string, caller: Caller): Stats {
  try {
    return walkAsCaller(src, caller);
  } catch (e) {
    if (e instanceof NotReadable) throw e;
    // grimseld's own lookups (its descriptors' /proc/self/fd paths) are not the caller's to see.
    throw new NotReadable(`'${src}' cannot be checked (${(e as NodeJS.ErrnoException).code ?? 'error'}), so it is not added; ask root to add it`);
  }
}

/**
 * Kernel file systems whose files are not what they seem to an operator: /proc (whose links show other
 * processes' directories, which root reads and the operator may not) and /sys (whose files give root more
 * than they give the operator, capabilities not being file modes). No operator adds from them.
 */
let kernelDevs: Set<number> | undefined;
function isKernelFs(st: Stats): boolean {
  kernelDevs ??= new Set(['/proc', '/sys'].map((d) => lstatSync(d, { throwIfNoEntry: false })?.dev).filter((d): d is number => d !== undefined));
  return kernelDevs.has(st.dev);
}

function walkAsCaller(src: string, caller: Caller): Stats {
  const parts = src.split('/').filter((p) => p !== '' && p !== '.');
  const name = parts.pop();
  if (name === undefined || name === '..') throw new NotReadable(`'${src}' names no file`);
  let links = 0;
  let shown = '/';
  let dir = openSync('/', DIR_FLAGS);
  try {
    check(dir, fstatSync(dir), caller, SEARCH, shown);
    while (parts.length) {
      const part = parts.shift()!;
      const entry = `/proc/self/fd/${dir}/${part}`;
      let next: number;
      try {
        next = openSync(entry, DIR_FLAGS);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new NotReadable(`file '${src}' does not exist`);
        if (code !== 'ELOOP' && code !== 'ENOTDIR') throw e;
        const st = lstatSync(entry, { throwIfNoEntry: false });
        if (!st?.isSymbolicLink()) throw new NotReadable(`'${src}': ${shown}${part} is not a directory`);
        // Walked like the rest, from `/` or from this directory: what the caller's own open would do.
        if (++links > LINKS_MAX) throw new NotReadable(`'${src}': too many levels of symbolic links`);
        const target = readlinkSync(entry);
        parts.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        if (target.startsWith('/')) {
          closeSync(dir);
          dir = openSync('/', DIR_FLAGS);
          shown = '/';
          check(dir, fstatSync(dir), caller, SEARCH, shown);
        }
        continue;
      }
      closeSync(dir);
      dir = next;
      shown = part === '..' ? `${shown}../` : `${shown}${part}/`;
      const st = fstatSync(dir);
      if (isKernelFs(st)) throw new NotReadable(`'${src}' lies in /proc or /sys, from which no operator may add files; ask root to add it`);
      check(dir, st, caller, SEARCH, shown.replace(/\/$/, '') || '/');
    }
    const entry = `/proc/self/fd/${dir}/${name}`;
    const seen = lstatSync(entry, { throwIfNoEntry: false });
    if (!seen) throw new NotReadable(`file '${src}' does not exist`);
    if (seen.isSymbolicLink()) throw new NotReadable(`'${src}' is a symbolic link, not a regular file`);
    // Not opened unless a regular file: opening a device or a FIFO can do things of its own.
    if (!seen.isFile()) throw new NotReadable(`'${src}' is not a regular file`);
    const fd = openSync(entry, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.ino !== seen.ino || st.dev !== seen.dev) throw new NotReadable(`'${src}' changed while it was checked; add it again`);
      check(fd, st, caller, READ, `'${src}'`);
      return st;
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(dir);
  }
}

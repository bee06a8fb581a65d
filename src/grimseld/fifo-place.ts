// Where the operators' FIFO lives (G8): made root's, in a directory no one else can put another FIFO in.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readlinkSync, statSync, type Stats, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, fileKind, TOP } from '../common/config-file.js';

/** Why another user could change what `p` (lstat'ed as `st`) is or holds; undefined if only root can. */
function othersMayChange(p: string, st: Stats): string | undefined {
  const me = process.getuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== me) return `'${p}' is owned by uid ${st.uid}`;
  if (st.isSymbolicLink()) return undefined; // its own bits mean nothing; where it leads is looked at too
  const writable = st.mode & 0o022;
  if (writable === 0 || (st.mode & 0o1000) !== 0) return undefined;
  const who = writable & 0o002 ? 'anyone' : 'its group, or users an ACL names';
  return `'${p}' may be written by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}) and is not sticky`;
}

/** Links followed on one path at most, as the kernel's own limit (ELOOP). */
const LINKS_MAX = 40;

/**
 * Why another user could put their own FIFO at a path in `dir`: a directory or link on its way that is not
 * root's, or a directory that group or others may write and is not sticky (/tmp and /ramdisk are sticky: no one
 * there removes or renames root's entries). The path is walked as the kernel walks it, one name at a time: each
 * link's own owner looked at, then its target walked the same way from where the link lies, and `..` taken
 * after the links before it (path.resolve would drop `link/..` as text; a link to a user's link would be passed
 * over by realpath). Only the part that exists is looked at: mkdir makes the rest, root's. Undefined if none.
 */
export function openToOthers(dir: string): string | undefined {
  const root = lstatSync('/');
  const top = othersMayChange('/', root);
  if (top !== undefined) return top;
  const todo = dir.split('/').filter((n) => n !== '');
  let at = '/';
  let links = 0;
  while (todo.length > 0) {
    const name = todo.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      at = path.dirname(at); // looked at on the way down already
      continue;
    }
    const next = path.join(at, name);
    const st = lstatSync(next, { throwIfNoEntry: false });
    if (st === undefined) return undefined;
    const why = othersMayChange(next, st);
    if (why !== undefined) return why;
    if (!st.isSymbolicLink()) {
      at = next;
      continue;
    }
    if (++links > LINKS_MAX) throw new Error(`too many symbolic links on the way to '${dir}'`);
    const target = readlinkSync(next);
    todo.unshift(...target.split('/').filter((n) => n !== ''));
    if (target.startsWith('/')) at = '/';
  }
  return undefined;
}

/**
 * Refuses a FIFO path whose directory another user could put their own FIFO in, or where none can be made (a file on
 * the way, a loop of links): before anything is made there, and again once it is.
 */
function refuseUnsafe(file: string, where: string, fifo: string): void {
  let unsafe: string | undefined;
  try {
    unsafe = openToOthers(path.dirname(fifo));
  } catch (e) {
    throw new ConfigError(file, [`${where}: cannot create the FIFO '${fifo}': ${(e as Error).message}`]);
  }
  if (unsafe === undefined) return;
  throw new ConfigError(file, [`${where}: '${fifo}': ${unsafe}: another user could put their own FIFO there and have grimseld ` +
    'copy any file as root; use a directory only root may write (the default is /run/grimseld/files)']);
}

/**
 * What `--check` can tell of the FIFO `key` names without making anything: a directory another user could put their
 * own FIFO in, a path on the way that is no directory, or something other than a FIFO at the path, each the
 * configuration error the start would give.
 */
export function checkFifo(file: string, key: string, fifo: string): void {
  const where = `${TOP}, key '${key}'`;
  refuseUnsafe(file, where, fifo);
  // What cannot be looked at (ppuctl run by a user, a directory closed to them) is not judged: the start will.
  const look = <T>(f: () => T): T | undefined => { try { return f(); } catch { return undefined; } };
  for (let at = path.dirname(path.resolve(fifo)); ; at = path.dirname(at)) {
    const st = look(() => statSync(at, { throwIfNoEntry: false }));
    if (st !== undefined && !st.isDirectory()) throw new ConfigError(file, [`${where}: cannot create the FIFO '${fifo}': '${at}' is ${fileKind(st)}, not a directory`]);
    if (st !== undefined || at === '/') break;
  }
  const st = look(() => lstatSync(fifo, { throwIfNoEntry: false }));
  if (st !== undefined && !st.isFIFO()) {
    throw new ConfigError(file, [`${where}: '${fifo}' exists and is ${fileKind(st)}, not a FIFO; ` +
      'grimseld does not take it over: configure another path or remove it']);
  }
}

/**
 * Makes the FIFO `key` names (root's, mode 0600) unless root's is there. A path that holds something else, or
 * where none can be made (/proc/files), is a configuration error naming the key, not a "Command failed:
 * mkfifo" from deep inside the start (exit 1). So is a directory another user could put their own FIFO in:
 * grimseld reads whatever FIFO is there, as root, and a user's would let that user have root copy files they
 * may not read (found by a hostile tester, a `fifo` in /ramdisk). A FIFO of another owner in a safe directory
 * (sticky: made before grimseld made its own) is replaced by root's: a FIFO holds nothing. Returns what to
 * log about that. `--check` and ppuctl make nothing: they ask checkFifo.
 */
export function prepareFifo(file: string, key: string, fifo: string): string | undefined {
  const where = `${TOP}, key '${key}'`;
  const cannot = (e: unknown, what = 'create'): ConfigError => {
    const why = String((e as { stderr?: Buffer }).stderr ?? '').trim().replace(/^mkfifo: (cannot create fifo '.*': )?/, '') || (e as Error).message;
    return new ConfigError(file, [`${where}: cannot ${what} the FIFO '${fifo}': ${why}`]);
  };
  const make = (): void => {
    try {
      execFileSync('mkfifo', ['-m', '0600', fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw cannot(e);
    }
  };
  // Before anything is made there (nothing of root's left in a user's directory), and again once made.
  checkFifo(file, key, fifo);
  try {
    mkdirSync(path.dirname(fifo), { recursive: true, mode: 0o755 });
  } catch (e) {
    throw cannot(e);
  }
  refuseUnsafe(file, where, fifo);
  const st = lstatSync(fifo, { throwIfNoEntry: false });
  if (st === undefined) {
    make();
    return undefined;
  }
  if (!st.isFIFO()) {
    throw new ConfigError(file, [`${where}: '${fifo}' exists and is ${fileKind(st)}, not a FIFO; ` +
      'grimseld does not take it over: configure another path or remove it']);
  }
  if (st.uid === (process.getuid?.() ?? 0)) return undefined;
  try {
    unlinkSync(fifo);
  } catch (e) {
    throw cannot(e, `replace another user's (uid ${st.uid})`);
  }
  make();
  return `'${fifo}' was a FIFO of uid ${st.uid}, not root's: replaced by root's own (mode 0600), so that only root, and whom the ` +
    'administrator lets write it, can add files through it';
}

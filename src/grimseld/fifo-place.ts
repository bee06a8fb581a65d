// Where the operators' FIFO lives (G8): made root's, in a directory no one else can put another FIFO in.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, fileKind } from '../common/config-file.js';

const TOP = 'top level (before any section)';

/**
 * Why another user could put their own FIFO at a path in `dir`: a directory on its way (links followed) that is
 * not root's, or that group or others may write and is not sticky (/tmp and /ramdisk are sticky: no one there
 * removes or renames root's entries). Undefined if none.
 */
export function openToOthers(dir: string): string | undefined {
  const me = process.getuid?.() ?? 0;
  const real = realpathSync(dir);
  const parts = real.split('/').filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const cur = `/${parts.slice(0, i).join('/')}`;
    const st = statSync(cur);
    if (st.uid !== 0 && st.uid !== me) return `'${cur}' is owned by uid ${st.uid}`;
    const writable = st.mode & 0o022;
    if (writable !== 0 && (st.mode & 0o1000) === 0) {
      return `'${cur}' may be written by ${writable & 0o002 ? 'anyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}) and is not sticky`;
    }
  }
  return undefined;
}

/**
 * Makes the FIFO `key` names (root's, mode 0600) unless root's is there. A path that holds something else, or
 * where none can be made (/proc/files), is a configuration error naming the key, not a "Command failed:
 * mkfifo" from deep inside the start (exit 1). So is a directory another user could put their own FIFO in:
 * grimseld reads whatever FIFO is there, as root, and a user's would let that user have root copy files they
 * may not read (found by a hostile tester, a `fifo` in /ramdisk). A FIFO of another owner in a safe directory
 * (sticky: made before grimseld made its own) is replaced by root's: a FIFO holds nothing. Returns what to
 * log about that. Run at start only, as prepareDirectory.
 */
export function prepareFifo(file: string, key: string, fifo: string): string | undefined {
  const where = `${TOP}, key '${key}'`;
  const cannot = (e: unknown): ConfigError => {
    const why = String((e as { stderr?: Buffer }).stderr ?? '').trim().replace(/^mkfifo: (cannot create fifo '.*': )?/, '') || (e as Error).message;
    return new ConfigError(file, [`${where}: cannot create the FIFO '${fifo}': ${why}`]);
  };
  const make = (): void => {
    try {
      execFileSync('mkfifo', ['-m', '0600', fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw cannot(e);
    }
  };
  try {
    mkdirSync(path.dirname(fifo), { recursive: true, mode: 0o755 });
  } catch (e) {
    throw cannot(e);
  }
  const unsafe = openToOthers(path.dirname(fifo));
  if (unsafe !== undefined) {
    throw new ConfigError(file, [`${where}: '${fifo}': ${unsafe}: another user could put their own FIFO there and have grimseld ` +
      'copy any file as root; use a directory only root may write (the default is /run/grimseld/files)']);
  }
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
  unlinkSync(fifo);
  make();
  return `'${fifo}' was a FIFO of uid ${st.uid}, not root's: replaced by root's own (mode 0600), so that only root, and whom the ` +
    'administrator lets write it, can add files through it';
}

// Is a directory a mount point, and how full is it (G6, G7, G13)?
import { readFile, realpath } from 'node:fs/promises';
import { statfsOf } from '../common/statfs.js';
import * as path from 'node:path';
import { mountOf, mountsOf, type Mount } from '../common/mounts.js';

/**
 * Whether a file system of its own is mounted at `dir` (G13), read from /proc/self/mountinfo off the event loop
 * (a mount check runs on the copy path). Throws, naming why, when the table cannot be read (EMFILE): the caller
 * cannot tell, and writes nothing there (mount-watch.ts, reclaimer.ts).
 */
export async function isMountPoint(dir: string): Promise<boolean> {
  const real = await realpath(dir).catch(() => undefined);
  if (!real) return false;
  let table: string;
  try {
    table = await readFile('/proc/self/mountinfo', 'utf8');
  } catch (e) {
    throw new Error(`cannot read the mount table /proc/self/mountinfo: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return mountedAt(real, mountsOf(table));
}

export interface FillState {
  /** Percent of the blocks in use (as df shows it: used / (used + available)). */
  percent: number;
  totalBytes: number;
  availableBytes: number;
}

export async function fillState(dir: string): Promise<FillState> {
  const s = await statfsOf(dir);
  const used = s.blocks - s.bfree;
  const usable = used + s.bavail;
  return {
    percent: usable > 0 ? (used * 100) / usable : 100,
    totalBytes: s.blocks * s.bsize,
    availableBytes: s.bavail * s.bsize,
  };
}

/**
 * Whether the mount on top at real path `at` shows something other than the bare directory: the directory as the
 * mount holding its parent has it. A bind of that directory onto itself does not count: systemd makes one for every
 * ReadWritePaths= entry of a unit with ProtectSystem=strict (grimseld.service's -/data), so /data is in the unit's
 * mount table whether or not the disk is there, and taken for a mount point it would let copies go to the root
 * file system.
 */
export function mountedAt(at: string, mounts: Mount[]): boolean {
  const top = onTop(mounts.filter((m) => m.at === at));
  if (!top) return false;
  const parent = at === '/' ? undefined : mountOf(path.dirname(at), mounts);
  if (!parent) return true;
  return top.dev !== parent.dev || top.root !== path.posix.join(parent.root, path.posix.relative(parent.at, at));
}

/**
 * The top one of mounts at one point, by their parent ids: a mount propagated into a unit's namespace after it
 * started is tucked under the ones there and listed after them (seen: a disk under systemd's bind of the
 * directory, and the disk again on top of that). The last listed where the ids do not form one chain.
 */
function onTop(here: Mount[]): Mount | undefined {
  const ids = new Set(here.map((m) => m.id));
  let next = here.filter((m) => !ids.has(m.parent));
  let top: Mount | undefined;
  let n = 0;
  while (next.length === 1) {
    top = next[0]!;
    n++;
    next = here.filter((c) => c.parent === top!.id);
  }
  return n === here.length ? top : here[here.length - 1];
}

// Whether a failed run failed on the PPU's side (its ramdisk full or read-only, furkad out of file descriptors)
// rather than at the detector: the loop says which (F10), so that an operator looks at the PPU, not the detector.
import { KeyFileError } from '../common/shared-key.js';

/** errno codes of the PPU's own resources: a disk full, over quota or read-only; furkad out of descriptors. */
const PPU_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EMFILE', 'ENFILE']);

/** The same, as rsync's receiver (furkad's side) reports them; lines of its sender are the detector's. */
const PPU_SAYS = /No space left on device|Disk quota exceeded|Read-only file system|Too many open files/;

/** `{ ppu: where }` if error `e` is one of the PPU's own resources, for a RunOutcome; {} otherwise. */
export function ppuSideOf(e: unknown, where: string): { ppu?: string } {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && PPU_CODES.has(code) ? { ppu: where } : {};
}

/**
 * A line of the daemon's (the detector's) sender: rsync 3.2 and later put `[sender]` in each; rsync before 3.2
 * (CentOS 7's 3.1.2, a vendor's old daemon) does not in most (`rsync: send_files failed to open "f1" (in data):
 * Too many open files (24)`), but names each of its files with the module it is in, which the receiver never does.
 */
const DETECTORS = /\[sender\]|" \(in [^)]*\)/;

/** `{ ppu: where }` if rsync's messages say the receiving side (the PPU) ran out of a resource; {} otherwise. */
export function ppuSideOfRsync(stderr: string, noRoom: boolean, where: string): { ppu?: string } {
  if (noRoom) return { ppu: where };
  return stderr.split('\n').some((l) => !DETECTORS.test(l) && PPU_SAYS.test(l)) ? { ppu: where } : {};
}

/**
 * A run that could not read the PPU's copy of the detector server's key (config key `key`): its words, naming the
 * key, and the file as the PPU's side (the PPU's own file, not the detector). Any other error: its message only.
 */
export function keyFileOutcome(key: string, e: unknown): { message: string; ppu?: string } {
  if (e instanceof KeyFileError) return { message: `${key}: ${e.message}`, ppu: e.file };
  return { message: (e as Error).message };
}

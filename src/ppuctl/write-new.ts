// Writing an output file that must not exist yet (`-o OUT`): the target is usually a live key or an /etc/ppu file.
import { closeSync, constants, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';

/** The output file exists already (or is a link): nothing was written. */
export class OutputExists extends Error {}

/**
 * Writes `text` to `file`, created here (O_EXCL: an existing file, or a symbolic link even to nothing, is never
 * written through, as a check then a write would be), flushed; a write that fails removes what it made.
 */
export function writeNew(file: string, text: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new OutputExists(`-o ${file}: the file exists (or is a link) and is never replaced: ` +
      'name a new file, review it, then move it into place');
    throw new Error(`-o ${file}: cannot create it: ${(e as Error).message}`);
  }
  try {
    const bytes = Buffer.from(text, 'utf8');
    for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(file);
    throw new Error(`-o ${file}: cannot write it: ${(e as Error).message}`);
  }
  closeSync(fd);
}

// Small state files that must survive a crash or a power cut whole: the old content or the new, never a mix.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** Writes `text` to `file`: a new file, flushed, renamed over the old one, the rename flushed. */
export function writeDurably(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, text); // all of it or an error: a bare write() may store a part (append-log.ts)
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true }); // a full disk: the old file stands, and no empty side file is left beside it
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

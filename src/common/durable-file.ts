// Small state files that must survive a crash or a power cut whole: the old content or the new, never a mix.
import { closeSync, fsyncSync, openSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** Writes `text` to `file`: a new file, flushed, renamed over the old one, the rename flushed. */
export function writeDurably(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, text); // all of it or an error: a bare write() may store a part (append-log.ts)
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dir = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

// Small state files that must survive a crash or a power cut whole: the old content or the new, never a mix.
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import * as path from 'node:path';

/** Writes `text` to `file`: a new file, flushed, renamed over the old one, the rename flushed. */
export function writeDurably(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, text);
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

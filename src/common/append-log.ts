// Append-only JSON-lines files in a daemon's state directory (grimseld's journal, furkad's outbox).
import { mkdirSync, readFileSync, truncateSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Reads `dir/name` for replay (the directory is created, a missing file reads as empty). A torn last
 * line (the process died mid-write) is cut off the file first: it would otherwise glue onto the next
 * record appended, or sit in the middle of the file later. Returns the complete lines.
 */
export function readAppendLog(dir: string, name: string): { file: string; lines: string[] } {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const file = path.join(dir, name);
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  if (complete.length !== text.length) truncateSync(file, Buffer.byteLength(complete));
  return { file, lines: complete.split('\n').filter(Boolean) };
}

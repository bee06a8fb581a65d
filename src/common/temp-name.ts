// Temp names made beside a final name (`.NAME.grimsel-XXXXXXXX`), kept within the kernel's limit on a name.
import { createHash } from 'node:crypto';

/** Linux's NAME_MAX: the longest name of a directory entry, in bytes. */
export const NAME_MAX = 255;

/**
 * The prefix of the temp names for `name` with `tag` (e.g. `.grimsel-`), to which the caller adds `suffixBytes`
 * bytes (a random suffix): `.NAME` + tag while the whole fits in NAME_MAX. A longer NAME (a detector may write
 * names up to 255 bytes) is cut to fit, at a character boundary, and followed by `~` and 8 hex digits of its
 * hash, so that two long names with the same beginning never share a prefix (a sweep of one's stale temp
 * files must not remove the other's).
 */
export function tempPrefix(name: string, tag: string, suffixBytes: number): string {
  const whole = `.${name}${tag}`;
  if (Buffer.byteLength(whole) + suffixBytes <= NAME_MAX) return whole;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  const cut = cutToBytes(name, NAME_MAX - suffixBytes - Buffer.byteLength(tag) - '.~'.length - hash.length);
  return `.${cut}~${hash}${tag}`;
}

/** The longest start of `text` that is at most `max` bytes in UTF-8, cut at a character boundary. */
export function cutToBytes(text: string, max: number): string {
  let room = max;
  let cut = '';
  for (const ch of text) {
    room -= Buffer.byteLength(ch);
    if (room < 0) break;
    cut += ch;
  }
  return cut;
}

// Names within the kernel's limit on a directory entry: temp names (`.NAME.grimsel-` and a suffix) and numbered
// names (`NAME.~N~`) made beside a final name, and shown forms of names, all fit even beside a long NAME.
import { createHash } from 'node:crypto';

/** Linux's NAME_MAX: the longest name of a directory entry, in bytes. */
export const NAME_MAX = 255;

/**
 * `name` if it and `reserve` more bytes fit in NAME_MAX; otherwise its start, cut at a character boundary,
 * followed by `~` and 8 hex digits of the whole name's hash, so that two long names with the same start never
 * come out alike (a sweep of one's temp files must not remove the other's; a numbered name found there must
 * not be taken for the other file's).
 */
export function fitName(name: string, reserve: number): string {
  if (Buffer.byteLength(name) + reserve <= NAME_MAX) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${cutToBytes(name, NAME_MAX - reserve - '~'.length - hash.length)}~${hash}`;
}

/**
 * The prefix of the temp names for `name` with `tag` (e.g. `.grimsel-`), to which the caller adds `suffixBytes`
 * bytes (a random suffix): `.NAME` + tag, NAME shortened by fitName where the whole would not fit.
 */
export function tempPrefix(name: string, tag: string, suffixBytes: number): string {
  return `.${fitName(name, 1 + Buffer.byteLength(tag) + suffixBytes)}${tag}`;
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

// File names furkad can hand over, and the rsync filter that leaves every other name on the detector (F1, F2, G12).
//
// A name reaches grimseld as a D-Bus string, which must be valid UTF-8, and grimseld refuses control
// characters in a path (intake.ts). A file whose name is neither must therefore never be taken off the
// detector: rsync's sender is given exclude rules that match exactly such names, so it neither sends nor
// removes them, and reports each one it hides ('[sender] hiding file NAME …', with -vv), which furkad logs.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { hasControl, utf8Text } from '../common/paths.js';

/**
 * A name (or relative path) matched as it is by an rsync filter pattern, in a pattern that holds wildcards of its
 * own (`wild`) or not. rsync reads `\` as an escape only in a pattern that holds a wildcard (`*`, `?`, `[`): there
 * every wildcard character of the name and every `\` is escaped; in one without, the name is literal, a `\` in
 * it included (escaped, it would match a name with two).
 */
export function nameInPattern(rel: string, wild: boolean): string {
  return wild || /[*?[]/.test(rel) ? rel.replace(/[*?[\\]/g, (c) => `\\${c}`) : rel;
}

/** One rsync wildmatch bracket expression of a byte range (bytes, not characters: rsync compares bytes). */
const range = (lo: number, hi: number): Buffer => Buffer.from([0x5b, lo, 0x2d, hi, 0x5d]); // [lo-hi]
const bytes = (...parts: Array<Buffer | string | number>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.isBuffer(p) ? p : Buffer.from(p, 'latin1'))));

/** A continuation byte, and any other byte (a pattern has no '/': it is matched against one name). */
const CONT = range(0x80, 0xbf);
const NOT_CONT = bytes('[!', range(0x80, 0xbf).subarray(1));

/**
 * Exclude patterns (one a line, for --exclude-from) matching a name that holds a control character or is not
 * well-formed UTF-8 (Unicode table 3-7: what Node's decoder and D-Bus accept). A pattern without '/' is
 * matched against the last component of a path, so a directory with such a name is left whole.
 */
const PATTERNS: Buffer[] = [
  // C0 controls and DEL (a newline cannot appear in a filter file, but a range can hold it).
  bytes('*[', 0x01, '-', 0x1f, 0x7f, ']*'),
  // Bytes that never occur in UTF-8.
  bytes('*[', 0xc0, 0xc1, range(0xf5, 0xff).subarray(1, 4), ']*'),
  // A continuation byte with no lead byte before it: first, after ASCII, or one too many after a sequence.
  bytes(CONT, '*'),
  bytes('*', range(0x01, 0x7f), CONT, '*'),
  bytes('*', range(0xc2, 0xdf), CONT, CONT, '*'),
  bytes('*', range(0xe0, 0xef), CONT, CONT, CONT, '*'),
  bytes('*', range(0xf0, 0xf4), CONT, CONT, CONT, CONT, '*'),
  // A lead byte with too few continuation bytes after it, at the end of the name or before another byte.
  bytes('*', range(0xc2, 0xdf)),
  bytes('*', range(0xc2, 0xdf), NOT_CONT, '*'),
  bytes('*', range(0xe0, 0xef)),
  bytes('*', range(0xe0, 0xef), CONT),
  bytes('*', range(0xe0, 0xef), NOT_CONT, '*'),
  bytes('*', range(0xe0, 0xef), CONT, NOT_CONT, '*'),
  bytes('*', range(0xf0, 0xf4)),
  bytes('*', range(0xf0, 0xf4), CONT),
  bytes('*', range(0xf0, 0xf4), CONT, CONT),
  bytes('*', range(0xf0, 0xf4), NOT_CONT, '*'),
  bytes('*', range(0xf0, 0xf4), CONT, NOT_CONT, '*'),
  bytes('*', range(0xf0, 0xf4), CONT, CONT, NOT_CONT, '*'),
  // Overlong forms, UTF-16 surrogates, code points above U+10FFFF.
  bytes('*', 0xe0, range(0x80, 0x9f), '*'),
  bytes('*', 0xed, range(0xa0, 0xbf), '*'),
  bytes('*', 0xf0, range(0x80, 0x8f), '*'),
  bytes('*', 0xf4, range(0x90, 0xbf), '*'),
];

export const NAMES_FILTER = Buffer.concat(PATTERNS.map((p) => bytes(p, '\n')));

/** Writes the filter into `dir` (furkad's state_dir) and returns its path, for every run's --exclude-from. */
export function writeNamesFilter(dir: string): string {
  const file = path.join(dir, 'rsync-names.filter');
  writeFileSync(file, NAMES_FILTER, { mode: 0o644 });
  return file;
}

/** Whether a name (or path) of raw bytes can be handed to grimseld as it is: valid UTF-8, no control characters. */
export function deliverable(name: Buffer): boolean {
  const text = utf8Text(name);
  return text !== undefined && !hasControl(text);
}

/** Length of the well-formed UTF-8 sequence at `i` (table 3-7), 0 if there is none. */
function sequenceAt(b: Buffer, i: number): number {
  const c = b[i]!;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const [lo, hi] = c === 0xe0 ? [0xa0, 0xbf] : c === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const [lo, hi] = c === 0xf0 ? [0x90, 0xbf] : c === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/**
 * A name as furkad shows it and, for a name it cannot hand over, the name it gets on the PPU: each byte that is
 * a control character or not part of well-formed UTF-8 written as rsync writes it, `\#ooo` (octal), the rest as it is.
 */
export function escapeName(name: Buffer): string {
  let out = '';
  for (let i = 0; i < name.length;) {
    const n = sequenceAt(name, i);
    const c = name[i]!;
    if (n === 0 || c < 0x20 || c === 0x7f) {
      out += `\\#${c.toString(8).padStart(3, '0')}`;
      i++;
    } else {
      out += name.subarray(i, i + n).toString('utf8');
      i += n;
    }
  }
  return out;
}

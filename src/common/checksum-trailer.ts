// How a file's checksum travels with it over the agent protocol (docs/agent-protocol.md; I1, I2): the agent
// sends the checksum of the bytes it sent in the trailer `x-furka-checksum: xxh128:<hex>`, after the body, so
// that hashing never delays the first byte; furkad hashes what it receives and compares the two.
import { ALGORITHM, tagged, untagged } from './checksum.js';
import type { IncomingHttpHeaders } from 'node:http2';

export const CHECKSUM_TRAILER = 'x-furka-checksum';

/** The trailer field that carries the checksum `hex` (lower-case hex digits) of a body. */
export function checksumTrailer(hex: string): Record<string, string> {
  return { [CHECKSUM_TRAILER]: tagged(hex) };
}

/**
 * What the sender said about the body: its checksum's hex digits; `absent` (an agent older than the trailer);
 * or `unreadable`, the value as sent (another algorithm than ours, or not a checksum at all).
 */
export type SentChecksum = { hex: string } | { absent: true } | { unreadable: string };

/** Reads the checksum out of a response's trailers (none at all: `absent`). */
export function sentChecksum(trailers: IncomingHttpHeaders | undefined): SentChecksum {
  const raw = trailers?.[CHECKSUM_TRAILER];
  if (raw === undefined) return { absent: true };
  const value = Array.isArray(raw) ? raw.join(',') : raw;
  const hex = untagged(value);
  return hex === undefined ? { unreadable: value } : { hex };
}

/**
 * The arrival check (I2) as a table: `match` the bytes are the agent's; `mismatch` they were damaged on the
 * way (never placed, fetched again); `unchecked` the agent said nothing furkad can check against (furkad's own
 * checksum of what arrived is all there is, and says so).
 */
export type Arrival = 'match' | 'mismatch' | 'unchecked';

export function arrival(sent: SentChecksum, receivedHex: string): Arrival {
  if (!('hex' in sent)) return 'unchecked';
  return sent.hex === receivedHex ? 'match' : 'mismatch';
}

/** How a sent checksum is shown in a log line. */
export function shownSent(sent: SentChecksum): string {
  if ('hex' in sent) return tagged(sent.hex);
  if ('unreadable' in sent) return sent.unreadable;
  return `(none: the agent sends no ${ALGORITHM} checksum)`;
}

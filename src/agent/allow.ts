// The `allow` list (A1): which peer addresses may talk to the agent. IPv4, IPv6, IPv4-mapped IPv6.
import { isIP } from 'node:net';

/** An address as 128 bits; IPv4 as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so one rule covers both spellings. */
function ipv4Bits(text: string): bigint {
  const octets = text.split('.').map(Number);
  return (0xffffn << 32n) | octets.reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
}

function ipv6Bits(text: string): bigint {
  let s = text;
  let tail: bigint[] = [];
  // A trailing dotted quad (::ffff:10.0.0.1, ::10.0.0.1) is the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (quad) {
    const v4 = ipv4Bits(quad[1]!) & 0xffffffffn;
    tail = [v4 >> 16n, v4 & 0xffffn];
    s = s.slice(0, -quad[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head, rest] = s.includes('::') ? s.split('::') as [string, string] : [s, undefined];
  const groups = (part: string | undefined): bigint[] => (part ? part.split(':').filter((g) => g !== '').map((g) => BigInt(`0x${g}`)) : []);
  const left = groups(head);
  const right = [...groups(rest), ...tail];
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array<bigint>(Math.max(zeros, 0)).fill(0n), ...right];
  return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** 128-bit form of an address, or undefined if it is none. A zone (fe80::1%eth0) is dropped. */
export function addressBits(text: string): bigint | undefined {
  const plain = text.replace(/%.*$/, '');
  switch (isIP(plain)) {
    case 4: return ipv4Bits(plain);
    case 6: return ipv6Bits(plain);
    default: return undefined;
  }
}

interface Range {
  bits: bigint;
  /** Leading bits that must match, out of 128. */
  prefix: number;
}

function mask(prefix: number): bigint {
  return prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
}

/** Parses one `allow` word (address or CIDR range); throws an Error phrased for the administrator. */
export function parseRange(word: string): Range {
  const [addr, len, extra] = word.split('/');
  const bits = addressBits(addr ?? '');
  if (bits === undefined || extra !== undefined) throw new Error(`'${word}' is not an IPv4 or IPv6 address or CIDR range`);
  const v4 = isIP(addr!.replace(/%.*$/, '')) === 4;
  const max = v4 ? 32 : 128;
  if (len === undefined) return { bits, prefix: 128 };
  if (!/^\d+$/.test(len) || Number(len) > max) throw new Error(`'${word}': the prefix length must be 0 to ${max}`);
  const prefix = Number(len) + (v4 ? 96 : 0);
  return { bits: bits & mask(prefix), prefix };
}

export class AllowList {
  readonly #ranges: Range[];

  /** `words`: addresses and CIDR ranges; throws on the first bad one. */
  constructor(words: string[]) {
    this.#ranges = words.map(parseRange);
  }

  /** Whether a peer (as net.Socket.remoteAddress gives it) may connect; an unparsable address never may. */
  allows(remoteAddress: string | undefined): boolean {
    const bits = remoteAddress === undefined ? undefined : addressBits(remoteAddress);
    if (bits === undefined) return false;
    return this.#ranges.some((r) => (bits & mask(r.prefix)) === r.bits);
  }
}

// A file's copy state on every storage, packed (BENCHMARKS.md): three bits a storage in one small integer while they
// fit, a byte a storage beyond that. With 100 000 files pending, a Map and a Set per file cost more than the
// rest of grimseld's memory together.

export type CopyState = 'pending' | 'copied' | 'failed';

/**
 * Per storage: pending, copied, failed (retried), failed for good (the source is gone, G12), copied and
 * verified (read back and checked against the file's checksum, I2): a verified copy is a copied one to
 * everything but the verified counts (I5), kept in the state so that a replay counts it again.
 */
const PENDING = 0;
const COPIED = 1;
const FAILED = 2;
const FAILED_FOR_GOOD = 3;
const VERIFIED = 4;
const NAMES: readonly CopyState[] = ['pending', 'copied', 'failed', 'failed', 'copied'];

const BITS = 3;
const MASK = (1 << BITS) - 1;
/** Storages whose codes fit in one 30-bit integer (a V8 small integer: no allocation). */
const PACKED_MAX = 10;

/** Copy states indexed by storage: an integer (≤ 10 storages) or one byte a storage. */
export type PackedStates = number | Uint8Array;

/** Every storage pending. */
export function allPending(storages: number): PackedStates {
  return storages <= PACKED_MAX ? 0 : new Uint8Array(storages);
}

function codeAt(p: PackedStates, i: number): number {
  return typeof p === 'number' ? (p >>> (BITS * i)) & MASK : p[i]!;
}

export function stateAt(p: PackedStates, i: number): CopyState {
  return NAMES[codeAt(p, i)]!;
}

/** Failed because the source is gone or changed: no retry will help. */
export function failedForGood(p: PackedStates, i: number): boolean {
  return codeAt(p, i) === FAILED_FOR_GOOD;
}

/** Copied, and the copy read back and found to have the file's checksum (I2). */
export function verifiedOn(p: PackedStates, i: number): boolean {
  return codeAt(p, i) === VERIFIED;
}

/** Copied, or failed for good: nothing more to do for this file on storage `i`. */
export function doneOn(p: PackedStates, i: number): boolean {
  const c = codeAt(p, i);
  return c === COPIED || c === VERIFIED || c === FAILED_FOR_GOOD;
}

/** Nothing more to do on any of `storages` storages. */
export function doneEverywhere(p: PackedStates, storages: number): boolean {
  for (let i = 0; i < storages; i++) if (!doneOn(p, i)) return false;
  return true;
}

/**
 * `p` with storage `i` set to `state`; `mark` is "for good" for 'failed' and "verified" for 'copied' (ignored
 * for 'pending'). A byte array is changed in place.
 */
export function withState(p: PackedStates, i: number, state: CopyState, mark = false): PackedStates {
  const code = state === 'pending' ? PENDING : state === 'copied' ? (mark ? VERIFIED : COPIED) : mark ? FAILED_FOR_GOOD : FAILED;
  if (typeof p !== 'number') {
    p[i] = code;
    return p;
  }
  return (p & ~(MASK << (BITS * i))) | (code << (BITS * i));
}

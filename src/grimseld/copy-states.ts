// A file's copy state on every storage, packed (issue 7): two bits a storage in one small integer while they
// fit, a byte a storage beyond that. With 100 000 files pending, a Map and a Set per file cost more than the
// rest of grimseld's memory together.

export type CopyState = 'pending' | 'copied' | 'failed';

/** Per storage: pending, copied, failed (retried), failed for good (the source is gone, SPEC G12). */
const PENDING = 0;
const COPIED = 1;
const FAILED = 2;
const FAILED_FOR_GOOD = 3;
const NAMES: readonly CopyState[] = ['pending', 'copied', 'failed', 'failed'];

/** Storages whose codes fit in one 30-bit integer (a V8 small integer: no allocation). */
const PACKED_MAX = 15;

/** Copy states indexed by storage: an integer (≤ 15 storages) or one byte a storage. */
export type PackedStates = number | Uint8Array;

/** Every storage pending. */
export function allPending(storages: number): PackedStates {
  return storages <= PACKED_MAX ? 0 : new Uint8Array(storages);
}

function codeAt(p: PackedStates, i: number): number {
  return typeof p === 'number' ? (p >>> (2 * i)) & 3 : p[i]!;
}

export function stateAt(p: PackedStates, i: number): CopyState {
  return NAMES[codeAt(p, i)]!;
}

/** Failed because the source is gone or changed: no retry will help. */
export function failedForGood(p: PackedStates, i: number): boolean {
  return codeAt(p, i) === FAILED_FOR_GOOD;
}

/** Copied, or failed for good: nothing more to do for this file on storage `i`. */
export function doneOn(p: PackedStates, i: number): boolean {
  const c = codeAt(p, i);
  return c === COPIED || c === FAILED_FOR_GOOD;
}

/** Nothing more to do on any of `storages` storages. */
export function doneEverywhere(p: PackedStates, storages: number): boolean {
  for (let i = 0; i < storages; i++) if (!doneOn(p, i)) return false;
  return true;
}

/** `p` with storage `i` set to `state` (`forGood` only matters for 'failed'); a byte array is changed in place. */
export function withState(p: PackedStates, i: number, state: CopyState, forGood = false): PackedStates {
  const code = state === 'copied' ? COPIED : state === 'pending' ? PENDING : forGood ? FAILED_FOR_GOOD : FAILED;
  if (typeof p !== 'number') {
    p[i] = code;
    return p;
  }
  return (p & ~(3 << (2 * i))) | (code << (2 * i));
}

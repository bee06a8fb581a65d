// Buffers for the bodies the agent sends, kept for the next file instead of given back to the system (A6).
//
// Why: a file is read whole into memory before it is sent (server.ts). A fresh buffer of an image's size is new
// memory from the kernel, and every one of its pages faults on first touch: measured on the 2-core VM, reading
// 1 MB into a fresh buffer costs 0.4–1.1 ms of CPU, into one used before 0.07 ms; under load the fresh reads
// were a third of the agent's CPU at 100 Hz x 1 MB. The pool keeps a few buffers per size class (powers of two)
// while files flow, and lets them all go after a while without files.

import { monotonicMs } from '../common/monotonic.js';

const MIN_CLASS = 64 * 1024;
/** Larger bodies are not pooled (rare, and too much memory to keep), and so not read whole either (file-body.ts). */
export const MAX_CLASS = 64 * 1024 * 1024;
/** Free buffers kept per size class, and in all (bytes): about one connection's fetches in flight of 6 MB images. */
const FREE_PER_CLASS = 16;
const FREE_MAX_BYTES = 160 * 1024 * 1024;
/** The pool is emptied after this long without a take(): an idle agent holds no memory for bodies. */
const IDLE_MS = 10_000;

export class BodyPool {
  readonly #free = new Map<number, ArrayBuffer[]>();
  #freeBytes = 0;
  #lastTake = 0;
  #timer: NodeJS.Timeout | undefined;

  /** A buffer of exactly `size` bytes, contents undefined. give() it back once nothing reads it any more. */
  take(size: number): Buffer {
    const cap = sizeClass(size);
    if (cap === undefined) return Buffer.allocUnsafeSlow(size);
    this.#lastTake = monotonicMs();
    this.#emptyWhenIdle();
    const ab = this.#free.get(cap)?.pop();
    if (ab) {
      this.#freeBytes -= cap;
      return Buffer.from(ab, 0, size);
    }
    return Buffer.from(Buffer.allocUnsafeSlow(cap).buffer, 0, size);
  }

  /** `b` (from take()) is no longer read by anyone: its memory serves the next file of its size class. */
  give(b: Buffer): void {
    const cap = sizeClass(b.length);
    const ab = b.buffer as ArrayBuffer;
    if (cap === undefined || b.byteOffset !== 0 || ab.byteLength !== cap) return;
    const list = this.#free.get(cap) ?? [];
    if (list.length >= FREE_PER_CLASS || this.#freeBytes + cap > FREE_MAX_BYTES || list.includes(ab)) return;
    list.push(ab);
    this.#free.set(cap, list);
    this.#freeBytes += cap;
    this.#emptyWhenIdle();
  }

  get freeBytes(): number {
    return this.#freeBytes;
  }

  #emptyWhenIdle(): void {
    if (this.#timer) return;
    const check = (): void => {
      const idle = monotonicMs() - this.#lastTake;
      if (idle >= IDLE_MS) {
        this.#timer = undefined;
        this.#free.clear();
        this.#freeBytes = 0;
      } else {
        this.#timer = setTimeout(check, IDLE_MS - idle);
        this.#timer.unref();
      }
    };
    this.#timer = setTimeout(check, IDLE_MS);
    this.#timer.unref();
  }
}

/** The pool's size class for `size` bytes (the power of two at or above it), or undefined if not pooled. */
function sizeClass(size: number): number | undefined {
  if (size > MAX_CLASS) return undefined;
  let cap = MIN_CLASS;
  while (cap < size) cap *= 2;
  return cap;
}

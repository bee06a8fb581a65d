// The checksum every image carries from the detector to every storage (I1–I4).
//
// XXH3-128 (xxHash), computed by hash-wasm: measured on the development machine (2-core AMD EPYC, Node 20,
// 1 MiB buffers, one core), XXH3-128 runs at 5.3 GB/s; OpenSSL through node:crypto gives sha256 1.7 GB/s only
// thanks to the CPU's SHA extensions (Intel server CPUs before Ice Lake have none: ~0.4 GB/s), sha1 1.8,
// blake2b512 0.9, md5 0.7 GB/s; hash-wasm's blake3 0.7 and crc32c 1.8 GB/s. A 6M detector at 100 Hz makes
// ~600 MB/s, so a cryptographic hash would take most of a core on the detector server, and another per storage
// on the PPU; XXH3-128 takes about a tenth. The job is catching corruption (a flipped bit on a disk, in a
// controller, in memory), not resisting an adversary who can write the storage anyway, and 128 bits make an
// accidental match out of the question. The value is the one `xxhsum -H2 FILE` prints (xxHash >= 0.8), so a
// facility can check a copy without this project. hash-wasm is pure WebAssembly (no native build, Node 16
// and 20 alike), has no dependencies and is kept up to date; node:crypto has no xxHash.
import { createXXHash128, type IHasher } from 'hash-wasm';
import { closeSync, openSync, read, readSync, constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** The algorithm's name as it is written next to each checksum (`xxh128:<hex>`). */
export const ALGORITHM = 'xxh128';

/** Hashers made by hash-wasm are WebAssembly instances (~150 µs to make): kept for reuse. */
const idle: IHasher[] = [];

/** Makes `n` hashers ahead, so that the first files do not wait for WebAssembly to compile. */
export async function prepareChecksums(n = 4): Promise<void> {
  const made = await Promise.all(Array.from({ length: n }, () => createXXHash128()));
  idle.push(...made);
}

/** One file's checksum as its bytes pass: update() with each piece in order, then hex() once. */
export class Checksum {
  #hasher: IHasher | undefined;
  #pending: Promise<IHasher> | undefined;
  /**
   * Pieces that came while no hasher was ready (none prepared was free): copies, hashed as soon as the hasher
   * WebAssembly is making exists, a fraction of a millisecond later. Not kept until hex(): a file sent in
   * pieces over minutes would otherwise be held whole here.
   */
  #queued: Uint8Array[] = [];
  #discarded = false;

  constructor() {
    const h = idle.pop();
    if (h) {
      this.#hasher = h.init();
      return;
    }
    const pending = createXXHash128();
    this.#pending = pending;
    pending.then((made) => this.#adopt(pending, made), () => undefined); // a failure is hex()'s to report
  }

  /** Adds the next bytes of the file. Synchronous when a prepared hasher was free (the usual case). */
  update(piece: Uint8Array): void {
    if (this.#hasher) this.#hasher.update(piece);
    else this.#queued.push(Buffer.from(piece)); // copied: the caller may reuse its buffer
  }

  /** The checksum as lower-case hex (32 digits); the hasher goes back to the pool. */
  async hex(): Promise<string> {
    const pending = this.#pending;
    if (pending) this.#adopt(pending, await pending);
    return this.hexSync();
  }

  /** Gives the hasher back unused (a transfer that failed half-way): no digest is taken. */
  discard(): void {
    if (this.#hasher) idle.push(this.#hasher);
    this.#hasher = undefined;
    this.#queued = [];
    this.#discarded = true;
  }

  /** The hasher made for this checksum exists: it takes the queued pieces (once; a discarded one goes to the pool). */
  #adopt(pending: Promise<IHasher>, made: IHasher): void {
    if (this.#pending !== pending) return;
    this.#pending = undefined;
    if (this.#discarded) {
      idle.push(made);
      return;
    }
    this.#hasher = made.init();
    for (const q of this.#queued) this.#hasher.update(q);
    this.#queued = [];
  }

  /** As hex(), for callers that used prepareChecksums and so never wait (copy threads). */
  hexSync(): string {
    const h = this.#hasher;
    if (!h) throw new Error('checksum not ready: call prepareChecksums() first or use hex()');
    this.#hasher = undefined;
    const out = h.digest('hex');
    idle.push(h);
    return out;
  }
}

/** `xxh128:<hex>`: how a checksum is written down (extended attributes, journal, messages). */
export function tagged(hex: string): string {
  return `${ALGORITHM}:${hex}`;
}

/** Whether `value` is a bare checksum of our algorithm: 32 lower-case hex digits. */
export function isBareChecksum(value: string): boolean {
  return /^[0-9a-f]{32}$/.test(value);
}

/** The hex digits of a tagged checksum of our algorithm; undefined for another algorithm or a malformed value. */
export function untagged(value: string): string | undefined {
  const m = /^([a-z0-9-]+):([0-9a-f]+)$/.exec(value.trim());
  return m && m[1] === ALGORITHM && isBareChecksum(m[2]!) ? m[2] : undefined;
}

/** The size of a read buffer for hashing a file (checksumOfFd and the like). */
const READ_BYTES = 1 << 20;
/** How many read buffers are kept between uses (two hashes at once are rare; more are made and dropped). */
const SPARE_READ_BUFFERS = 2;
/**
 * Read buffers kept for reuse. A fresh 1 MB buffer for each file costs more than hashing it: the kernel maps
 * new pages on the first write to each of its 256 pages, and freeing it hands them back (measured: 1.3-3 ms
 * for a 1 MB file with a new buffer, 0.5 ms with a kept one). Each is used by one hash at a time.
 */
const spareReadBuffers: Buffer[] = [];

function borrowReadBuffer(): Buffer {
  return spareReadBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BYTES);
}

function returnReadBuffer(buf: Buffer): void {
  if (spareReadBuffers.length < SPARE_READ_BUFFERS) spareReadBuffers.push(buf);
}

/**
 * The checksum (hex) of a whole file, read from offset 0 by `readAt` into `given` (or a kept read buffer) until
 * it reads nothing more.
 */
async function hashReads(readAt: (buf: Buffer, pos: number) => number | Promise<number>, given?: Buffer): Promise<string> {
  const buf = given ?? borrowReadBuffer();
  const sum = new Checksum();
  try {
    let pos = 0;
    for (;;) {
      const n = await readAt(buf, pos);
      if (n === 0) break;
      sum.update(buf.subarray(0, n));
      pos += n;
    }
  } catch (e) {
    sum.discard();
    throw e;
  } finally {
    // Only once no read writes into it any more: each read of the thread pool has called back by now.
    if (!given) returnReadBuffer(buf);
  }
  return sum.hex();
}

/** Reads a whole open file from offset 0 and returns its checksum (hex). `fd` (and `buf`) stay in use until it settles. */
export function checksumOfFd(fd: number, buf?: Buffer): Promise<string> {
  return hashReads((b, pos) => readSync(fd, b, 0, b.length, pos), buf);
}

/**
 * As checksumOfFd, reading through the thread pool (positional reads: the descriptor's offset is left alone),
 * so that the loop does not wait on a large file.
 */
export function checksumOfFdInPool(fd: number, buf?: Buffer): Promise<string> {
  return hashReads((b, pos) => new Promise<number>((resolve, reject) => read(fd, b, 0, b.length, pos, (e, n) => (e ? reject(e) : resolve(n)))), buf);
}

/** As checksumOfFd, reading through the thread pool: for a daemon whose loop must not wait on a large file. */
export function checksumOfHandle(fh: FileHandle, buf?: Buffer): Promise<string> {
  return hashReads(async (b, pos) => (await fh.read(b, 0, b.length, pos)).bytesRead, buf);
}

/** The checksum (hex) of the regular file `file`, opened without following a final link. */
export async function checksumOfFile(file: string): Promise<string> {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return await checksumOfFd(fd);
  } finally {
    closeSync(fd);
  }
}

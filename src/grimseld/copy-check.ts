// Checking a copy's bytes against the file's checksum (I2): the written copy is read back through its own
// descriptor once it is flushed (`verify_copies`, default yes); without that read-back, or for a file whose
// checksum is not known yet, the source is hashed as the copy reads it (no read of its own). A copy whose
// bytes are not the file's never gets its final name and never counts; the dispatcher retries it.
//
// The read-back goes through the page cache, as any read after a write does (Node has no O_DIRECT buffers
// nor posix_fadvise): it proves the copy holds the bytes the file's checksum is of, catching a copy
// damaged on its way from the read to the file (in grimseld's buffer, in memory, by a file system or network
// mount that stores something else), not a disk that rots later. That is `ppuctl verify`'s job (I4), which
// reads the copy months later against the checksum on it.
import { readSync } from 'node:fs';
import { Checksum, prepareChecksums, tagged } from '../common/checksum.js';
import { initProvenance } from '../common/provenance.js';

/** Where a copy's bytes were found not to be the file's. */
export type MismatchAt = 'source' | 'copy';

/** A copy whose bytes are not the file's: `expected` and `got` are hex digits; the message names both, tagged. */
export class ChecksumMismatch extends Error {
  constructor(readonly at: MismatchAt, readonly expected: string, readonly got: string, message: string) {
    super(message);
  }

  /** The bytes read from `src` are not the file that was delivered (changed in place since, or read wrong). */
  static source(src: string, expected: string, got: string): ChecksumMismatch {
    return new ChecksumMismatch('source', expected, got, `checksum mismatch reading ${src}: expected ${tagged(expected)} got ${tagged(got)} ` +
      '(changed in place since it was delivered, or read wrong); no copy made, the original is kept');
  }

  /** The copy written to `dest` reads back other bytes than were written. */
  static copy(dest: string, expected: string, got: string): ChecksumMismatch {
    return new ChecksumMismatch('copy', expected, got, `checksum mismatch reading back the copy for ${dest}: expected ${tagged(expected)} got ${tagged(got)}; ` +
      'the copy is removed, the original is kept');
  }
}

/**
 * What a copy thread needs before its first copy: hashers (WebAssembly, made asynchronously once, so that
 * the synchronous copy never waits for one) and the extended attribute module (copy-provenance.ts).
 */
export async function prepareCopies(): Promise<void> {
  // A copy uses one hasher at a time (its source or its read-back, and after a mismatch the source again): two leave one spare.
  await Promise.all([prepareChecksums(2), initProvenance()]);
}

/**
 * The checksum (hex) of the whole file open as `fd`, read from offset 0 into `buf`; `progress` is called after
 * each piece, as after each piece a copy writes (copy-watch.ts: a long read-back is not a wedged thread).
 */
export function checksumOfCopy(fd: number, buf: Buffer, progress: () => void = () => undefined): string {
  const sum = new Checksum();
  try {
    for (let at = 0; ;) {
      const n = readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      sum.update(buf.subarray(0, n));
      at += n;
      progress();
    }
  } catch (e) {
    sum.discard();
    throw e;
  }
  return sum.hexSync();
}

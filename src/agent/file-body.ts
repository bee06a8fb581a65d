// One file's bytes on an HTTP/2 stream, answered to `GET /v1/file` or pushed behind its announcement: read whole,
// sent from memory, followed by the trailers that say whether it is still the announced file and what its
// checksum is (A3, A4, I1; docs/agent-protocol.md).
import * as http2 from 'node:http2';
import { closeSync, fstatSync, readSync } from 'node:fs';
import type { Logger } from '../common/logger.js';
import { type Catalog, type FileEntry } from './catalog.js';
import { isFileOf } from './source-files.js';
import { Checksum } from '../common/checksum.js';
import { checksumTrailer } from '../common/checksum-trailer.js';
import { BodyPool, MAX_CLASS } from './body-pool.js';
import type { LeaseCheck } from './lease-check.js';

/**
 * Files up to this size are read whole and sent from memory (the fast path for images); larger ones (an EIGER's
 * HDF5 data files run to gigabytes) are sent in pieces of PIECE bytes, read as the connection takes them: the
 * agent then holds at most two pieces per such file, whatever its size, instead of all of it (which would
 * also fail outright beyond the largest buffer Node allows, 4 GiB). The limit is the pool's largest buffer: a
 * file read whole is read into a pooled one.
 */
export const WHOLE_MAX = MAX_CLASS;
const PIECE = 8 * 1024 * 1024;
/**
 * A body is written in views of this size, at most SLICES_IN_FLIGHT at a time, and each one the connection
 * takes is progress (send_timeout). A stream's writes that wait are handed on together and report together,
 * so progress is seen at least every SLICES_IN_FLIGHT - 1 slices. Two at a time left gaps in the sending of
 * 6 MB images (p50 ~1.5 ms higher at 25 Hz in two rounds of three); four did not. An image up to 1 MiB is one.
 */
const SLICE = 1024 * 1024;
const SLICES_IN_FLIGHT = 4;

/**
 * What was sent of a file as the whole announced file, kept for its acknowledgement (server.ts): the file's
 * ctime then, and the checksum of the bytes. A file whose ctime has moved since may have been rewritten in
 * place with the same size and mtime (as `cp -p` over it does), or only linked, renamed or chmod'ed: its
 * bytes are compared with the checksum before it is deleted. So are those of one read within a tick of the
 * clock of its ctime (`young`): rewritten within that tick, not even the ctime moves.
 */
export interface Sent {
  hex: string;
  ctimeNs: bigint;
  young: boolean;
  /** Sent twice with other bytes (rewritten in between): which of them furkad placed cannot be told. */
  differed?: true;
}
/**
 * A tick of the kernel's coarse clock, with room: 10 ms at HZ=100 (5x here); a file system keeping whole
 * seconds (ext3; ext4 with small inodes) shows a ctime without a fraction: then two seconds.
 */
const TICK_NS = 50_000_000n;
const SECOND_TICK_NS = 2_000_000_000n;
/** One name of one file (hard links share the id). */
function sentKey(id: string, path: string): string {
  return `${id}\n${path}`;
}
/** Bodies sent and not yet acknowledged kept, the oldest forgotten first (said once): some 30 MB at most. */
const SENT_KEPT = 65_536;

/** The answer (410) for an id whose file is gone or no longer the one announced. */
export const NOT_THE_FILE = { error: 'the file is no longer the one of this id' };

/** Answers `stream` with a JSON body, unless it is answered or gone already. */
export function reply(stream: http2.ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': status, 'content-type': 'application/json' });
  stream.end(`${JSON.stringify(body)}\n`);
}

export class FileBodies {
  /** Memory for the bodies being sent, used again for later files (body-pool.ts). */
  readonly #pool = new BodyPool();
  /** What was sent of each placement (id and path) as the whole announced file, for its acknowledgement. */
  readonly #sent = new Map<string, Sent>();
  #saidForgotten = false;

  /** `sendTimeoutMs`: how long a body may make no progress before its stream is reset (`send_timeout`). */
  /** `leases`: whether a file read whole is still open for writing elsewhere (lease-check.ts). */
  constructor(private readonly catalog: Catalog, private readonly log: Logger, private readonly sendTimeoutMs: number,
    private readonly leases: LeaseCheck) {}

  /**
   * Sends the file of `entry` on `stream`: 200 with the body and trailers; 410 if it is no longer the announced
   * file, 503 if it cannot be held in memory.
   */
  send(stream: http2.ServerHttp2Stream, entry: FileEntry): void {
    if (stream.destroyed || stream.closed) return; // cancelled before it started: nothing read for it
    // An earlier version of a file rewritten since with nothing the file system tells (catalog.ts): not there.
    if (this.catalog.rewritten(entry)) return reply(stream, 410, NOT_THE_FILE);
    // Opened in its directory as reached from the root without following links, and only if it is still the
    // announced file: a directory swapped for a link to /etc never makes root send what is there (docs/threat-model.md).
    const opened = this.catalog.files.open(entry.path, entry.id);
    if (opened === undefined) {
      // Gone, or changed since it was announced: a change without a close (a bare utime) says nothing more.
      this.catalog.suspect(entry.path);
      return reply(stream, 410, NOT_THE_FILE);
    }
    const fd = opened.fd;
    // When it last changed (ctime: no writer can set it; from the fstat of the file opened), and whether that
    // was within a tick of now.
    const { ctimeNs } = opened.stat;
    // Now on the wall clock: the kernel's ctime is on it.
    const young = BigInt(Date.now()) * 1_000_000n - ctimeNs < (ctimeNs % 1_000_000_000n === 0n ? SECOND_TICK_NS : TICK_NS);
    const changed: Pick<Sent, 'ctimeNs' | 'young'> = { ctimeNs, young };
    /** Still the announced file: the open descriptor's identity, and the name's (F2, A4). */
    const same = (): boolean => {
      try {
        return isFileOf(fstatSync(fd, { bigint: true }), entry.id) && this.catalog.sameness(entry) === 'same';
      } catch {
        return false;
      }
    };
    // files.open() checked both the name and what it opened: the file is the announced one as reading starts.
    if (entry.size > BigInt(WHOLE_MAX)) return this.#sendInPieces(stream, entry, fd, same, changed);
    // Still open for writing somewhere (a second descriptor)? Asked at once (the first question of this turn;
    // others follow together at its end), answered while the file is read and sent (the helper is another
    // process: on a busy host its turn to run comes later); the descriptor is closed once the answer is in.
    const asked = this.leases.written([fd]);
    const release = (): void => { void asked.finally(() => closeSync(fd)); };
    // Read whole, then sent from memory: respondWithFD (Node 20) crashed the agent with SIGSEGV when clients
    // cancelled streams mid-body (furkad's ramdisk full), and a buffer goes out faster on this path anyway; an
    // image is at most a few tens of MB and few are in flight.
    let body: Buffer;
    try {
      body = this.#pool.take(Number(entry.size));
    } catch (e) {
      // No memory for it (larger than a buffer can be, or memory short): not sent; the descriptor goes with the answer.
      release();
      this.log.error({ err: e, path: entry.path, size: String(entry.size) }, 'cannot hold a file in memory to send it');
      return reply(stream, 503, { error: `cannot hold the file in memory: ${(e as Error).message}` });
    }
    let got: number;
    try {
      got = readFull(fd, body, body.length, 0);
    } catch {
      release();
      this.#pool.give(body);
      return reply(stream, 410, NOT_THE_FILE);
    }
    const unchanged = same();
    release();
    const written = unchanged ? asked.then(([w]) => w === true) : Promise.resolve(false);
    if (got < body.length) {
      // Shorter than announced (truncated meanwhile): the rest of the buffer is an earlier file's; never sent.
      this.#pool.give(body);
      return reply(stream, 410, NOT_THE_FILE);
    }
    if (stream.destroyed || stream.closed) {
      this.#pool.give(body);
      return;
    }
    // Back to the pool only when nothing reads it any more: its bytes written to the socket (the write's
    // callback: the session writes straight from it) and the stream closed (the trailer's hash is taken by then).
    let readers = 2;
    const done = (): void => {
      if (--readers === 0) this.#pool.give(body);
    };
    stream.once('close', done);
    stream.on('wantTrailers', () => {
      // The checksum of the bytes sent (I1), taken once they are on their way: wantTrailers comes while the last
      // DATA frame is being queued, so the hash waits for the next turn of the loop, after the frames went to the
      // socket, and runs while furkad receives them. One pass over the buffer, which is still in the cache.
      setImmediate(() => {
        if (stream.destroyed || stream.closed) return;
        const sum = new Checksum();
        sum.update(body);
        this.#sendTrailers(stream, entry, sum, unchanged, written, changed);
      });
    });
    stream.respond(okHeaders(entry), { waitForTrailers: true });
    // A write that failed (the stream reset by furkad) may still have pieces in a socket write of the session:
    // that buffer is never pooled, only dropped.
    const out = this.#writer(stream, entry);
    out.write(body, done);
    out.end();
  }

  /**
   * The writer of `stream`'s body, which resets the stream once none of it was taken for send_timeout. A
   * client that stops reading (hung, or not furkad) would otherwise hold the body's buffer (and a large file's
   * descriptor) for as long as its connection lasts. Node's own stream timeout would not do: any frame
   * on the connection restarts it (furkad's pings every 5 s, announcements, other bodies), so a body stalled
   * beside live traffic was never cut off. furkad cancels a body stalled for 30 s itself; the default (60 s)
   * is above that. The file stays on the detector and is sent again when asked.
   */
  #writer(stream: http2.ServerHttp2Stream, entry: FileEntry): SliceWriter {
    const timer = setTimeout(() => {
      this.log.warn({ path: entry.path, seconds: this.sendTimeoutMs / 1000 }, 'a client took nothing of a file body for send_timeout: stream reset, the file kept');
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }, this.sendTimeoutMs);
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
    return new SliceWriter(stream, () => { timer.refresh(); });
  }

  /**
   * The trailers after a body: `x-furka-unchanged` (still the announced file, both after reading, `unchanged`,
   * and now that the bytes are sent: F2, A4; and not `written` by anyone any more: A2) and the checksum of the
   * bytes sent (I1). No checksum, no answer: the stream is reset and furkad fetches the file again.
   */
  #sendTrailers(stream: http2.ServerHttp2Stream, entry: FileEntry, sum: Checksum, unchanged: boolean, written: Promise<boolean>,
    changed: Pick<Sent, 'ctimeNs' | 'young'> | undefined): void {
    void Promise.all([sum.hex(), written]).then(([hex, w]) => {
      if (w) {
        // Its writer closed one descriptor and still writes through another: what was read may not be all of it.
        this.catalog.stillWritten(entry);
        this.log.debug({ path: entry.path }, 'a file read to be sent is still open for writing elsewhere: sent as changed, announced again on its close');
      }
      const whole = unchanged && !w && this.catalog.sameness(entry) === 'same';
      if (whole && changed) this.#keep(sentKey(entry.id, entry.path), { hex, ...changed });
      // Changed while it was sent, and no one writes it: a bare utime (`cp -p`, `touch`) has no close to announce
      // its new version, so it is looked at again (sweepWaiting). Without this it stayed on the detector, never
      // announced again and never said (found by a hostile tester: write, close, utime, link).
      if (!whole && !w) this.catalog.suspect(entry.path);
      if (!stream.destroyed && !stream.closed) {
        stream.sendTrailers({ 'x-furka-unchanged': whole ? '1' : '0', ...checksumTrailer(hex) });
      }
    }, (e: Error) => {
      this.log.error({ err: e, path: entry.path }, 'cannot compute the checksum of a file being sent');
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
  }

  #keep(key: string, sent: Sent): void {
    const before = this.#sent.get(key);
    this.#sent.delete(key);
    // The same file sent twice with other bytes: rewritten in between. Its acknowledgement must keep it.
    this.#sent.set(key, before && (before.hex !== sent.hex || before.differed) ? { ...sent, differed: true } : sent);
    if (this.#sent.size <= SENT_KEPT) return;
    this.#sent.delete(this.#sent.keys().next().value as string);
    if (!this.#saidForgotten) {
      this.#saidForgotten = true;
      this.log.warn({ kept: SENT_KEPT }, 'more files sent and not acknowledged than are remembered: the oldest are compared only with the checksum furkad sends with their acknowledgement (said once)');
    }
  }

  /** What was sent of `id` as `path` as the whole announced file, if remembered; forgotten by this. */
  takeSent(id: string, path: string): Sent | undefined {
    const key = sentKey(id, path);
    const sent = this.#sent.get(key);
    this.#sent.delete(key);
    return sent;
  }

  /**
   * Whether the file open as `fd` (read to its end, still the announced file) is still open for writing by
   * some process: a writer that closed one descriptor (the CLOSE_WRITE that announced it) and writes on
   * through another. Closes `fd` once answered. Where the kernel would not say (no python3, no leases), not
   * held back: the check before deletion still keeps its source (server.ts).
   */
  #stillWritten(fd: number): Promise<boolean> {
    return this.leases.written([fd]).then(([w]) => w === true).finally(() => closeSync(fd));
  }

  /**
   * Sends a file larger than WHOLE_MAX from `fd` in pieces: each read (and hashed) when the connection has
   * taken all but one of those before it, so two pieces at most are held. The checksum covers exactly the
   * bytes sent. A file found shorter than announced, or unreadable, part-way cannot be answered with a 410
   * any more (the status went out with the first piece): the body ends there, with `x-furka-unchanged: 0`,
   * which furkad takes as it takes a 410: not this file, nothing placed, nothing acknowledged. A truncated
   * file is announced again once its writer closes it; the source stays on the detector either way.
   */
  #sendInPieces(stream: http2.ServerHttp2Stream, entry: FileEntry, fd: number, same: () => boolean, changed: Pick<Sent, 'ctimeNs' | 'young'> | undefined): void {
    const size = Number(entry.size);
    let free: Buffer[];
    try {
      free = [Buffer.allocUnsafeSlow(PIECE), Buffer.allocUnsafeSlow(PIECE)];
    } catch (e) {
      closeSync(fd);
      this.log.error({ err: e, path: entry.path, size: String(entry.size) }, 'cannot hold two pieces of a large file in memory to send it');
      return reply(stream, 503, { error: `cannot hold the file's pieces in memory: ${(e as Error).message}` });
    }
    const sum = new Checksum();
    const out = this.#writer(stream, entry);
    let open = true;
    const closeFd = (): void => {
      if (!open) return;
      open = false;
      closeSync(fd);
    };
    let offset = 0;
    let unchanged = false;
    let written = Promise.resolve(false);
    let stopped = false;
    let hashing = false;
    stream.once('close', () => {
      closeFd();
      if (!hashing) sum.discard(); // ended before its last piece went out: no checksum is taken
    });
    stream.on('wantTrailers', () => {
      hashing = true;
      this.#sendTrailers(stream, entry, sum, unchanged, written, changed);
    });
    /** Ends the body short of the file, as not the announced file (unchanged stays false). */
    const stop = (why: string): void => {
      stopped = true;
      closeFd();
      this.log.warn({ path: entry.path, offset, size }, `a large file being sent ${why}: sent as changed, so furkad does not place it`);
      if (!stream.destroyed && !stream.closed) out.end();
    };
    const pump = (): void => {
      while (free.length > 0 && offset < size && !stopped) {
        if (stream.destroyed || stream.closed) {
          closeFd();
          return;
        }
        const buf = free.pop()!;
        const want = Math.min(PIECE, size - offset);
        let got: number;
        try {
          got = readFull(fd, buf, want, offset);
        } catch (e) {
          stop(`could not be read (${(e as Error).message})`);
          return;
        }
        if (got < want) {
          stop('was shorter than announced');
          return;
        }
        const piece = buf.subarray(0, got);
        sum.update(piece);
        offset += got;
        const last = offset === size;
        if (last) {
          // Everything read: still the announced file (F2, A4)? Asked again when the trailers go out.
          unchanged = same();
          if (unchanged) {
            open = false; // closed by #stillWritten once answered
            written = this.#stillWritten(fd);
          } else {
            closeFd();
          }
        }
        out.write(piece, () => {
          free.push(buf);
          pump();
        });
        if (last) out.end();
      }
    };
    stream.respond(okHeaders(entry), { waitForTrailers: true });
    pump();
  }
}

/**
 * Writes bodies to a stream in SLICE-byte views (no copies), in order, SLICES_IN_FLIGHT at a time, calling
 * `progressed` as the connection takes each (send_timeout).
 */
class SliceWriter {
  readonly #waiting: Array<{ view: Buffer; last?: () => void }> = [];
  #inFlight = 0;
  #ending = false;
  #ended = false;

  constructor(private readonly stream: http2.ServerHttp2Stream, private readonly progressed: () => void) {}

  /** Queues `buf` behind what was queued before; `done` once the connection took all of it (never after a failed write). */
  write(buf: Buffer, done: () => void): void {
    const n = Math.max(1, Math.ceil(buf.length / SLICE));
    for (let i = 0; i < n; i++) this.#waiting.push({ view: buf.subarray(i * SLICE, (i + 1) * SLICE), ...(i === n - 1 ? { last: done } : {}) });
    this.#more();
  }

  /** Ends the stream once everything queued is written. */
  end(): void {
    this.#ending = true;
    this.#more();
  }

  #more(): void {
    while (this.#waiting.length > 0 && this.#inFlight < SLICES_IN_FLIGHT) {
      const slice = this.#waiting.shift()!;
      this.#inFlight++;
      this.stream.write(slice.view, (err) => {
        if (err) return; // reset: nothing more goes out
        this.#inFlight--;
        this.progressed();
        slice.last?.();
        this.#more();
      });
    }
    if (this.#ending && !this.#ended && this.#waiting.length === 0) {
      this.#ended = true;
      this.stream.end();
    }
  }
}

/** Reads `length` bytes of `fd` from `position` into the start of `buf`; fewer only at the file's end. Returns how many. */
function readFull(fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** The headers of a 200 answer carrying `entry`'s body. */
function okHeaders(entry: FileEntry): http2.OutgoingHttpHeaders {
  return {
    ':status': 200,
    'content-type': 'application/octet-stream',
    'x-furka-path': encodeURI(entry.path),
    'x-furka-size': String(entry.size),
    'x-furka-mtime-ns': String(entry.mtimeNs),
    'x-furka-mode': String(entry.mode),
  };
}

// furka-agent's events stream to one client (src/agent/server.ts EventsClient) against a fake HTTP/2 stream:
// the listing after a reconnect goes out at the pace the client reads, however large, and 'synced' and any
// barrier come after all of it (F10, A4, A5).
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import { EventsClient } from '../../src/agent/server.js';
import type { Announcement, FileEntry } from '../../src/agent/catalog.js';
import type { FileBodies } from '../../src/agent/file-body.js';
import type { Logger } from '../../src/common/logger.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Catalog } from '../../src/agent/catalog.js';
import { NameFilter } from '../../src/agent/name-filter.js';

/** A stream whose buffer takes `window` bytes before write() says to wait for 'drain'; read() empties it. */
class FakeStream extends EventEmitter {
  destroyed = false;
  closed = false;
  pushAllowed = false;
  closedWith: number | undefined;
  lines: string[] = [];
  #buffered = 0;
  maxBuffered = 0;
  constructor(private readonly window: number) { super(); }
  write(text: string): boolean {
    this.lines.push(...text.split('\n').filter(Boolean));
    this.#buffered += text.length;
    this.maxBuffered = Math.max(this.maxBuffered, this.#buffered);
    return this.#buffered < this.window;
  }
  close(code: number): void {
    this.closedWith = code;
    this.closed = true;
  }
  /** The client reads everything buffered. */
  read(): void {
    const was = this.#buffered;
    this.#buffered = 0;
    if (was >= this.window) this.emit('drain');
  }
}

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;

function* files(n: number, prefix = 'scan_0000/image_'): Generator<Announcement> {
  for (let i = 0; i < n; i++) {
    const entry: FileEntry = { id: `${i}:100000:1796246217481344028`, path: `${prefix}${String(i).padStart(7, '0')}.cbf`, ino: BigInt(i), size: 100_000n, mtimeNs: 1796246217481344028n, mode: 0o644 };
    yield { t: 'file', entry };
  }
}

describe('furka-agent events stream to one client (F10, A4, A5)', () => {
  it('sends a listing of 500 000 files (~70 MB of lines, more than a client may leave unread) at the pace the client reads, never cutting it off', function () {
    this.timeout(60_000);
    const stream = new FakeStream(1 << 20);
    const client = new EventsClient(stream as unknown as http2.ServerHttp2Stream, '', 0, {} as FileBodies, quiet);
    const n = 500_000;
    client.list(files(n), { t: 'synced' });
    let reads = 0;
    while (!stream.lines.some((l) => l.includes('"synced"')) && reads < 1_000_000) {
      stream.read();
      reads++;
    }
    assert.equal(stream.closedWith, undefined, 'the stream was not closed');
    assert.equal(stream.lines.length, n + 1, 'every file listed, then synced');
    assert.ok(stream.maxBuffered < 2 << 20, `never much more than the stream's window in flight (${stream.maxBuffered} bytes)`);
  });

  it("puts a barrier asked for during the listing after it, and live announcements between the listing's lines", () => {
    const stream = new FakeStream(4096);
    const client = new EventsClient(stream as unknown as http2.ServerHttp2Stream, '', 0, {} as FileBodies, quiet);
    client.list(files(1000), { t: 'synced' });
    client.send({ t: 'barrier', id: 'b1' });
    for (const a of files(1, 'live/new_')) client.send(a);
    for (let i = 0; i < 10_000 && !stream.lines.some((l) => l.includes('"barrier"')); i++) stream.read();
    const at = (what: string) => stream.lines.findIndex((l) => l.includes(what));
    assert.equal(stream.lines.filter((l) => l.includes('scan_0000')).length, 1000);
    assert.ok(at('live/new_') < at('"synced"'), 'a live file is not held back behind the listing');
    assert.ok(at('"synced"') < at('"barrier"'), 'the barrier after everything listed');
    assert.equal(stream.lines.length, 1003);
  });

  it("lists a file's current id when a rescan (a queue overflow) comes while the listing is paused, never the one before it", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agent-listing-'));
    try {
      writeFileSync(path.join(root, 'a.cbf'), 'a');
      writeFileSync(path.join(root, 'p.cbf'), 'p, first version');
      const catalog = new Catalog(root, new NameFilter(''), quiet);
      catalog.rescan();
      const listing = catalog.listing()[Symbol.iterator]();
      const first = listing.next().value as Announcement;
      assert.equal(first.t === 'file' && first.entry.path, 'a.cbf');
      writeFileSync(path.join(root, 'p.cbf'), 'p, the second version, longer');
      catalog.rescan();
      const rest = [...{ [Symbol.iterator]: () => listing }].flatMap((a) => (a.t === 'file' ? [a.entry] : []));
      const now = [...catalog.listing()].flatMap((a) => (a.t === 'file' && a.entry.path === 'p.cbf' ? [a.entry.id] : []));
      assert.deepEqual(rest.filter((e) => e.path === 'p.cbf').map((e) => e.id), now, "p.cbf under the id the catalog has now");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

// The operators' FIFO (G8) with a real FIFO in a temp dir: lines longer than PATH_MAX are dropped and reported, never held.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { FileFifo, LINE_MAX, LineSplitter } from '../../src/grimseld/fifo.js';

describe('grimseld FIFO lines (G8)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'fifo-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('discards a 16 MB line without a newline up to its next newline, logs its length and takes the next path', async () => {
    const added: string[] = [];
    const logged: Array<{ msg: string; length?: number }> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => { logged.push(JSON.parse(s) as { msg: string }); } });
    const fifo = new FileFifo(path.join(dir, 'files'), async (paths) => { added.push(...paths); return []; }, log);
    await fifo.open();
    try {
      const big = 16 * 1024 * 1024;
      // From the thread pool: the reader is this same event loop.
      await writeFile(fifo.file, Buffer.concat([Buffer.alloc(big, 0x61), Buffer.from('\n/op/./a.dat\n')]));
      const deadline = Date.now() + 8000;
      while (added.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(added, ['/op/./a.dat'], 'only the path after the over-long line');
      const warn = logged.find((l) => /discarded/.test(l.msg));
      assert.ok(warn, 'the discarded line is reported');
      assert.equal(warn.length, big);
      assert.match(warn.msg, new RegExp(`^FIFO line of ${big} bytes discarded: longer than ${LINE_MAX} bytes`));
    } finally {
      await fifo.close();
    }
  });

  it('discards a line that is not UTF-8, saying so, instead of adding the file its lossy decoding names', async () => {
    const added: string[] = [];
    const logged: Array<{ msg: string; bytes?: string }> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { logged.push(JSON.parse(l) as { msg: string }); } });
    const fifo = new FileFifo(path.join(dir, 'files'), async (paths) => { added.push(...paths); return []; }, log);
    await fifo.open();
    // lat\xe9.txt (Latin-1), decoded with replacement, is lat\ufffd.txt: another file, which may well exist.
    writeFileSync(fifo.file, Buffer.concat([Buffer.from('/op/./lat'), Buffer.from([0xe9]), Buffer.from('.txt\n/op/./next.txt\n/op/./\u00e9t\u00e9.txt\n')]));
    const deadline = Date.now() + 8000;
    while (added.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await fifo.close();
    assert.deepEqual(added, ['/op/./next.txt', '/op/./\u00e9t\u00e9.txt'], 'the other lines, valid UTF-8 included');
    const warn = logged.find((l) => /not valid UTF-8/.test(l.msg));
    assert.ok(warn, 'said');
    assert.match(warn.bytes!, /6c6174e92e747874$/);
  });

  it("takes a path as written up to its newline: a name's trailing space kept, only a leading indent, a CR and blank lines dropped", async () => {
    const added: string[] = [];
    const fifo = new FileFifo(path.join(dir, 'files'), async (paths) => { added.push(...paths); return []; }, pino({ level: 'silent' }));
    await fifo.open();
    // Trimmed, `img ` was taken for `img`, another file, copied in its place (hostile tester h14).
    writeFileSync(fifo.file, '/op/./d/img \n  /op/./d/indented\n\n   \n/op/./d/crlf\r\n/op/./d/\u00a0nbsp\u00a0\n');
    const deadline = Date.now() + 8000;
    while (added.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await fifo.close();
    assert.deepEqual(added, ['/op/./d/img ', '/op/./d/indented', '/op/./d/crlf', '/op/./d/\u00a0nbsp\u00a0']);
  });

  it('takes the paths still in the pipe when it closes (an echo just before a stop), and names a line cut short', async () => {
    const added: string[] = [];
    const logged: Array<{ msg: string; start?: string }> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { logged.push(JSON.parse(l) as { msg: string }); } });
    const fifo = new FileFifo(path.join(dir, 'files'), async (paths) => { added.push(...paths); return []; }, log);
    await fifo.open();
    // Written and closed at once, as `echo` does; grimseld's loop has not read them when it stops.
    writeFileSync(fifo.file, '/op/./a.dat\n/op/./b.dat\n/op/./c.d');
    await fifo.close();
    assert.deepEqual(added, ['/op/./a.dat', '/op/./b.dat']);
    const cut = logged.find((l) => /stopped while a FIFO line was being written/.test(l.msg));
    assert.equal(cut?.start, '/op/./c.d');
  });

  it('takes, in order, what it had read and held while paused behind a slow journal when it stops, and the pipe\'s rest', async () => {
    let release!: () => void;
    const journal = new Promise<void>((r) => { release = r; });
    const added: string[] = [];
    const fifo = new FileFifo(path.join(dir, 'files'), async (paths) => { await journal; added.push(...paths); return []; }, pino({ level: 'silent' }));
    await fifo.open();
    const lines = Array.from({ length: 6_000 }, (_, i) => `/op/./f${String(i).padStart(5, '0')}.dat`);
    // About 100 kB: more than the pipe holds, less than the pipe and the paused reader hold together (the
    // writer is done before the stop); the reader pauses at 1000 paths waiting for the journal.
    const writing = writeFile(fifo.file, `${lines.join('\n')}\n`);
    await new Promise((r) => setTimeout(r, 300));
    const closing = fifo.close();
    release();
    await closing;
    await writing;
    assert.equal(added.length, lines.length);
    assert.deepEqual(added, lines, 'every path once, in the order written');
  });

  it('holds at most LINE_MAX bytes of a line in progress, and takes a line of exactly LINE_MAX bytes', () => {
    const lines: string[] = [];
    const long: number[] = [];
    const split = new LineSplitter((l) => lines.push(l.toString()), (n) => long.push(n));
    for (let i = 0; i < 100; i++) {
      split.push(Buffer.alloc(65536, 0x62));
      assert.ok(split.buffered <= LINE_MAX, `held ${split.buffered} bytes`);
    }
    split.push(Buffer.from('\n/a'));
    split.push(Buffer.from(`/b\n${'c'.repeat(LINE_MAX)}\n${'d'.repeat(LINE_MAX + 1)}\n`));
    assert.deepEqual(long, [100 * 65536, LINE_MAX + 1]);
    assert.deepEqual(lines, ['/a/b', 'c'.repeat(LINE_MAX)]);
    assert.equal(split.buffered, 0);
  });
});

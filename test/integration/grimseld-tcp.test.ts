// grimseld's TCP interfaces as remote scripts use them: status (G9) and messages (G10), including a subscriber
// that never reads.
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, collectMessages } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { LineClient, grimselTcpPorts } from '../fixtures/line-client.js';
import { createLogger } from '../../src/common/logger.js';
import { MessageHub } from '../../src/grimseld/messages.js';
import { MessageServer } from '../../src/grimseld/message-server.js';

const isGreeting = (l: Record<string, unknown>): boolean => typeof l['hello'] === 'string';

/** A subscriber that connects and then never reads a byte. */
function neverReads(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.pause();
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

describe('grimseld TCP status (G9)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let port: number;

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-tcp-status' }).start();
    port = (await grimselTcpPorts(ppu.client)).status;
  });
  after(async () => ppu?.stop());

  it('reports the actual status port on D-Bus when configured with port 0', () => {
    assert.ok(port > 0, `StatusPort is ${port}`);
  });

  it('answers QUERY n with the same rows QueryStatus gives on D-Bus, newest shift first', async () => {
    await ppu.startShift(700, 701, []);
    for (let i = 0; i < 4; i++) writeImage(ppu.detectorRamdisks['1MF']!, `a/img${i}.cbf`, 5000);
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 700 && r[5] === 4n), 30_000, 'first shift copied');
    await ppu.startShift(710, 711, []);
    for (let i = 0; i < 3; i++) writeImage(ppu.detectorRamdisks['1MF']!, `b/img${i}.cbf`, 5000);
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 710 && r[5] === 3n), 30_000, 'second shift copied');

    const client = await LineClient.connect(port);
    try {
      const all = await client.request('QUERY -1');
      const dbusAll = await ppu.queryStatus(-1);
      assert.deepEqual(all, dbusAll.map((r) => ({ usertime: Number(r[0]), uid: r[1], gid: r[2], storage: r[3],
        pending: Number(r[4]), copied: Number(r[5]), failed: Number(r[6]) })));
      assert.ok(dbusAll.length >= 2, 'two shifts at least');
      // Several requests on one connection; n limits the shifts, newest first.
      const one = (await client.request('QUERY 1')) as Array<Record<string, unknown>>;
      assert.deepEqual(one.map((r) => [r['uid'], r['gid'], r['storage'], r['copied']]), [[710, 711, 'internal', 3]]);
      const two = (await client.request('query 2')) as Array<Record<string, unknown>>;
      assert.deepEqual(two.map((r) => r['uid']), [710, 700]);
      // usertime is the shift start in µs since the epoch, exactly as on D-Bus.
      assert.equal(typeof two[0]!['usertime'], 'number');
      assert.ok(Math.abs(Number(two[0]!['usertime']) / 1000 - Date.now()) < 3_600_000, 'a recent time in µs');
    } finally {
      client.close();
    }
  });

  it('answers bad requests with an error line and keeps the connection', async () => {
    const client = await LineClient.connect(port);
    try {
      assert.match(String((await client.request('HELLO') as Record<string, unknown>)['error']), /unknown request 'HELLO'.*QUERY <n>/);
      assert.match(String((await client.request('QUERY -5') as Record<string, unknown>)['error']), /number of shifts.*'-5'/);
      assert.match(String((await client.request('QUERY x') as Record<string, unknown>)['error']), /'x'/);
      assert.ok(Array.isArray(await client.request('QUERY 1')), 'still answers after errors');
      // An endless line is cut off with one error, not buffered forever.
      const n = client.lines.length;
      client.socket.write('x'.repeat(10_000));
      await eventually(() => client.closed, 20_000, 'the server to hang up on an endless line');
      assert.match(String((client.lines[n] as Record<string, unknown>)['error']), /longer than/);
    } finally {
      client.close();
    }
  });

  it('takes n in decimal digits only: 1e3, 0x10, 1.0 and +1 are errors naming the value', async () => {
    const client = await LineClient.connect(port);
    try {
      for (const n of ['1e3', '0x10', '1.0', '+1', '-0', 'Infinity']) {
        assert.equal((await client.request(`QUERY ${n}`) as Record<string, unknown>)['error'],
          `QUERY wants -1 (all) or a number of shifts in decimal digits, got '${n}'`);
      }
      assert.ok(Array.isArray(await client.request('QUERY 0')), '0 is a count');
      assert.ok(Array.isArray(await client.request('QUERY 007')), 'leading zeros are still decimal');
      assert.ok(!client.closed);
    } finally {
      client.close();
    }
  });

  it('answers a complete line longer than 1024 bytes with one error naming the limit, then closes (as documented)', async () => {
    const client = await LineClient.connect(port);
    try {
      const answer = await client.request(`QUERY ${'1'.repeat(4994)}`);
      assert.deepEqual(answer, { error: 'a request line of 5000 bytes, longer than the limit of 1024 bytes: closing the connection' });
      await eventually(() => client.closed, 20_000, 'the server to hang up after an over-long line');
      assert.equal(client.lines.length, 1, 'nothing after the error');
    } finally {
      client.close();
    }
  });
});

describe('grimseld TCP messages (G10)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let port: number;
  let blocker: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-tcp-messages' });
    // A storage below a regular file: every copy to it fails with ENOTDIR, a COPY_ERROR.
    blocker = path.join(ppu.work, 'not-a-directory');
    mkdirSync(ppu.work, { recursive: true });
    writeFileSync(blocker, 'a file where a directory should be\n');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.broken': { type: 'OPTIONAL', target: path.join(blocker, 'data'), n_copy_processes: 1 },
    };
    await ppu.start();
    port = (await grimselTcpPorts(ppu.client)).message;
  });
  after(async () => ppu?.stop());

  it('sends COPY_ERROR to several TCP subscribers and as a D-Bus signal, while one subscriber never reads', async () => {
    assert.ok(port > 0, `MessagePort is ${port}`);
    const stuck = await neverReads(port);
    const subscribers = await Promise.all([1, 2, 3].map(() => LineClient.connect(port)));
    const signals = await collectMessages(ppu);
    try {
      for (const s of subscribers) await s.wait(isGreeting, 'the greeting line');
      await ppu.startShift(720, 721, []);
      writeImage(ppu.detectorRamdisks['1MF']!, 'scan/img0.cbf', 5000);

      const isCopyError = (l: Record<string, unknown>): boolean => l['errcode'] === 'COPY_ERROR' && String(l['shortMessage']).includes('scan/img0.cbf');
      for (const s of subscribers) {
        const m = await s.wait(isCopyError, 'COPY_ERROR over TCP');
        // short message `src:dest`; the long one says what went wrong.
        assert.match(String(m['shortMessage']), new RegExp(`^${ppu.ppuRamdisk}/1mf/720_721/scan/img0\\.cbf:${blocker}/data/`));
        assert.match(String(m['longMessage']), /storage broken/);
        assert.equal(typeof m['time'], 'number');
      }
      await eventually(() => signals.messages.some((m) => m[0] === 'COPY_ERROR' && m[1].includes('scan/img0.cbf')), 30_000, 'the D-Bus signal');
      const tcp = subscribers[0]!.lines.find((l) => !Array.isArray(l) && isCopyError(l)) as Record<string, unknown>;
      const signal = signals.messages.find((m) => m[1].includes('scan/img0.cbf'))!;
      assert.deepEqual([tcp['errcode'], tcp['shortMessage'], tcp['longMessage']], signal, 'the same message on both channels');

      // Copying goes on with the stuck subscriber still connected, and the readers keep getting messages.
      const marks = subscribers.map((s) => s.lines.length);
      for (let i = 1; i <= 20; i++) writeImage(ppu.detectorRamdisks['1MF']!, `more/img${i}.cbf`, 20_000);
      await eventually(() => listFiles(path.join(ppu.storageRoot, 'internal', '1mf', '720_721', 'more')).length === 20, 60_000, 'internal copies');
      for (const [i, s] of subscribers.entries()) {
        await s.wait((l) => l['errcode'] === 'COPY_ERROR', 'a later COPY_ERROR', marks[i], 60_000);
      }
      assert.equal(stuck.destroyed, false, 'a merely slow subscriber is not dropped while its backlog is small');
    } finally {
      signals.stop();
      stuck.destroy();
      for (const s of subscribers) s.close();
    }
  });

  it('a subscriber that connects after another left gets the later messages', async () => {
    const first = await LineClient.connect(port);
    await first.wait(isGreeting, 'greeting');
    first.close();
    const later = await LineClient.connect(port);
    try {
      await later.wait(isGreeting, 'greeting');
      writeImage(ppu.detectorRamdisks['1MF']!, 'scan/late.cbf', 1000);
      await later.wait((l) => l['errcode'] === 'COPY_ERROR', 'COPY_ERROR for a late subscriber', 0, 60_000);
    } finally {
      later.close();
    }
  });
});

describe('message server backlog bound (G10: a dead subscriber never blocks)', function () {
  this.timeout(120_000);

  it('disconnects a subscriber that never reads once its backlog passes the bound; a reader gets every message', async () => {
    const log = createLogger('test', { log_level: 'silent' });
    const hub = new MessageHub(log);
    const server = new MessageServer(hub, log, 256 * 1024);
    const port = await server.start(0, '127.0.0.1');
    const stuck = await neverReads(port);
    let stuckClosed = false;
    stuck.on('close', () => { stuckClosed = true; });
    const reader = await LineClient.connect(port);
    try {
      await reader.wait(isGreeting, 'greeting');
      await eventually(() => server.subscribers === 2, 10_000, 'both subscribed');
      // 40 MB of messages: far beyond what the kernel buffers for a connection that is not read.
      const total = 40_000;
      const long = 'x'.repeat(1000);
      for (let i = 0; i < total; i++) {
        hub.publish('COPY_ERROR', `/ramdisk/f${i}:/data/f${i}`, long);
        if (i % 20 === 19) await new Promise((r) => setImmediate(r));
      }
      await eventually(() => server.subscribers === 1, 60_000, 'the stuck subscriber to be dropped');
      await eventually(() => reader.lines.length === total + 1, 60_000, 'the reader to get every message');
      assert.deepEqual(reader.lines.slice(1).map((l) => (l as Record<string, unknown>)['shortMessage']).slice(-2),
        [`/ramdisk/f${total - 2}:/data/f${total - 2}`, `/ramdisk/f${total - 1}:/data/f${total - 1}`], 'in order, none lost');
      assert.equal(reader.closed, false);
      // The stuck one, reading at last, finds a truncated stream that ends.
      stuck.resume();
      await eventually(() => stuckClosed, 30_000, 'the stuck subscriber to see its connection closed');
    } finally {
      stuck.destroy();
      reader.close();
      await server.stop();
    }
  });
});

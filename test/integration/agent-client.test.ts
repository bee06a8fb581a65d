// furkad's agent client when the connection goes in the middle of a file: every fetch ends, one way or the other.
// Found by the soak: a fetch whose stream was closed while paused (its file behind on writes) never settled, and
// the detector's loop waited for it for ever, reconnecting only when furkad was restarted (F10, A3).
import { strict as assert } from 'node:assert';
import * as http2 from 'node:http2';
import { closeSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentClient, type Announced } from '../../src/furkad/agent-client.js';
import { AgentPushes } from '../../src/furkad/agent-pushes.js';
import type * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { answerChallenge, startAgent } from '../fixtures/agent.js';
import { writeImage } from '../fixtures/files.js';
import { SilentProxy } from '../fixtures/silent-proxy.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** 'resolved …', 'rejected …', or 'pending' if the fetch has not settled within `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<string> {
  return Promise.race([
    p.then((v) => `resolved ${JSON.stringify(v)}`, (e: Error) => `rejected ${e.message}`),
    pause(ms).then(() => 'pending'),
  ]);
}

describe('agent client: the connection lost in the middle of a file', function () {
  this.timeout(120_000);
  let work: string;
  beforeEach(() => { work = mkdtempSync(path.join(os.tmpdir(), 'agent-client-')); });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it('ends a fetch when its connection is closed while the body streams in', async () => {
    // An agent that says hello and then sends 8 MB of a file without ever ending it.
    const server = http2.createServer();
    server.on('stream', (s, h) => {
      if (answerChallenge(s, h, 'fake-agent-key-0123')) return;
      s.respond({ ':status': 200 });
      if (String(h[':path']).startsWith('/v1/events')) s.write('{"t":"hello"}\n');
      else s.write(Buffer.alloc(8 << 20));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const outcomes: string[] = [];
      // Closed at several moments, so that some find the stream paused behind the file's writes.
      for (const ms of [2, 5, 10, 20, 2, 5, 10, 20]) {
        const client = new AgentClient(`http://127.0.0.1:${port}`, '/', { value: 'fake-agent-key-0123', file: 'none' });
        await client.connect();
        const fetching = client.fetch('1', path.join(work, `f-${outcomes.length}`), 'f').then((got) => {
          closeSync(got.fd);
          return got;
        });
        await pause(ms);
        client.close();
        outcomes.push(await settledWithin(fetching, 3000));
      }
      assert.deepEqual(outcomes.filter((o) => o === 'pending'), [], `every fetch ended: ${outcomes.join('; ')}`);
      // Not one taken for a file, whole or changed at the source: each was cut off, and says so.
      assert.deepEqual(outcomes.filter((o) => !o.startsWith('rejected ')), [], `none resolved: ${outcomes.join('; ')}`);
    } finally {
      server.close();
    }
  });

  it('ends every fetch in flight when the furka-agent is SIGKILLed', async () => {
    const stuck: string[] = [];
    for (let round = 0; round < 6; round++) {
      const root = path.join(work, `root-${round}`);
      const staging = path.join(work, `staging-${round}`);
      mkdirSync(root);
      mkdirSync(staging);
      for (let i = 0; i < 120; i++) writeImage(root, `f${i}.cbf`, 100_000 + ((i * 7919) % 300_000));
      const agent = await startAgent({ root, dir: work });
      const client = new AgentClient(`http://127.0.0.1:${agent.port}`, '/', { value: agent.key, file: agent.keyFile });
      const announced: Array<{ id: string; path: string }> = [];
      client.on('file', (f) => announced.push(f));
      try {
        await client.connect();
        await pause(100);
        // Eight at a time, as furkad fetches; each fetch remembered until it ends.
        const open = new Set<string>();
        let next = 0;
        const worker = async (): Promise<void> => {
          for (let f = announced[next++]; f !== undefined; f = announced[next++]) {
            open.add(f.id);
            await client.fetch(f.id, path.join(staging, f.id.replace(/\W/g, '_')), f.path).then((got) => closeSync(got.fd), () => undefined);
            open.delete(f.id);
          }
        };
        const workers = Promise.all(Array.from({ length: 8 }, worker));
        await pause(20 + round * 30);
        agent.proc.kill('SIGKILL');
        if ((await settledWithin(workers, 5000)) === 'pending') stuck.push(`round ${round}: ${open.size} fetches never ended`);
      } finally {
        client.close();
        await agent.stop();
      }
    }
    assert.deepEqual(stuck, []);
  });
});

describe('agent client: what it says when the connection fails, under Node 16 as under Node 20 (F10)', function () {
  this.timeout(60_000);
  const key = { value: 'fake-agent-key-0123', file: 'none' };

  /** An agent that says hello on the events stream and hands each other request to `other`. */
  async function fakeAgent(other: (s: http2.ServerHttp2Stream) => void = () => undefined): Promise<{ port: number; sockets: net.Socket[]; events: http2.ServerHttp2Stream[]; close(): void }> {
    const server = http2.createServer();
    const sockets: net.Socket[] = [];
    const events: http2.ServerHttp2Stream[] = [];
    server.on('connection', (c: net.Socket) => sockets.push(c));
    server.on('session', (se) => se.on('error', () => undefined));
    server.on('stream', (s, h) => {
      s.on('error', () => undefined);
      if (answerChallenge(s, h, key.value)) return;
      if (!String(h[':path']).startsWith('/v1/events')) return other(s);
      s.respond({ ':status': 200 });
      s.write('{"t":"hello"}\n');
      events.push(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as AddressInfo).port, sockets, events, close: () => server.close() };
  }

  /** Runs `body` with a client connected to a fake agent (`other` as fakeAgent's); closes both after. */
  async function withClient(other: ((s: http2.ServerHttp2Stream) => void) | undefined,
    body: (client: AgentClient, agent: Awaited<ReturnType<typeof fakeAgent>>) => Promise<void>): Promise<void> {
    const agent = await fakeAgent(other);
    const client = new AgentClient(`http://127.0.0.1:${agent.port}`, '/', key);
    try {
      await client.connect();
      await body(client, agent);
    } finally {
      client.close();
      agent.close();
    }
  }

  it('says a connection reset is one, not that the agent ended its events stream (Node 16 ends the stream first)', async () => {
    await withClient(undefined, async (client, agent) => {
      const down = new Promise<string>((r) => client.once('down', r));
      agent.sockets[0]!.resetAndDestroy();
      const why = await down;
      assert.doesNotMatch(why, /ended the events stream/);
      assert.match(why, /ECONNRESET/);
    });
  });

  it('goes down when the agent resets the events stream alone (CANCEL), its connection still up: it would otherwise wait for ever, announced nothing', async () => {
    await withClient(undefined, async (client, agent) => {
      const down = new Promise<string>((r) => client.once('down', r));
      // RST_STREAM alone, no END_STREAM before it, as another HTTP/2 server or a proxy may send: Node's own close()
      // ends the stream first, so the frame is sent through the stream's handle (a Node internal, in 16 and 20).
      const ev = agent.events[0]! as unknown as Record<symbol, { rstStream(code: number): void } | undefined>;
      const handle = Object.getOwnPropertySymbols(ev).find((k) => k.description === 'kHandle');
      assert.ok(handle && ev[handle], "the server stream's handle, to send RST_STREAM alone");
      ev[handle]!.rstStream(http2.constants.NGHTTP2_CANCEL);
      assert.match(await settledWithin(down, 5000), /^resolved "the agent at http:\/\/127\.0\.0\.1:\d+ ended the events stream"$/);
    });
  });

  it('says an acknowledgement the agent closed the connection on got no answer, not "HTTP 0"', async () => {
    await withClient((s) => s.session?.destroy(), async (client) => {
      await assert.rejects(client.ack([{ id: '1', rel: 'f.cbf' }]), /closed the connection before answering an acknowledgement/);
    });
  });

  it('says a body cut off by a connection it gave up (its pings unanswered) with why it gave it up, not as a body the agent ended without trailers', async () => {
    // A body that comes a piece every 50 ms and never ends, through a link that goes silent both ways.
    const agent = await fakeAgent((s) => {
      s.respond({ ':status': 200 });
      const t = setInterval(() => (s.destroyed || s.closed ? clearInterval(t) : s.write(Buffer.alloc(16 << 10))), 50);
    });
    const proxy = await SilentProxy.start(() => agent.port);
    const work = mkdtempSync(path.join(os.tmpdir(), 'agent-client-'));
    const client = new AgentClient(`http://127.0.0.1:${proxy.port}`, '/', key);
    try {
      await client.connect();
      const fetching = client.fetch('1', path.join(work, 'f'), 'f').then((got) => closeSync(got.fd));
      await pause(300);
      proxy.silenceAfter = 0;
      assert.match(await settledWithin(fetching, 20_000),
        /^rejected fetching 1 was cut off: the agent at http:\/\/127\.0\.0\.1:\d+ stopped answering \(no ping reply, and nothing received, within 5 s\)$/);
    } finally {
      client.close();
      await proxy.close();
      agent.close();
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('gives an attempt up at once when closed before its connection was made (a stop, a shift change), not after the 10 s deadline', async () => {
    // A name is looked up in a process of its own (host-lookup.ts): closed while that runs, no connection made yet.
    const client = new AgentClient('http://localhost:1', '/', key);
    const attempt = client.connect();
    client.close();
    assert.match(await settledWithin(attempt, 3000), /^rejected connecting to the agent at http:\/\/localhost:1 was given up/);
  });

  it('gives an attempt up at once when closed while the agent has not answered its key challenge, not after the 10 s deadline', async () => {
    // An agent whose event loop is busy (a large rescan) or a link gone silent after the first exchange: Node 16
    // emits nothing more for the session furkad gave up, and the attempt waited out the deadline (found by r2).
    const server = http2.createServer();
    server.on('stream', (s) => s.on('error', () => undefined)); // never answered
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const client = new AgentClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, '/', key);
      const attempt = client.connect();
      await pause(300);
      client.close();
      assert.match(await settledWithin(attempt, 3000), /^rejected connecting to the agent at http:\/\/127\.0\.0\.1:\d+ was given up/);
    } finally {
      server.close();
    }
  });
});

describe('agent client: pushed bodies (A6)', function () {
  this.timeout(30_000);
  let work: string;
  beforeEach(() => { work = mkdtempSync(path.join(os.tmpdir(), 'agent-client-')); });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it('lets go of every pushed body not taken within 2 s, and of any beyond as many as it asked for, even one that came whole', async () => {
    // An agent that pushes three small bodies at once: each fits furkad's stream window, so it arrives whole and
    // its stream is closed by the time anything could cancel it; Node keeps such a stream, and its bytes, until
    // it is read or destroyed.
    const server = http2.createServer();
    server.on('stream', (s) => {
      s.respond({ ':status': 200 });
      for (const id of ['p1', 'p2', 'p3']) {
        s.pushStream({ ':path': `/v1/file?id=${id}` }, (err, pushed) => {
          if (err) return;
          pushed.on('error', () => undefined);
          pushed.respond({ ':status': 200 });
          pushed.end(Buffer.alloc(1000, 1));
        });
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const pushes = new AgentPushes(2);
    const streams: http2.ClientHttp2Stream[] = [];
    session.on('stream', (stream: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      streams.push(stream);
      pushes.arrived(stream, headers);
    });
    try {
      session.request({ ':path': '/v1/events' }).on('error', () => undefined);
      const until = Date.now() + 5000;
      while (streams.length < 3 && Date.now() < until) await pause(10);
      assert.equal(streams.length, 3, 'three pushes came');
      await pause(300);
      assert.deepEqual(streams.map((x) => x.destroyed), [false, false, true], 'the one beyond the two asked for is let go at once');
      assert.ok(streams[0]!.closed, 'the kept ones came whole: closed, and still held');
      await pause(2200);
      assert.deepEqual(streams.map((x) => x.destroyed), [true, true, true], 'none held after 2 s');
      assert.equal(await pushes.claim('p1'), undefined, 'a fetch now requests the file');
    } finally {
      pushes.clear();
      session.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('keeps its connection while it turns pushes off and on as the agent pushes a stream of files (A3, A6)', async function () {
    this.timeout(120_000);
    // Found by a long-run tester: pushes were turned off with HTTP/2's SETTINGS_ENABLE_PUSH; a promise the agent's
    // nghttp2 had queued then failed to be sent, and Node 20 ends the whole connection at such a failure: every 1-2
    // minutes under load, each time said as the detector failing.
    const root = path.join(work, 'root');
    const staging = path.join(work, 'staging');
    mkdirSync(root);
    mkdirSync(staging);
    const agent = await startAgent({ root, dir: work });
    const client = new AgentClient(`http://127.0.0.1:${agent.port}`, '/', { value: agent.key, file: agent.keyFile }, 8);
    const downs: string[] = [];
    client.on('down', (why: string) => downs.push(why));
    const done = new Set<string>();
    const failed: string[] = [];
    const announced: Announced[] = [];
    client.on('file', (f: Announced) => announced.push(f));
    let writing = true;
    // Eight at a time, as furkad fetches, each acknowledged once it is in.
    const worker = async (): Promise<void> => {
      while (writing || announced.length > 0) {
        const f = announced.shift();
        if (f === undefined) {
          await pause(5);
          continue;
        }
        try {
          // Staged under its path, as furkad stages: an id (inode, size, mtime) is unique only among the files on
          // the detector, and a file written after an acknowledged one was deleted may get the same inode, size and
          // mtime (ext4 gives a freed inode to the next file; writeImage picks mtimes at random within a second, by
          // the ms): staged by id, it met the staged copy of the deleted one (EEXIST; the CI run of 9c42cca under Node 16).
          const got = await client.fetch(f.id, path.join(staging, f.path.replace(/\W/g, '_')), f.path);
          closeSync(got.fd);
          await client.ack([{ id: f.id, rel: f.path }]);
          done.add(f.path);
        } catch (e) {
          failed.push(`${f.path}: ${(e as Error).message}`);
        }
      }
    };
    let on = true;
    const toggler = setInterval(() => { on = !on; client.takePushes(on); }, 2);
    try {
      await client.connect();
      const workers = Promise.all(Array.from({ length: 8 }, worker));
      const n = 600;
      for (let i = 0; i < n; i++) {
        writeImage(root, `s/f${i}.cbf`, 4000);
        if (i % 10 === 9) await pause(5);
      }
      const until = Date.now() + 60_000;
      while (done.size + failed.length < n && downs.length === 0 && Date.now() < until) await pause(50);
      writing = false;
      await workers;
      assert.deepEqual(downs, [], 'the connection was never lost');
      assert.equal(done.size, n, `every file fetched and acknowledged (failed: ${failed.slice(0, 5).join('; ')})`);
    } finally {
      writing = false;
      clearInterval(toggler);
      client.close();
      await agent.stop();
    }
  });

  it('has the agent stop pushing while it is behind, and start again', async () => {
    const root = path.join(work, 'root');
    mkdirSync(root);
    const agent = await startAgent({ root, dir: work });
    const client = new AgentClient(`http://127.0.0.1:${agent.port}`, '/', { value: agent.key, file: agent.keyFile }, 8);
    const seen: Announced[] = [];
    client.on('file', (f) => seen.push(f));
    try {
      await client.connect();
      const announced = async (name: string): Promise<Announced> => {
        writeImage(root, name, 1000);
        const until = Date.now() + 10_000;
        for (;;) {
          const f = seen.find((x) => x.path === name);
          if (f) return f;
          if (Date.now() > until) throw new Error(`${name} not announced`);
          await pause(10);
        }
      };
      assert.equal((await announced('one.cbf')).pushed, true, 'pushed at first');
      client.takePushes(false);
      await pause(200); // the agent has the setting
      assert.equal((await announced('two.cbf')).pushed, false, 'not pushed while furkad is behind');
      client.takePushes(true);
      await pause(200);
      assert.equal((await announced('three.cbf')).pushed, true, 'pushed again');
      // A detector hovering at the threshold: many changes in a row. Node allows 10 SETTINGS frames awaiting
      // acknowledgement; the client sends one at a time, and the last word counts.
      for (let i = 0; i < 30; i++) {
        client.takePushes(false);
        client.takePushes(true);
      }
      client.takePushes(false);
      await pause(300);
      assert.equal(client.connected, true, 'still connected after 61 changes');
      assert.equal((await announced('four.cbf')).pushed, false, 'the last change (off) holds');
      client.takePushes(true);
      await pause(200);
      assert.equal((await announced('five.cbf')).pushed, true, 'and on again');
    } finally {
      client.close();
      await agent.stop();
    }
  });
});


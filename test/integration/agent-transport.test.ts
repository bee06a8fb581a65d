// furkad's agent transport against a real furka-agent, run by hand the way the detector loop runs it: a fetch
// that fails while the connection stays up (the PPU ramdisk full) leaves every untaken file waiting for the next
// run, never forgotten on the detector (A4, F10); against fake agents, what furkad makes of the checksum sent
// with each file, or of none (I1, I2).
import { strict as assert } from 'node:assert';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Checksum, prepareChecksums } from '../../src/common/checksum.js';
import { checksumTrailer } from '../../src/common/checksum-trailer.js';
import { initProvenance, readProvenance } from '../../src/common/provenance.js';
import { AgentTransport } from '../../src/furkad/agent-transport.js';
import { AgentPlaced } from '../../src/furkad/agent-placed.js';
import type { RunContext } from '../../src/furkad/transport.js';
import type { Logger } from '../../src/common/logger.js';
import { agentKeyFile, answerChallenge, keyIn, startAgent, type Agent } from '../fixtures/agent.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';
import { tempDir } from '../fixtures/ppu.js';
import { markFixture } from '../fixtures/processes.js';
import { eventually } from '../fixtures/files.js';

/** A key file for transports talking to the fake agents below (which answer its challenge, and take any proof): furkad reads it at each connect. */
let fakeKey: string | undefined;
function fakeKeyFile(): string {
  fakeKey ??= agentKeyFile(tempDir('agent-transport-key')).keyFile;
  return fakeKey;
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;

describe('agent transport with a real furka-agent (A4, F10)', function () {
  this.timeout(60_000);
  let work: string;
  let agent: Agent;
  let staging: string;
  before(async () => {
    work = tempDir('agent-transport');
    mkdirSync(path.join(work, 'root', 'run1'), { recursive: true });
    staging = mountTmpfs(path.join(work, 'staging'), 256 * 1024);
    agent = await startAgent({ root: path.join(work, 'root'), dir: work });
    markFixture(agent.proc);
  });
  after(async () => {
    await agent?.stop();
    unmount(staging);
    rmSync(work, { recursive: true, force: true });
  });

  it('keeps every file of a run whose fetch failed (a full ramdisk) and takes them once there is room', async () => {
    const placed: string[] = [];
    const t = new AgentTransport('D1', AgentPlaced.open(path.join(work, 'state')), quiet);
    const ctx = {
      assignment: { config: { remoteIP: '127.0.0.1', port: agent.port, agent_key_file: agent.keyFile }, source: '/run1' },
      shift: { uid: 0, gid: 0 }, staging, signal: new AbortController().signal, wantsEnd: () => false, othersWaiting: () => false,
      dir: { root: path.join(work, 'placed') }, // where the transport notes a file is about to go (A4)
      // The loop's part, reduced to what the agent needs: placed (here: taken out of staging), then acknowledged.
      complete: async (rels: string[]) => {
        for (const r of rels) rmSync(path.join(staging, r));
        placed.push(...rels);
        t.afterPlaced(rels);
        return { placed: rels, failed: [], gone: [] };
      },
    } as unknown as RunContext;
    try {
      await t.run(ctx); // connects
      const detector = path.join(work, 'root', 'run1');
      for (let i = 0; i < 12; i++) {
        writeFileSync(path.join(work, `.w${i}`), Buffer.alloc(100_000, i));
        renameSync(path.join(work, `.w${i}`), path.join(detector, `f${i}.cbf`));
      }
      await new Promise((r) => setTimeout(r, 500));
      writeFileSync(path.join(staging, 'ballast'), Buffer.alloc(200_000)); // grimseld away, the ramdisk too full for one file
      const first = await t.run(ctx);
      assert.equal(first.verdict, 'retry', 'the full ramdisk is an outage of this run');
      assert.match(first.message, /ENOSPC/);
      rmSync(path.join(staging, 'ballast'));
      // 8 fetches in flight need more room than this small ramdisk has: each run takes some, none is dropped.
      for (let k = 0; k < 30 && placed.length < 12; k++) await t.run(ctx);
      assert.deepEqual(placed.sort(), Array.from({ length: 12 }, (_, i) => `f${i}.cbf`).sort(), `each file taken once; the agent (exit ${agent.proc.child.exitCode}, signal ${agent.proc.child.signalCode}) said:\n${agent.proc.output().slice(-2000)}`);
      await eventually(() => readdirSync(detector).length === 0, 10_000, 'every source acknowledged and deleted');
    } finally {
      await t.close();
    }
  });
});

/**
 * An agent of the protocol (docs/agent-protocol.md) whose file answers a test decides: `checksum` whether they
 * carry one, `damage(id)` whether to flip a bit of this answer's body on the way, `push(id)` whether to push the
 * body behind its line ('push'), promise it before its line but send the body 100 ms later ('slow'), push it and
 * send the line 300 ms later ('late'), send the line and push it 800 ms later ('line-first', which the real agent
 * never does), only say so in the line ('promise'), push it with no line ('stray'), or neither; only to a client
 * that asked for pushes (`push=N`). `pushes` records how each pushed stream ended (its RST_STREAM code, 0 if
 * read to its end); `pushWishes` each `POST /v1/push?on=` the client sent, with how many files it had requested
 * by then, and `enablePush` each SETTINGS_ENABLE_PUSH it sent (the way it asked before, which ended connections).
 */
type PushHow = 'push' | 'slow' | 'late' | 'line-first' | 'promise' | 'stray';
async function fakeAgent(files: Record<string, Buffer>, answer: {
  checksum: 'none' | 'right'; damage: (id: string) => boolean; push?: (id: string) => PushHow | undefined;
  /** Why the agent keeps a file acknowledged as `path` (undefined: deleted). */
  kept?: (id: string, path: string) => string | undefined;
}) {
  const requests = {
    events: 0, file: new Map<string, number>(), acked: [] as string[], ackedSums: new Map<string, string>(), pushes: new Map<string, number>(),
    /** Each acknowledgement as `ID PATH`. */
    ackedAs: [] as string[],
    enablePush: [] as Array<{ on: boolean; requested: number }>,
    pushWishes: [] as Array<{ on: boolean; requested: number }>,
  };
  // Taken before the test (hex(), not hexSync(): furkad's fetches may hold every prepared hasher).
  const sums = new Map(await Promise.all(Object.entries(files).map(async ([id, b]) => {
    const sum = new Checksum();
    sum.update(b);
    return [id, await sum.hex()] as const;
  })));
  const answerFile = (s: http2.ServerHttp2Stream, id: string): void => {
    const body = Buffer.from(files[id]!);
    const hex = sums.get(id)!;
    const middle = body.length >> 1;
    if (answer.damage(id)) body[middle] = body[middle]! ^ 0x01;
    s.on('wantTrailers', () => s.destroyed || s.closed || s.sendTrailers({ 'x-furka-unchanged': '1', ...(answer.checksum === 'right' ? checksumTrailer(hex) : {}) }));
    s.respond({ ':status': 200 }, { waitForTrailers: true });
    s.end(body);
  };
  const server = http2.createServer();
  server.on('session', (session) => {
    let last = true;
    session.on('remoteSettings', (settings) => {
      const on = settings.enablePush !== false;
      if (on === last) return;
      last = on;
      requests.enablePush.push({ on, requested: [...requests.file.values()].reduce((a, b) => a + b, 0) });
    });
  });
  server.on('stream', (s, h) => {
    s.on('error', () => undefined); // furkad closing its connection mid-answer
    if (answerChallenge(s, h, keyIn(fakeKeyFile()))) return;
    const url = new URL(String(h[':path']), 'http://agent');
    if (url.pathname === '/v1/events') {
      requests.events++;
      s.respond({ ':status': 200 });
      s.write(`${JSON.stringify({ t: 'hello', agent: 'furka-agent', protocol: 2 })}\n`);
      const pushes = Number(url.searchParams.get('push') ?? '0') > 0;
      const pushBody = (id: string, delayMs = 0): void => {
        s.pushStream({ ':path': `/v1/file?id=${id}` }, (err, pushed) => {
          if (err) throw err;
          pushed.on('error', () => undefined);
          pushed.on('close', () => requests.pushes.set(id, pushed.rstCode ?? 0));
          if (delayMs === 0) answerFile(pushed, id);
          else setTimeout(() => pushed.destroyed || answerFile(pushed, id), delayMs);
        });
      };
      for (const [id, body] of Object.entries(files)) {
        const how = pushes ? answer.push?.(id) : undefined;
        if (how === 'push' || how === 'late' || how === 'stray') pushBody(id);
        if (how === 'slow') pushBody(id, 100);
        if (how === 'line-first') setTimeout(() => s.destroyed || pushBody(id), 800);
        if (how === 'stray') continue;
        const push = how === undefined ? {} : { push: true };
        const line = `${JSON.stringify({ t: 'file', id, path: `${id}.cbf`, size: body.length, mtime_ns: '1700000000000000000', mode: 0o644, ...push })}\n`;
        if (how === 'late') setTimeout(() => s.destroyed || s.write(line), 300);
        else s.write(line);
      }
      s.write(`${JSON.stringify({ t: 'synced' })}\n`);
    } else if (url.pathname === '/v1/file') {
      const id = url.searchParams.get('id')!;
      requests.file.set(id, (requests.file.get(id) ?? 0) + 1);
      answerFile(s, id);
    } else if (url.pathname === '/v1/push') {
      requests.pushWishes.push({ on: url.searchParams.get('on') === '1', requested: [...requests.file.values()].reduce((a, b) => a + b, 0) });
      s.respond({ ':status': 204 }, { endStream: true });
    } else {
      answerAck(s, requests.acked, requests.ackedSums, requests.ackedAs, answer.kept);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { requests, port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(r)) };
}

/**
 * A fake agent's answer to POST /v1/ack: every id noted in `acked` (with its checksum in `sums`, and as `ID PATH`
 * in `as`) and reported deleted, unless `kept` gives a reason to keep it.
 */
function answerAck(s: http2.ServerHttp2Stream, acked: string[], sums?: Map<string, string>, as?: string[], kept?: (id: string, path: string) => string | undefined): void {
  let text = '';
  s.setEncoding('utf8');
  s.on('data', (t: string) => { text += t; });
  s.on('end', () => {
    const body = JSON.parse(text) as { ids: string[]; paths?: string[]; sums?: string[] };
    const ids = body.ids;
    acked.push(...ids);
    ids.forEach((id, i) => sums?.set(id, body.sums?.[i] ?? ''));
    as?.push(...ids.map((id, i) => `${id} ${body.paths?.[i] ?? ''}`));
    if (s.destroyed || s.closed) return; // furkad closed its connection meanwhile
    const reasons = ids.map((id, i) => ({ id, reason: kept?.(id, body.paths?.[i] ?? '') }));
    s.respond({ ':status': 200 });
    s.end(JSON.stringify({ deleted: reasons.filter((r) => !r.reason).map((r) => r.id), kept: reasons.filter((r) => r.reason) }));
  });
}

/** A run's context whose loop places every file at once (noting it in `placed`) and hands it back to `t`. */
function placingContext(t: AgentTransport, port: number, usertime: bigint, placed: string[], staging: string, work: string): RunContext {
  return {
    assignment: { config: { remoteIP: '127.0.0.1', port, agent_key_file: fakeKeyFile() }, source: '/' },
    shift: { uid: 0, gid: 0, usertime }, staging, signal: new AbortController().signal, wantsEnd: () => false, othersWaiting: () => false,
    learnedBy: Infinity, dir: { root: path.join(work, 'placed') },
    complete: async (rels: string[]) => {
      placed.push(...rels);
      t.afterPlaced(rels);
      return { placed: rels, failed: [], gone: [] };
    },
  } as unknown as RunContext;
}

/** Hooks for tests that hash and write provenance: hashers ready, a fresh work directory for each test. */
function freshWork(prefix: string, set: (dir: string) => void): void {
  let dir = '';
  before(async () => {
    await prepareChecksums(2);
    await initProvenance();
  });
  beforeEach(() => {
    dir = tempDir(prefix);
    set(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
}

describe('agent transport: checksums on arrival (I1, I2, I3)', function () {
  this.timeout(60_000);
  let work: string;
  freshWork('agent-checksums', (dir) => { work = dir; });

  /** A transport and the loop's part reduced to what it needs; `placed` records each file with its checksum and provenance. */
  function transportFor(port: number) {
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
    const at = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push({ level, obj, msg }); };
    const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: () => undefined } as unknown as Logger;
    const t = new AgentTransport('D1', AgentPlaced.open(path.join(work, 'state')), log);
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    const placed: Array<{ rel: string; checksum: string | undefined; recorded: string | undefined; detector: string | undefined }> = [];
    const ctx = {
      assignment: { config: { remoteIP: '127.0.0.1', port, agent_key_file: fakeKeyFile() }, source: '/' },
      shift: { uid: 0, gid: 0, usertime: 5n }, staging, signal: new AbortController().signal, wantsEnd: () => false, othersWaiting: () => false,
      dir: { root: path.join(work, 'placed') },
      complete: async (rels: string[], checksums?: ReadonlyMap<string, string>) => {
        for (const rel of rels) {
          const fd = openSync(path.join(staging, rel), 'r');
          const p = readProvenance(fd);
          closeSync(fd);
          rmSync(path.join(staging, rel));
          placed.push({ rel, checksum: checksums?.get(rel), recorded: p?.recorded, detector: p?.detector });
        }
        t.afterPlaced(rels);
        return { placed: rels, failed: [], gone: [] };
      },
    } as unknown as RunContext;
    return { t, ctx, placed, lines };
  }

  const tagOf = (b: Buffer): string => {
    const sum = new Checksum();
    sum.update(b);
    return `xxh128:${sum.hexSync()}`;
  };

  it('takes files from an agent without checksums, hashing what arrived, and says so once (I1)', async () => {
    const files = { a: randomBytes(200_000), b: randomBytes(1000) };
    const agent = await fakeAgent(files, { checksum: 'none', damage: () => false });
    const { t, ctx, placed, lines } = transportFor(agent.port);
    try {
      await t.run(ctx); // connects: the files are announced
      await eventually(async () => { await t.run(ctx); return placed.length === 2; }, 10_000, 'both files placed');
      assert.deepEqual(placed.sort((x, y) => x.rel.localeCompare(y.rel)), [
        { rel: 'a.cbf', checksum: tagOf(files.a), recorded: tagOf(files.a), detector: 'D1' },
        { rel: 'b.cbf', checksum: tagOf(files.b), recorded: tagOf(files.b), detector: 'D1' },
      ], "furkad's own checksum, handed over and written onto the file (I3)");
      assert.equal(lines.filter((l) => /sends no checksum/.test(l.msg)).length, 1, 'said once');
    } finally {
      await t.close();
      await agent.close();
    }
  });

  it("never fetches a file an agent announces below furkad's staging name, and reports it (docs/threat-model.md)", async () => {
    // The shipped agent announces nothing below a hidden directory; another or older agent may, and with usrdir
    // empty such a file would be placed into furkad's staging itself.
    const files = { '.furkad-staging/D1/a': randomBytes(1000), 'run/.furkad-staging/D2/z': randomBytes(1000), b: randomBytes(1000) };
    const agent = await fakeAgent(files, { checksum: 'right', damage: () => false });
    const { t, ctx, placed, lines } = transportFor(agent.port);
    try {
      await t.run(ctx);
      await eventually(async () => { await t.run(ctx); return placed.length === 1; }, 10_000, 'the ordinary file placed');
      assert.deepEqual(placed.map((p) => p.rel), ['b.cbf']);
      assert.deepEqual([...agent.requests.file.keys()], ['b'], 'only the ordinary file fetched');
      await eventually(() => agent.requests.acked.length > 0, 10_000, 'the acknowledgement');
      assert.deepEqual(agent.requests.acked, ['b'], 'and only it acknowledged (deleted)');
      assert.deepEqual(lines.filter((l) => /named as furkad's own directory/.test(l.msg)).map((l) => l.obj['file']).sort(),
        ['.furkad-staging/D1/a.cbf', 'run/.furkad-staging/D2/z.cbf']);
    } finally {
      await t.close();
      await agent.close();
    }
  });

  it('drops a file that arrived damaged, never acknowledges it, fetches it again at once on the same connection, then after a pause (I2, A4)', async () => {
    const files = { c: randomBytes(300_000) };
    let damaged = 2;
    const agent = await fakeAgent(files, { checksum: 'right', damage: () => damaged-- > 0 });
    const { t, ctx, placed, lines } = transportFor(agent.port);
    try {
      await t.run(ctx);
      await eventually(async () => { await t.run(ctx); return (agent.requests.file.get('c') ?? 0) >= 1; }, 10_000, 'the first fetch');
      assert.equal(placed.length, 0, 'damaged: not placed');
      const errors = lines.filter((l) => l.level === 'error' && /arrived damaged/.test(l.msg));
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.obj['file'], 'c.cbf');
      assert.equal(errors[0]!.obj['sent'], tagOf(files.c), "the agent's checksum");
      assert.notEqual(errors[0]!.obj['received'], tagOf(files.c), 'and the one of what arrived');
      await t.waitForWork(new AbortController().signal); // at once: it waits again, ready
      await t.run(ctx);
      const paused = performance.now(); // the second damaged arrival starts a pause of 100 ms
      assert.equal(agent.requests.file.get('c'), 2, 'fetched again by the very next run');
      assert.equal(placed.length, 0, 'damaged again');
      await t.run(ctx);
      assert.equal(agent.requests.file.get('c'), 2, 'a second damaged arrival in a row: a pause before the next fetch');
      await t.waitForWork(new AbortController().signal); // returns once the pause is over, without anything announced
      assert.ok(performance.now() - paused >= 50, 'the pause was waited for');
      // A loaded machine may end the pause after this run started: the next run fetches it then.
      await eventually(async () => { if (placed.length === 0) await t.run(ctx); return placed.length > 0; }, 10_000, 'the third fetch placed');
      assert.deepEqual(placed.map((p) => [p.rel, p.checksum]), [['c.cbf', tagOf(files.c)]], 'arrived right the third time, placed once');
      assert.equal(agent.requests.file.get('c'), 3, 'fetched three times in all');
      await eventually(() => agent.requests.acked.length === 1, 5000, 'the acknowledgement');
      assert.deepEqual(agent.requests.acked, ['c'], 'only the good copy acknowledged');
      assert.equal(`xxh128:${agent.requests.ackedSums.get('c')}`, tagOf(files.c), 'with the checksum of what was placed (an agent restarted since compares the file with it)');
      assert.equal(agent.requests.events, 1, 'all on one connection');
    } finally {
      await t.close();
      await agent.close();
    }
  });

  it('takes a body the agent pushed without asking for it, asks at once for one whose push was not promised before its line, and cancels a push not taken in time (A6)', async () => {
    // 'b': its line says pushed, but no push comes; 'd': promised before its line, its body 100 ms later, while
    // its fetch waits for it; 'e': empty, its push over (and closed) before its line comes; 'f': promised only 800 ms
    // after its line, so never waited for; 'z': a push no line announces, so nothing fetches it. 'z' is larger
    // than furkad's window for one stream: the agent can send only part of it, and sees the cancel.
    const files = {
      a: randomBytes(400_000), b: randomBytes(1000), c: randomBytes(5000), d: randomBytes(7000), e: Buffer.alloc(0), f: randomBytes(3000),
      z: randomBytes(20 << 20),
    };
    const how: Record<string, PushHow> = { b: 'promise', d: 'slow', e: 'late', f: 'line-first', z: 'stray' };
    const agent = await fakeAgent(files, { checksum: 'right', damage: () => false, push: (id) => how[id] ?? 'push' });
    const { t, ctx, placed } = transportFor(agent.port);
    try {
      await t.run(ctx);
      await eventually(async () => { await t.run(ctx); return placed.length === 6; }, 10_000, 'all six placed');
      assert.deepEqual(placed.map((p) => [p.rel, p.checksum]).sort(),
        [['a.cbf', tagOf(files.a)], ['b.cbf', tagOf(files.b)], ['c.cbf', tagOf(files.c)], ['d.cbf', tagOf(files.d)], ['e.cbf', tagOf(files.e)], ['f.cbf', tagOf(files.f)]]);
      // 'f' is asked for although its push comes 800 ms later: a fetch waits for a push only if its promise came
      // before the line. Before, it waited up to a second for any (and so took 'f''s push), which cost that
      // second for every promise nghttp2 refused once furkad had turned pushes off.
      assert.deepEqual([...agent.requests.file.entries()].sort(), [['b', 1], ['f', 1]], 'only the files whose push was not promised ahead of their lines were asked for');
      await eventually(() => agent.requests.pushes.has('z') && agent.requests.pushes.has('f'), 10_000, 'the pushes nobody took ended');
      assert.deepEqual([...agent.requests.pushes.entries()].filter(([id]) => id !== 'f').sort(), [['a', 0], ['c', 0], ['d', 0], ['e', 0], ['z', http2.constants.NGHTTP2_CANCEL]],
        'the pushed bodies taken were read to their end, the one nobody took cancelled');
    } finally {
      await t.close();
      await agent.close();
    }
  });

  it('turns pushes off while more files wait than it fetches at once, and on again once it has caught up to half that, not only when none waits (A6)', async () => {
    const files = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`n${i}`, randomBytes(2000)]));
    const agent = await fakeAgent(files, { checksum: 'right', damage: () => false });
    const { t, ctx, placed } = transportFor(agent.port);
    try {
      // Connected, but taking nothing (a shift change holding the detector): all twelve wait.
      await t.run({ ...ctx, wantsEnd: () => true });
      await eventually(() => agent.requests.pushWishes.length === 1, 10_000, 'pushes turned off');
      assert.deepEqual(agent.requests.pushWishes, [{ on: false, requested: 0 }]);
      await eventually(async () => { await t.run(ctx); return placed.length === 12; }, 10_000, 'all twelve placed');
      await eventually(() => agent.requests.pushWishes.length === 2, 10_000, 'pushes turned on again');
      // Asked of a request, never of SETTINGS_ENABLE_PUSH: Node 20 ends the connection when a promise the agent had
      // queued fails at such a setting.
      assert.deepEqual(agent.requests.enablePush, [], 'no SETTINGS_ENABLE_PUSH sent');
      const again = agent.requests.pushWishes[1]!;
      assert.equal(again.on, true);
      // Taking the 8th file leaves 4 waiting: pushes go back on before that file is asked for.
      assert.ok(again.requested <= 8, `pushes came back on only after ${again.requested} of 12 files were asked for: a steady few waiting files would keep them off`);
    } finally {
      await t.close();
      await agent.close();
    }
  });
});

describe('agent transport: a file set aside for a shift that ended (A4, A5, F6)', function () {
  this.timeout(60_000);
  let work: string;
  freshWork('agent-aside', (dir) => { work = dir; });

  it('is neither fetched again into the new shift nor left unacknowledged when furkad restarts before placing it', async () => {
    const x = randomBytes(50_000);
    const agent = await fakeAgent({ x }, { checksum: 'right', damage: () => false });
    const state = path.join(work, 'state');
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;
    const ctx = (place: boolean) => ({
      assignment: { config: { remoteIP: '127.0.0.1', port: agent.port, agent_key_file: fakeKeyFile() }, source: '/' },
      shift: { uid: 0, gid: 0, usertime: 5n }, staging, signal: new AbortController().signal, wantsEnd: () => false, othersWaiting: () => false,
      dir: { root: path.join(work, 'placed') },
      // The first furkad cannot place it (a link planted in the shift's directory, say): it stays in staging.
      complete: async (rels: string[]) => (place ? { placed: rels, failed: [], gone: [] } : { placed: [], failed: rels, gone: [] }),
    } as unknown as RunContext);
    const open: Array<{ t: AgentTransport; store: AgentPlaced }> = [];
    const start = () => {
      const store = AgentPlaced.open(state);
      const t = new AgentTransport('D1', store, log);
      open.push({ t, store });
      return { t, store };
    };
    try {
      const first = start();
      await eventually(async () => { await first.t.run(ctx(false)); return agent.requests.file.get('x') === 1; }, 10_000, 'the fetch');
      first.t.forget(['x.cbf'], 5n); // the shift changed: the loop set it aside for the old shift (5)
      await first.t.close();
      first.store.close();
      open.shift();

      // furkad restarts (a new shift): the agent announces x again, since it was never acknowledged.
      const second = start();
      await eventually(async () => { await second.t.run(ctx(true)); return agent.requests.events === 2; }, 10_000, 'the second connection');
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 50));
        await second.t.run(ctx(true));
      }
      assert.equal(agent.requests.file.get('x'), 1, 'not fetched a second time, into the new shift');
      assert.deepEqual(agent.requests.acked, [], 'and not acknowledged: it is not placed yet');
      // The loop places it for its own shift (adopted from where it was kept), then the transport acknowledges it.
      second.t.afterPlaced(['x.cbf'], 4n); // a file of that path set aside for another shift: not this one
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(agent.requests.acked, [], 'not acknowledged for the placing of another shift\'s file');
      second.t.afterPlaced(['x.cbf'], 5n);
      await eventually(() => agent.requests.acked.includes('x'), 10_000, 'the acknowledgement');
      const placed = new Checksum();
      placed.update(x);
      assert.equal(agent.requests.ackedSums.get('x'), placed.hexSync(), 'with the checksum of what was placed, kept across the restart');
      assert.deepEqual(second.store.setAsideFiles('D1'), []);
    } finally {
      for (const o of open) {
        await o.t.close();
        o.store.close();
      }
      await agent.close();
    }
  });

  it('ends a placement whose name the agent no longer lists (renamed while furkad was down) and fetches the new name (A4)', async () => {
    const agent = await fakeAgent({ x: randomBytes(20_000) }, { checksum: 'right', damage: () => false });
    const state = path.join(work, 'state');
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    // A furkad killed after placing x as old.cbf, before the agent answered: the agent now lists it as x.cbf.
    const before = AgentPlaced.open(state);
    before.placed('D1', [{ id: 'x', rel: 'old.cbf' }]);
    before.close();
    const store = AgentPlaced.open(state);
    const t = new AgentTransport('D1', store, quiet);
    const ctx = placingContext(t, agent.port, 5n, [], staging, work);
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.ackedAs.includes('x x.cbf'); }, 10_000, 'x.cbf fetched, placed and acknowledged');
      assert.equal(agent.requests.file.get('x'), 1, 'the new name fetched: the old placement does not stand for it');
      assert.deepEqual(store.placements('D1').filter((p) => p.rel === 'old.cbf'), [], 'the placement of the name the agent no longer has is over');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  it('fetches again a file placed in an earlier boot of the PPU whose acknowledgement was unanswered: its copy went with the ramdisk (A4, F2, G12)', async () => {
    const agent = await fakeAgent({ x: randomBytes(20_000) }, { checksum: 'right', damage: () => false });
    const state = path.join(work, 'state');
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    // A furkad placed x as x.cbf; the PPU lost power before the agent answered the acknowledgement. The record is on
    // /var, the placed file was on the PPU ramdisk (a tmpfs): after the restart it is not there.
    const before = AgentPlaced.open(state, 'boot-before-the-cut');
    before.placed('D1', [{ id: 'x', rel: 'x.cbf' }]);
    before.close();
    const store = AgentPlaced.open(state, 'boot-after-the-cut');
    const t = new AgentTransport('D1', store, quiet);
    const ctx = placingContext(t, agent.port, 5n, [], staging, work);
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.acked.includes('x'); }, 10_000, 'x acknowledged');
      assert.equal(agent.requests.file.get('x'), 1, 'fetched before it was acknowledged: the agent deletes its source only once it is placed again');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  /**
   * A furkad killed after placing x as old.cbf (with the checksum of what it placed), before the agent answered;
   * the agent lists the file as x.cbf now, and answers the acknowledgement of old.cbf with `oldName`.
   */
  async function placedUnderOldName(oldName: string | undefined) {
    const bytes = randomBytes(20_000);
    const sum = new Checksum();
    sum.update(bytes);
    const hex = await sum.hex();
    const agent = await fakeAgent({ x: bytes }, { checksum: 'right', damage: () => false, kept: (_id, p) => (p === 'old.cbf' ? oldName : undefined) });
    const state = path.join(work, 'state');
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    const before = AgentPlaced.open(state);
    before.placed('D1', [{ id: 'x', rel: 'old.cbf', sum: hex }]);
    before.close();
    const store = AgentPlaced.open(state);
    const placed: string[] = [];
    const lines: string[] = [];
    const log = { ...quiet, info: (_o: unknown, msg: string) => { lines.push(msg); } } as unknown as Logger;
    const t = new AgentTransport('D1', store, log);
    const ctx = placingContext(t, agent.port, 7n, placed, staging, work);
    return { agent, store, placed, lines, t, ctx, hex };
  }

  it('asks the agent again about a placement under the name a file had, and takes the file under its new name for it once that name is gone (renamed): acknowledged with the placed checksum, not placed twice (A4)', async () => {
    const { agent, store, placed, lines, t, ctx, hex } = await placedUnderOldName('moved');
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.ackedAs.includes('x x.cbf'); }, 10_000, 'x.cbf acknowledged');
      assert.deepEqual(agent.requests.ackedAs, ['x old.cbf', 'x x.cbf'], 'the old name asked about first, then the new one acknowledged');
      assert.equal(agent.requests.file.get('x'), undefined, 'not fetched again');
      assert.deepEqual(placed, [], 'not placed again');
      assert.equal(agent.requests.ackedSums.get('x'), hex, 'with the checksum of what was placed: the agent deletes it only if it still holds those bytes');
      assert.ok(lines.some((l) => /renamed on the detector after it was placed is not placed again/.test(l)), lines.join('\n'));
      await eventually(() => store.placements('D1').length === 0, 10_000, 'both placements answered');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  it('fetches and places a second name of a placed file as itself when the agent deleted the first (a hard link), asking about the first before (A4)', async () => {
    const { agent, store, placed, t, ctx } = await placedUnderOldName(undefined);
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.ackedAs.includes('x x.cbf'); }, 10_000, 'x.cbf fetched, placed and acknowledged');
      assert.deepEqual(agent.requests.ackedAs, ['x old.cbf', 'x x.cbf']);
      assert.equal(agent.requests.file.get('x'), 1, 'fetched under its own name');
      assert.deepEqual(placed, ['x.cbf']);
      assert.deepEqual(store.placements('D1'), []);
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  it("takes a rewrite's placement (ID:1) for the same file a restarted agent lists under its base id: acknowledged with the placed checksum, not placed twice (A4, A5)", async () => {
    const base = '7:20000:1700000000000000000';
    const bytes = randomBytes(20_000);
    const agent = await fakeAgent({ [base]: bytes }, { checksum: 'right', damage: () => false });
    const state = path.join(work, 'state');
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    const sum = new Checksum();
    sum.update(bytes);
    const hex = await sum.hex();
    // A furkad placed the file's rewrites (the agent counted them: base:1, then base:2, which holds the bytes the
    // file has now) and the agent was killed before it answered.
    const before = AgentPlaced.open(state);
    before.placed('D1', [{ id: `${base}:1`, rel: `${base}.cbf`, sum: 'f'.repeat(32) }, { id: `${base}:2`, rel: `${base}.cbf`, sum: hex }]);
    before.close();
    const store = AgentPlaced.open(state);
    const placed: string[] = [];
    const t = new AgentTransport('D1', store, quiet);
    const ctx = placingContext(t, agent.port, 6n, placed, staging, work);
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.acked.includes(base); }, 10_000, 'the base id acknowledged');
      assert.equal(agent.requests.file.get(base), undefined, 'not fetched again');
      assert.deepEqual(placed, [], 'not placed again (into the shift current now)');
      assert.equal(agent.requests.ackedSums.get(base), hex, "with the checksum of what was placed last: the agent deletes only if it still holds those bytes");
      assert.deepEqual(store.placements('D1'), [], 'the placement answered');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  it('fetches a set-aside file again, into the shift current then, when the copy kept for its shift is lost', async () => {
    const agent = await fakeAgent({ y: randomBytes(20_000) }, { checksum: 'right', damage: () => false });
    const staging = path.join(work, 'staging');
    mkdirSync(staging);
    const placed: string[] = [];
    let place = false;
    const store = AgentPlaced.open(path.join(work, 'state'));
    const t = new AgentTransport('D1', store, quiet);
    const ctx = {
      assignment: { config: { remoteIP: '127.0.0.1', port: agent.port, agent_key_file: fakeKeyFile() }, source: '/' },
      shift: { uid: 0, gid: 0, usertime: 5n }, staging, signal: new AbortController().signal, wantsEnd: () => false, othersWaiting: () => false,
      learnedBy: Infinity, dir: { root: path.join(work, 'placed') },
      complete: async (rels: string[]) => {
        if (!place) return { placed: [], failed: rels, gone: [] };
        placed.push(...rels);
        t.afterPlaced(rels);
        return { placed: rels, failed: [], gone: [] };
      },
    } as unknown as RunContext;
    try {
      await eventually(async () => { await t.run(ctx); return agent.requests.file.get('y') === 1; }, 10_000, 'the fetch');
      t.forget(['y.cbf'], 5n);
      await t.run(ctx);
      assert.equal(agent.requests.file.get('y'), 1, 'set aside: not fetched again');
      // The kept copy is gone (an operator cleaned staging): the source is the only one left.
      place = true;
      t.keptCopyLost(['y.cbf'], 5n);
      assert.deepEqual(store.setAsideFiles('D1'), []);
      await eventually(async () => { await t.run(ctx); return placed.includes('y.cbf'); }, 10_000, 'fetched again and placed');
      assert.equal(agent.requests.file.get('y'), 2);
      await eventually(() => agent.requests.acked.includes('y'), 10_000, 'acknowledged once placed');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });
});

/**
 * An agent whose announcements the test sends when it likes (`announce`), and whose file bodies go out in 16
 * slow pieces (20 ms apart), so that something can happen while a fetch is under way (`onFetch`).
 */
async function slowAgent(files: Record<string, Buffer>, onFetch: (id: string, n: number) => void = () => undefined) {
  const requests = { file: new Map<string, number>(), acked: [] as string[] };
  // Hashed up front: the hashers furkad's side uses must not be this agent's to wait for.
  const sums = new Map<string, string>();
  for (const [id, body] of Object.entries(files)) {
    const sum = new Checksum();
    sum.update(body);
    sums.set(id, await sum.hex());
  }
  let events: http2.ServerHttp2Stream | undefined;
  const server = http2.createServer();
  server.on('stream', (s, h) => {
    s.on('error', () => undefined);
    if (answerChallenge(s, h, keyIn(fakeKeyFile()))) return;
    const url = new URL(String(h[':path']), 'http://agent');
    if (url.pathname === '/v1/events') {
      events = s;
      s.respond({ ':status': 200 });
      s.write(`${JSON.stringify({ t: 'hello', agent: 'furka-agent', protocol: 1 })}\n${JSON.stringify({ t: 'synced' })}\n`);
    } else if (url.pathname === '/v1/file') {
      const id = url.searchParams.get('id')!;
      const n = (requests.file.get(id) ?? 0) + 1;
      requests.file.set(id, n);
      const body = files[id]!;
      const hex = sums.get(id)!;
      s.on('wantTrailers', () => s.destroyed || s.closed || s.sendTrailers({ 'x-furka-unchanged': '1', ...checksumTrailer(hex) }));
      s.respond({ ':status': 200 }, { waitForTrailers: true });
      const piece = Math.ceil(body.length / 16);
      let i = 0;
      const timer = setInterval(() => {
        if (s.destroyed || s.closed) return clearInterval(timer);
        s.write(body.subarray(i * piece, (i + 1) * piece));
        if (++i === 16) {
          clearInterval(timer);
          s.end();
        }
      }, 20);
      onFetch(id, n);
    } else {
      answerAck(s, requests.acked);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const announce = (id: string): void => {
    events?.write(`${JSON.stringify({ t: 'file', id, path: `${id}.cbf`, size: files[id]!.length, mtime_ns: '1700000000000000000', mode: 0o644 })}\n`);
  };
  return { requests, announce, port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(r)) };
}

describe('agent transport: runs that go on taking announcements (A4, A5)', function () {
  this.timeout(60_000);
  let work: string;
  freshWork('agent-runs', (dir) => { work = dir; });

  /** A transport and a loop's part that places by rename after a short while, as a batch does. */
  function world(port: number, learnedBy = Infinity) {
    const staging = path.join(work, 'staging');
    const final = path.join(work, 'final');
    mkdirSync(staging);
    mkdirSync(final);
    const placed: Array<{ rel: string; size: number }> = [];
    const store = AgentPlaced.open(path.join(work, 'state'));
    const t = new AgentTransport('D1', store, quiet);
    const ctx = {
      assignment: { config: { remoteIP: '127.0.0.1', port, agent_key_file: fakeKeyFile() }, source: '/' },
      shift: { uid: 0, gid: 0, usertime: 1n }, staging, signal: new AbortController().signal,
      wantsEnd: () => false, othersWaiting: () => false, learnedBy, dir: { root: final },
      complete: async (rels: string[]) => {
        await new Promise((r) => setTimeout(r, 30));
        for (const rel of rels) {
          renameSync(path.join(staging, rel), path.join(final, rel));
          placed.push({ rel, size: statSync(path.join(final, rel)).size });
        }
        t.afterPlaced(rels);
        return { placed: rels, failed: [], gone: [] };
      },
    } as unknown as RunContext & { learnedBy: number };
    return { t, ctx, placed, final, store };
  }

  it('fetches a path announced again while its fetch is under way once, and places it whole (a rescan mid-fetch)', async () => {
    const files = { f: randomBytes(1 << 20) };
    const agent = await slowAgent(files, (id, n) => { if (n === 1) setTimeout(() => agent.announce(id), 150); });
    const { t, ctx, placed, final, store } = world(agent.port);
    try {
      await t.run(ctx); // connects
      agent.announce('f');
      await eventually(async () => { await t.run(ctx); return placed.length > 0; }, 10_000, 'f placed');
      for (let i = 0; i < 3; i++) await t.run(ctx); // the second announcement is dealt with
      assert.equal(agent.requests.file.get('f'), 1, 'one fetch: the second announcement is of a file already placed');
      assert.deepEqual(placed, [{ rel: 'f.cbf', size: 1 << 20 }], 'placed once, whole');
      assert.ok(readFileSync(path.join(final, 'f.cbf')).equals(files.f));
      await eventually(() => agent.requests.acked.includes('f'), 10_000, 'acknowledged');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });

  it('takes what is announced during a run, but in a drain run only what was learned before the shift change (A5)', async () => {
    const files = { a: randomBytes(100_000), b: randomBytes(100_000), c: randomBytes(100_000), d: randomBytes(100_000) };
    const agent = await slowAgent(files, (id) => { if (id === 'a') setTimeout(() => agent.announce('b'), 100); });
    const { t, ctx, placed, store } = world(agent.port);
    try {
      await t.run(ctx); // connects
      agent.announce('a');
      await new Promise((r) => setTimeout(r, 100));
      await t.run(ctx);
      assert.deepEqual(placed.map((p) => p.rel).sort(), ['a.cbf', 'b.cbf'], 'b, announced while a was fetched, taken by the same run');
      // d is announced, then a shift change is asked for: c, announced after it, is not the old shift's; d,
      // announced once more after it (a rescan of the agent), still is.
      agent.announce('d');
      await new Promise((r) => setTimeout(r, 100));
      const heldAt = performance.now();
      agent.announce('c');
      agent.announce('d');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(t.pendingSince(heldAt), true, 'd is owed to the old shift');
      await t.run({ ...ctx, learnedBy: heldAt } as RunContext);
      assert.deepEqual(placed.map((p) => p.rel).sort(), ['a.cbf', 'b.cbf', 'd.cbf'], 'the drain run takes d and leaves c for the next shift');
      assert.equal(t.pendingSince(heldAt), false, 'and does not wait for c');
      await t.run(ctx);
      assert.deepEqual(placed.map((p) => p.rel).sort(), ['a.cbf', 'b.cbf', 'c.cbf', 'd.cbf'], 'the next shift takes c');
    } finally {
      await t.close();
      store.close();
      await agent.close();
    }
  });
});

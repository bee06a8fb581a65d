// furka-agent and furkad share a key (A1, A4): the peer address alone let every local user of an allowed host
// (the PPU is multi-user) read every image and have the agent delete files never delivered.
import { strict as assert } from 'node:assert';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { Ppu, FURKAD_BIN, launchOf, iniText, tempDir, type PpuOptions } from '../fixtures/ppu.js';
import { AgentClient, agentKeyFile, startAgent } from '../fixtures/agent.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';
import { startProcess } from '../fixtures/processes.js';

type Row = [string, string, string];

describe('furka-agent and furkad share a key (A1, A4)', function () {
  this.timeout(120_000);
  const opts: PpuOptions = { prefix: 'ppu-key', transport: 'agent' };
  let ppu: Ppu;
  /** furkad's copy of the agent's key (its agent_key_file), wrong at first. */
  let furkadKey: string;
  let agentKey: string;
  before(async () => {
    ppu = new Ppu(opts);
    const agentDir = path.join(ppu.work, 'agent-1MF');
    mkdirSync(agentDir, { recursive: true });
    agentKey = agentKeyFile(agentDir).key;
    furkadKey = path.join(ppu.work, 'furkad-agent.key');
    writeFileSync(furkadKey, `${'0'.repeat(64)}\n`, { mode: 0o600 });
    opts.detectorConf = { '1MF': { agent_key_file: furkadKey } };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  const row = async (): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;

  it('answers 401 and nothing else to a client without the key or with a wrong one (events, a body, an acknowledgement): the file stays and is delivered once furkad has the key (A1, A4)', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const image = writeImage(detector, 'run/img_001.cbf', 300_000);
    const agent = ppu.agents['1MF']!;
    // furkad with a wrong key: retrying, with a reason that names the key, not the allow list; nothing delivered.
    await eventually(async () => { const r = await row(); return r[1] === 'retrying' && /key/.test(r[2]); }, 30_000, 'furkad to say its key is refused');
    const [, , reason] = await row();
    assert.match(reason, /did not prove it holds furkad's key/);
    assert.match(reason, new RegExp(`${furkadKey.replace(/[.]/g, '\\.')} \\(agent_key_file\\) does not match`));
    assert.doesNotMatch(reason, /allow/, 'not an allow-list hint');

    // The agent's own key reads the id, as a rogue client on the PPU can learn it (or guess it).
    const keyed = new AgentClient(agent);
    const events = keyed.events('/');
    await events.waitFor((ev) => ev.some((e) => e.t === 'file' && e.path === 'run/img_001.cbf'), 'the announcement');
    const id = events.files('run/img_001.cbf')[0]!.id!;
    keyed.close();

    for (const key of [null, 'f'.repeat(64), `${agentKey}x`]) {
      const rogue = new AgentClient(agent, { key });
      try {
        const ev = rogue.events('/');
        await eventually(() => ev.ended, 10_000, 'the refused events stream to end');
        assert.equal(ev.status, 401, `events with key ${String(key)}`);
        assert.deepEqual(ev.events.filter((e) => e.t !== undefined && e.t !== ''), [], 'no announcement');
        const body = await rogue.file(id, 'run/img_001.cbf');
        assert.equal(body.status, 401, `a body with key ${String(key)}`);
        assert.ok(body.body.length < 1000, 'no image bytes');
        assert.deepEqual(rogue.pushed, [], 'nothing pushed');
        const ack = await rogue.ack([id], ['run/img_001.cbf']);
        assert.equal(ack.status, 401, `an acknowledgement with key ${String(key)}`);
        assert.equal((ack.body as unknown as { deleted?: unknown }).deleted, undefined, 'nothing deleted');
      } finally {
        rogue.close();
      }
      assert.ok(existsSync(path.join(detector, image.rel)), `the file is still on the detector after a client with key ${String(key)}`);
    }
    // Logged once per peer, with its address (the keyless client came first; furkad, whose key does not match,
    // sent no request needing it: the agent did not answer its challenge with a proof of furkad's key).
    await agent.proc.said(/"peer":"127\.0\.0\.1".*without a key: refused \(401\)/);
    assert.equal(agent.proc.output().match(/refused \(401\)/g)?.length, 1, 'one line for the peer, whatever its requests');
    assert.equal(existsSync(path.join(ppu.ppuRamdisk, '1mf', '1000_1000', image.rel)), false, 'furkad with the wrong key delivered nothing');

    // The right key copied in: taken at furkad's next try, without a restart.
    writeFileSync(furkadKey, `${agentKey}\n`, { mode: 0o600 });
    const placed = path.join(ppu.ppuRamdisk, '1mf', '1000_1000', image.rel);
    const stored = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', image.rel);
    await eventually(() => existsSync(placed) || existsSync(stored), 30_000, 'the file delivered once furkad has the key');
    assert.equal(sha256File(readFileSync(existsSync(stored) ? stored : placed)), image.sha256);
    await eventually(() => !existsSync(path.join(detector, image.rel)), 20_000, 'the source deleted on furkad\'s acknowledgement');
    await eventually(async () => (await row())[1] === 'idle', 20_000, 'the detector idle again');
  });

  it('closes connections that send no request with the key, the oldest beyond 256 at once, the rest after 10 s: a local user cannot use up its descriptors, and furkad delivers meanwhile (A1)', async () => {
    // A local user of the PPU opened idle connections until the agent ran out of descriptors; the next file event
    // ended it (found by a hostile tester). furkad has the key (as at the end of the case above).
    writeFileSync(furkadKey, `${agentKey}\n`, { mode: 0o600 });
    const agent = ppu.agents['1MF']!;
    const detector = ppu.detectorRamdisks['1MF']!;
    const idle = await Promise.all(Array.from({ length: 300 }, () => new Promise<{ closed: boolean }>((resolve, reject) => {
      const state = { closed: false };
      const socket = net.connect(agent.port, '127.0.0.1', () => resolve(state));
      socket.on('error', reject);
      socket.on('close', () => { state.closed = true; });
      socket.resume();
      sockets.push(socket);
    })));
    await eventually(() => idle.filter((c) => !c.closed).length <= 256, 5000, 'at most 256 connections without the key left open');
    await agent.proc.said(/closed the oldest of too many connections waiting to send a request with the key/);
    const image = writeImage(detector, 'crowd/img_001.cbf', 100_000);
    const placed = path.join(ppu.ppuRamdisk, '1mf', '1000_1000', image.rel);
    const stored = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', image.rel);
    await eventually(() => existsSync(placed) || existsSync(stored), 20_000, 'a file delivered by furkad, whose keyed connection stays');
    await eventually(() => idle.every((c) => c.closed), 20_000, 'the connections without the key closed after 10 s');
    await agent.proc.said(/closed a connection that sent no request with the key within 10 s/);
  });
  it("sends its key to nothing on the agent's port: a program that took the port while the agent was down learns nothing and feeds furkad nothing (A1)", async () => {
    // Any local user of the detector server can bind the agent's port (49372) while the agent is down (restarted,
    // upgraded): furkad sent it the key in clear at its next connection (found by a hostile tester).
    writeFileSync(furkadKey, `${agentKey}\n`, { mode: 0o600 });
    const agent = ppu.agents['1MF']!;
    await ppu.killAgent('1MF');
    const heard: string[] = [];
    const squatter = http2.createServer();
    const open: http2.ServerHttp2Session[] = [];
    squatter.on('session', (session) => open.push(session));
    squatter.on('stream', (stream, headers) => {
      heard.push(JSON.stringify(headers));
      stream.on('error', () => undefined);
      const url = new URL(String(headers[':path']), 'http://x');
      if (url.pathname === '/v1/hello') {
        // As an agent would answer, but with a proof it cannot make without the key.
        stream.respond({ ':status': 200, 'content-type': 'application/json' });
        stream.end(JSON.stringify({ t: 'hello', agent: 'furka-agent', protocol: 3, nonce: 'a'.repeat(64), proof: 'b'.repeat(64) }));
      } else {
        stream.respond({ ':status': 200 });
        stream.write(`${JSON.stringify({ t: 'hello', agent: 'furka-agent', protocol: 3, root: '/ramdisk', source: '/' })}\n`);
        stream.write(`${JSON.stringify({ t: 'file', id: '1:6:1', path: 'forged.cbf', size: 6, mtime_ns: '1', mode: 0o644 })}\n`);
      }
    });
    await new Promise<void>((resolve) => squatter.listen(agent.port, '127.0.0.1', resolve));
    try {
      await eventually(async () => /did not prove it holds furkad's key/.test((await row())[2]), 30_000, 'furkad to say the peer did not prove the key');
      assert.ok(heard.length > 0, 'furkad did connect to the squatter');
      assert.ok(heard.every((h) => !h.includes(agentKey)), `the key sent to the squatter: ${heard.join('\n')}`);
      assert.ok(heard.every((h) => JSON.parse(h)[':path'].startsWith('/v1/hello?nonce=')), `only the challenge asked of it: ${heard.join('\n')}`);
      assert.equal(existsSync(path.join(ppu.ppuRamdisk, '1mf', '1000_1000', 'forged.cbf')), false, 'nothing taken from it');
    } finally {
      for (const session of open) session.destroy();
      await new Promise((resolve) => squatter.close(resolve));
    }
    // The real agent back on its port: furkad proves its key to it and delivers.
    await ppu.startAgent('1MF');
    const image = writeImage(ppu.detectorRamdisks['1MF']!, 'after/img_001.cbf', 50_000);
    const placed = path.join(ppu.ppuRamdisk, '1mf', '1000_1000', image.rel);
    const stored = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', image.rel);
    await eventually(() => existsSync(placed) || existsSync(stored), 30_000, 'a file delivered once the agent is back');
  });

  it('answers a path that is no URL (//[) with 401 without the key and 400 with it, and goes on: it ended the agent (A1)', async () => {
    const agent = ppu.agents['1MF']!;
    const status = (auth: Record<string, string>): Promise<number> => new Promise((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${agent.port}`);
      session.on('error', reject);
      const req = session.request({ ':method': 'GET', ':path': '//[', ...auth });
      req.on('response', (h) => { resolve(Number(h[':status'])); session.close(); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(await status({}), 401);
    assert.equal(await status({ authorization: `Bearer ${agentKey}` }), 400);
    assert.equal(agent.proc.child.exitCode, null, 'the agent still runs');
  });

  const sockets: net.Socket[] = [];
  afterEach(() => { for (const s of sockets.splice(0)) s.destroy(); });
});

describe('key files only root may read (A1)', function () {
  this.timeout(60_000);
  let work: string;
  before(() => { work = tempDir('agent-key-file'); });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('the agent refuses to start (exit 78, naming key_file) with a key file others may read, or none', async () => {
    const root = path.join(work, 'root');
    mkdirSync(root, { recursive: true });
    const open = path.join(work, 'open');
    mkdirSync(open);
    const { keyFile } = agentKeyFile(open);
    chmodSync(keyFile, 0o644);
    await assert.rejects(startAgent({ root, dir: open }), (e: Error) => {
      assert.match(e.message, /exited with 78/);
      assert.match(e.message, /key 'key_file': .*furka-agent\.key is open to group or others \(mode 0644\).*chmod 0600/);
      return true;
    });
    const missing = path.join(work, 'missing');
    mkdirSync(missing);
    await assert.rejects(startAgent({ root, dir: missing, extra: { key_file: path.join(missing, 'none.key') } }), (e: Error) => {
      assert.match(e.message, /exited with 78/);
      assert.match(e.message, /key 'key_file': .*none\.key does not exist/);
      return true;
    });
  });

  it('furkad --check refuses a key file others may read (exit 78, naming agent_key_file); at start only that detector waits for it, an rsync detector beside it delivers (A1, F1)', async () => {
    const keyFile = path.join(work, 'ppu.key');
    writeFileSync(keyFile, `${'a'.repeat(64)}\n`, { mode: 0o640 });
    chmodSync(keyFile, 0o640);
    const conf = path.join(work, 'furkad.conf');
    writeFileSync(conf, iniText({ uid: 1000, gid: 1000, state_dir: path.join(work, 'state') },
      { 'detector.1MF': { transport: 'agent', remoteIP: '127.0.0.1', target: `${work}/ppu/./1mf`, agent_key_file: keyFile } }));
    const launch = launchOf(FURKAD_BIN);
    const check = startProcess(process.execPath, [...launch.args, '--check', '--config', conf], { env: { ...process.env, ...launch.env } });
    assert.equal(await check.exited, 78, check.output());
    assert.match(check.output(), /section \[detector\.1MF\], key 'agent_key_file': .*ppu\.key is open to group or others \(mode 0640\)/);
    // A PPU upgraded before the key was copied (or with a key left open): its rsync detectors go on.
    const two = new Ppu({ prefix: 'ppu-key-two', detectors: ['1MF', '2MF'], transport: { '1MF': 'agent', '2MF': 'rsync' },
      detectorConf: { '1MF': { agent_key_file: keyFile } } });
    await two.start();
    try {
      await two.startShift(4400, 4401, []);
      const f = writeImage(two.detectorRamdisks['2MF']!, 'r/a.cbf', 2000);
      await eventually(() => existsSync(path.join(two.ppuRamdisk, '2mf/4400_4401/r/a.cbf')), 30_000, 'the rsync detector delivers');
      assert.equal(sha256File(readFileSync(path.join(two.ppuRamdisk, '2mf/4400_4401/r/a.cbf'))), f.sha256);
      const rows = await two.furkaProperty<Row[]>('Detectors');
      const one = rows.find((r) => r[0] === '1MF')!;
      await eventually(async () => { const r = (await two.furkaProperty<Row[]>('Detectors')).find((x) => x[0] === '1MF')!; return r[1] === 'retrying' && /^agent_key_file: \S+ppu\.key is open to group or others/.test(r[2]); },
        30_000, `the agent detector retrying, naming its key file (was ${String(one)})`);
      await two.furkad!.proc.said(/key or password file not usable/);
      writeImage(two.detectorRamdisks['1MF']!, 'r/b.cbf', 2000);
      assert.ok(!existsSync(path.join(two.ppuRamdisk, '1mf/4400_4401/r/b.cbf')), 'nothing fetched without a usable key');
    } finally {
      await two.stop();
    }
  });
});

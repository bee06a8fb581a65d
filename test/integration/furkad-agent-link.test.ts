// furkad and the link to a detector's furka-agent: an agent that cannot be reached, that stops answering, or a
// detector's remoteIP and port that reach something else. Each is shown in Detectors for what it is, from the
// moment it is known, and none stops furkad (F10, F1, S7, A1).
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { startAgent, type Agent } from '../fixtures/agent.js';
import { startRsyncDaemon, type RsyncDaemon } from '../fixtures/rsync-daemon.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { HeldRelay } from '../fixtures/held-relay.js';
import { markFixture, type Managed } from '../fixtures/processes.js';

type Row = [string, string, string, bigint, bigint, bigint];
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const shown = (rows: unknown): string => JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));

async function row(ppu: Ppu, id: string): Promise<Row> {
  const found = (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id);
  assert.ok(found, `a Detectors row for ${id}`);
  return found;
}

/** Waits until `proc` logs `pattern` after the first `from` characters of its output. */
async function saidAfter(proc: Managed, from: number, pattern: RegExp, timeoutMs: number): Promise<void> {
  await eventually(() => pattern.test(proc.output().slice(from)), timeoutMs, `${String(pattern)} in the log`)
    .catch((e: Error) => { throw new Error(`${e.message}; the log ends:\n${proc.output().slice(-4000)}`); });
}

/** Sockets of this host still connecting (SYN_SENT) to 127.0.0.1:`port`. */
function connecting(port: number): number {
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .filter((l) => { const f = l.trim().split(/\s+/); return f[2] === remote && f[3] === '02'; }).length;
}

describe('furkad and an agent it cannot reach, or that stops answering (F10, F1, S7)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let relay: HeldRelay;
  let work: string;
  let agent: Agent;
  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'agent-link-'));
    const upstream = path.join(work, 'upstream-port');
    writeFileSync(upstream, '0');
    // furkad reaches the agent through the relay, held from the start: SYNs to it are dropped (no connection).
    relay = await HeldRelay.start(upstream);
    await relay.hold();
    ppu = new Ppu({ prefix: 'ppu-agent-link', transport: 'agent', detectorConf: { '1MF': { port: relay.port } }, testPeers: ['1MF'] });
    await ppu.start();
    agent = await ppu.startAgent('1MF');
    writeFileSync(upstream, String(agent.port));
  });
  const delivered = (rel: string): boolean => listFiles(path.join(ppu.ppuRamdisk, '1mf')).some((p) => p.endsWith(`/${rel}`));
  after(async () => {
    await ppu?.stop();
    await relay?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a connection attempt given up at its timeout whose SYN gets through later neither stops furkad nor stays open; the outage shows as such (F10, F1)', async () => {
    const furkad = ppu.furkad!.proc;
    await saidAfter(furkad, 0, /detector unreachable or failing.*no answer from the agent/, 60_000);
    const during = await row(ppu, '1MF');
    // The link comes back: the kernel's next SYN of each attempt still connecting gets through. The attempt
    // given up at its timeout must be gone by then (its SYN would connect a session furkad destroyed).
    relay.release();
    await eventually(() => connecting(relay.port) === 0, 60_000, 'no connection attempt of furkad still connecting to the agent');
    const f = writeImage(ppu.detectorRamdisks['1MF']!, 'back/after.cbf', 10_000);
    await eventually(() => delivered(f.rel) || furkad.child.exitCode !== null, 60_000, 'the file delivered once the agent is reachable');
    assert.equal(furkad.child.exitCode, null, `furkad is still running:\n${furkad.output().slice(-3000)}`);
    assert.ok(delivered(f.rel), 'delivered');
    assert.doesNotMatch(furkad.output(), /ERR_HTTP2_INVALID_SESSION/);
    // What Detectors said while the agent could not be reached.
    assert.equal(during[1], 'retrying', shown(during));
    assert.match(during[2], /no answer from the agent at http:\/\/127\.0\.0\.1:\d+ within 10 s: no connection could be made \(the detector server is off, or the link to it is down\)/);
    assert.doesNotMatch(during[2], /allow/, 'not blamed on the agent\'s allow list');
    await eventually(async () => { const r = await row(ppu, '1MF'); return r[1] !== 'retrying' && r[2] === ''; }, 20_000, 'the detector no longer retrying');
  });

  it('an agent that stops answering shows as retrying with the reason from the moment the connection is lost, also while reconnecting, never idle (S7)', async () => {
    const furkad = ppu.furkad!.proc;
    await eventually(async () => { const r = await row(ppu, '1MF'); return r[1] !== 'retrying' && r[2] === ''; }, 30_000, 'connected');
    const mark = furkad.output().length;
    agent.proc.kill('SIGSTOP');
    try {
      await saidAfter(furkad, mark, /connection to the agent lost; reconnecting/, 30_000);
      const lost = await row(ppu, '1MF');
      assert.equal(lost[1], 'retrying', `at the moment the connection is lost: ${shown(lost)}`);
      assert.match(lost[2], /the agent at http:\/\/127\.0\.0\.1:\d+ stopped answering/);
      // Until the attempt to reconnect has failed at its timeout: never idle, never without the reason.
      const seen = new Set<string>();
      let failed = false;
      const failure = saidAfter(furkad, mark, /detector unreachable or failing.*nothing answered on it/, 60_000).finally(() => { failed = true; });
      while (!failed) {
        const r = await row(ppu, '1MF');
        seen.add(`${r[1]} ${r[2]}`);
        await pause(100);
      }
      await failure;
      assert.deepEqual([...seen].filter((s) => /^idle|^transferring|^\S+ $/.test(s)), [], `never idle nor without a reason: ${[...seen].join(' | ')}`);
      const r = await row(ppu, '1MF');
      assert.equal(r[1], 'retrying');
      assert.match(r[2], /within 10 s: the connection was made but nothing answered on it \(the agent is stopped or hung, or the link went down\)/);
      assert.doesNotMatch(r[2], /allow/);
    } finally {
      agent.proc.kill('SIGCONT');
    }
    const f = writeImage(ppu.detectorRamdisks['1MF']!, 'back/after-stop.cbf', 10_000);
    await eventually(() => delivered(f.rel), 60_000, 'the file delivered once the agent answers again');
  });
});

describe('furkad shows each wrong peer at a detector\'s remoteIP and port for what it is (A1, S7)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let work: string;
  let rsyncd: RsyncDaemon;
  let refusing: Agent;
  const servers: net.Server[] = [];
  const listen = async (server: net.Server): Promise<number> => {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  };
  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'agent-peers-'));
    rsyncd = await startRsyncDaemon(work, work);
    markFixture(rsyncd.proc);
    refusing = await startAgent({ root: work, dir: work, allow: '10.9.8.7' });
    markFixture(refusing.proc);
    const http1 = await listen(http.createServer((_req, res) => res.end('hello')));
    const ssh = await listen(net.createServer((s) => { s.on('error', () => undefined); s.write('SSH-2.0-OpenSSH_9.0\r\n'); }));
    const silent = await listen(net.createServer((s) => { s.on('error', () => undefined); }));
    const noise = await listen(net.createServer((s) => { s.on('error', () => undefined); s.write(Buffer.from('\x8f\x01\x7e\x00\xffgarbage\x02\x03'.repeat(8), 'latin1')); }));
    const ports: Record<string, number> = { HTTP1: http1, SSH: ssh, RSYNCD: rsyncd.port, SILENT: silent, NOISE: noise, REFUSING: refusing.port };
    ppu = new Ppu({
      prefix: 'ppu-agent-peers', transport: 'agent', detectors: Object.keys(ports),
      detectorConf: Object.fromEntries(Object.entries(ports).map(([id, port]) => [id, { port }])), testPeers: Object.keys(ports),
    });
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
    await rsyncd?.stop();
    await refusing?.stop();
    for (const s of servers) s.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('an HTTP/1 server, an SSH server, an rsync daemon, something that sends noise, a listener that never answers and an agent that refuses this PPU each get their own reason; only the last is blamed on allow', async () => {
    const expected: Record<string, RegExp> = {
      HTTP1: /not an HTTP\/2 server, so not a furka-agent: an HTTP\/1 server \(it answers 'HTTP\/1\.1 400 Bad Request'\); is port \(or remoteIP\) the furka-agent's\?/,
      SSH: /not an HTTP\/2 server, so not a furka-agent: an SSH server \(it greets with 'SSH-2\.0-OpenSSH_9\.0'\)/,
      RSYNCD: /not an HTTP\/2 server, so not a furka-agent: an rsync daemon \(it greets with '@RSYNCD: \d+[^']*'\): to pull from it set transport = rsync/,
      NOISE: /not an HTTP\/2 server, so not a furka-agent: something that sends '\\x8f\\x01~\\x00\\xffgarbage/,
      SILENT: /within 10 s: the connection was made but nothing answered on it \(the agent is stopped or hung, or the link went down\)/,
      REFUSING: /closed it unanswered: is this PPU's address in the agent's 'allow'\?/,
    };
    let rows: Row[] = [];
    const wrong = (): string[] => Object.entries(expected).filter(([id, re]) => {
      const r = rows.find((x) => x[0] === id);
      return !r || r[1] !== 'retrying' || !re.test(r[2]);
    }).map(([id]) => id);
    await eventually(async () => {
      rows = await ppu.furkaProperty<Row[]>('Detectors');
      return wrong().length === 0;
    }, 120_000, 'each detector retrying with its own reason').catch((e: Error) => { throw new Error(`${e.message}: ${wrong().join(', ')} in ${shown(rows)}`); });
    for (const r of rows.filter((x) => x[0] !== 'REFUSING')) assert.doesNotMatch(r[2], /allow/, `${r[0]}: ${r[2]}`);
  });
});

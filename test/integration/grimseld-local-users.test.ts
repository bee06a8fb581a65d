// One local user (nobody, through setpriv) against grimseld's TCP ports as any shell on the PPU can reach them:
// refused connections say why and the Python clients raise that reason (G9, G10, G11), a status flood is answered
// at a bounded rate while copies go on (G9), the metrics port is bounded like the others and descriptors running
// out never end grimseld (G12, G13, S1).
import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { get } from 'node:http';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, collectMessages } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { LineClient, grimselTcpPorts } from '../fixtures/line-client.js';
import { freePort } from '../fixtures/net.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const PYTHON_DIR = path.resolve(__dirname, '../../../python');

/** Runs `code` as user nobody (node -e, or python3 -c) and returns its stdout. */
function asNobody(lang: 'node' | 'python', code: string, timeoutMs = 120_000): Promise<string> {
  const cmd = lang === 'node' ? [process.execPath, '-e', code] : ['/usr/bin/python3', '-c', code];
  return new Promise((resolve, reject) => execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...cmd],
    { timeout: timeoutMs, env: { ...process.env, PYTHONPATH: PYTHON_DIR } },
    (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout))));
}

function fetchStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => get(url, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject));
}

describe('a local user against grimseld\'s ports (G9, G10, G11, G12, S1)', function () {
  this.timeout(240_000);
  let ppu: Ppu;
  let ports: { status: number; message: number };
  let metricsPort: number;
  let storageMount: string;

  before(async () => {
    metricsPort = await freePort();
    ppu = new Ppu({ prefix: 'ppu-local-users', grimseld: { metrics_address: '127.0.0.1', metrics_port: metricsPort } });
    storageMount = mountTmpfs(path.join(ppu.work, 'mnt'), 64 * 1024 * 1024);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(storageMount, 'internal'), mountpoint: storageMount, n_copy_processes: 4 },
    };
    await ppu.start();
    ports = await grimselTcpPorts(ppu.client);
    await ppu.startShift(720, 721, []);
  });
  after(async () => {
    await ppu?.stop();
    unmountAll();
  });

  it('tells a client refused for the 8-per-user limit why, and the Python clients raise that reason (G9, G10, G11)', async () => {
    const out = await asNobody('python', `
import socket, time
from ppu.grimsel import DQueryStatusClient as Q, DAbstractMessageClient as M
held = [socket.create_connection(('127.0.0.1', p)) for p in (${ports.status}, ${ports.message}) for _ in range(8)]
time.sleep(0.5)
try:
    print('status answered', Q.DQueryStatusClient('127.0.0.1', ${ports.status}).queryStatus(1))
except Q.StatusError as e:
    print('StatusError:', e)
class C(M.DAbstractMessageClient):
    def processMessage(self, *a): pass
try:
    C('127.0.0.1', ${ports.message}, 0).connect(); print('connect returned')
except M.SubscriptionRefused as e:
    print('SubscriptionRefused:', e)
`);
    assert.match(out, /^StatusError: refused: uid 65534 has 8 status connections open already, the most one local user may hold; close one first$/m, out);
    assert.match(out, /^SubscriptionRefused: grimseld at 127\.0\.0\.1:\d+: refused: uid 65534 has 8 message connections open already/m, out);
  });

  it('answers a flood of pipelined queries at a bounded rate per user, while files are copied and others are answered (G9)', async () => {
    // 8 connections (the most a user may hold) each pipelining 10 QUERY -1 and reading the answers: 80 answers at
    // 20 at once, then 10 a second, cannot all come in less than 6 s (a loaded machine is only slower).
    const flood = asNobody('node', `
      const net = require('net'); const times = [];
      for (let c = 0; c < 8; c++) {
        const s = net.connect(${ports.status}, '127.0.0.1', () => s.write('QUERY -1\\n'.repeat(10)));
        let buf = '';
        s.on('data', (d) => { buf += d; let nl; while ((nl = buf.indexOf('\\n')) >= 0) { buf = buf.slice(nl + 1); times.push(Date.now()); } });
      }
      const t = setInterval(() => { if (times.length >= 80) { clearInterval(t); console.log(JSON.stringify({ n: times.length, ms: times[times.length - 1] - times[0] })); process.exit(0); } }, 20);
    `);
    // Meanwhile: files are copied, and another user's (here root's) query is answered before the flood is through.
    let floodDone = false;
    void flood.then(() => { floodDone = true; }, () => { floodDone = true; });
    const root = await LineClient.connect(ports.status);
    try {
      assert.ok(Array.isArray(await root.request('QUERY 1')), 'root answered');
      assert.equal(floodDone, false, 'root answered while the flood still waits its turn');
    } finally {
      root.close();
    }
    for (let i = 0; i < 20; i++) writeImage(ppu.detectorRamdisks['1MF']!, `flood/img${i}.cbf`, 10_000);
    await eventually(() => listFiles(path.join(storageMount, 'internal')).filter((f) => f.includes('flood/')).length === 20, 60_000,
      'the 20 files copied during the flood');
    const { n, ms } = JSON.parse(await flood) as { n: number; ms: number };
    assert.equal(n, 80);
    assert.ok(ms >= 5000, `80 pipelined answers to one user took ${ms} ms: not held to 20 at once, then 10 a second`);
  });

  it('holds a user\'s metrics connections to 8, refusing the rest with a 503 that says why, and still serves a scrape (G12, S1)', async () => {
    const out = await asNobody('node', `
      const net = require('net'); let open = 0, closed = 0, told = '';
      for (let i = 0; i < 300; i++) {
        const s = net.connect(${metricsPort}, '127.0.0.1', () => open++);
        s.on('data', (d) => { if (!told) told = String(d); }); s.on('error', () => {}); s.on('close', () => closed++);
      }
      const t = Date.now();
      setInterval(() => { if (closed >= 292 || Date.now() - t > 30000) setTimeout(() => { console.log(JSON.stringify({ open, closed, told })); process.exit(0); }, 1000); }, 100);
    `);
    const r = JSON.parse(out) as { open: number; closed: number; told: string };
    assert.equal(r.closed, 292, `of 300 idle connections, all but the 8 a user may hold were closed: ${out}`);
    assert.match(r.told, /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*refused: uid 65534 has 8 metrics connections open already/, out);
    assert.equal(await fetchStatus(`http://127.0.0.1:${metricsPort}/metrics`), 200, 'root still scrapes');
  });

  it('outlives running out of file descriptors: copies wait, the mount check says it cannot tell, and they resume (G12, G13, S1)', async () => {
    const pid = ppu.grimseld!.proc.child.pid!;
    const soft = execFileSync('prlimit', [`--pid=${pid}`, '--nofile', '--output=SOFT', '--noheadings']).toString().trim();
    const msgs = await collectMessages(ppu);
    try {
      // The lowest descriptor number not in use: as the limit, every open grimseld tries from now fails with EMFILE.
      const used = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
      let free = 0;
      while (used.has(free)) free++;
      // The soft limit only: raising it back needs no privilege the test may lack.
      execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${free}:`]);
      for (let i = 0; i < 10; i++) writeImage(ppu.detectorRamdisks['1MF']!, `emfile/img${i}.cbf`, 5000);
      // Where it runs out first: the mount check of a copy (a COPY_ERROR saying it cannot tell), or the look at a
      // delivered file, which then takes nothing and refuses nothing: the delivery fails and furkad keeps the files.
      const handedOver = (): boolean => /cannot hand over to grimseld; keeping files until it answers.*EMFILE|EMFILE.*cannot hand over to grimseld/.test(ppu.furkad!.proc.output());
      await eventually(() => handedOver() || msgs.messages.some(([code, , long]) => code === 'COPY_ERROR' && /cannot be checked.*EMFILE/.test(long)), 60_000,
        `a COPY_ERROR saying the mount cannot be checked (EMFILE), or furkad keeping the files; messages: ${JSON.stringify(msgs.messages.slice(-3))}`);
      assert.ok(!msgs.messages.some(([code, , long]) => code === 'COPY_ERROR' && /refused|will not be made/.test(long)), 'no file refused for grimseld\'s own lack of descriptors');
      execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${soft}:`]);
      await eventually(() => listFiles(path.join(storageMount, 'internal')).filter((f) => f.includes('emfile/')).length === 10, 60_000,
        'the 10 files copied once descriptors are there again');
      assert.equal(ppu.grimseld!.proc.child.exitCode, null, `grimseld still runs:\n${ppu.grimseld!.proc.output().slice(-2000)}`);
    } finally {
      msgs.stop();
      try {
        execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${soft}:`]);
      } catch { /* gone */ }
    }
  });
});

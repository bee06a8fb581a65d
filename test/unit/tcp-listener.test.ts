// The daemons' TCP services (G9, G10, metrics) against a peer that opens connection after connection: beyond the
// bound each new one is told why and closed, and the ones already open are served on.
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { TcpListener } from '../../src/common/tcp-listener.js';
import { loopbackPeerUid } from '../../src/common/peer-owner.js';

describe('a TCP service of grimseld, bounded in connections (G9, G10)', () => {
  it('closes connections beyond its bound at once and keeps serving the others', async () => {
    const listener = new TcpListener('test', (s) => { s.on('data', (d) => s.write(d)); }, { maxConnections: 2, refusal: (why) => `no: ${why}\n` });
    const port = await listener.listen(0, '127.0.0.1');
    const open = (): Promise<Socket> => new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
    const closed = (s: Socket): Promise<void> => new Promise((resolve) => { if (s.destroyed) resolve(); else s.once('close', () => resolve()); });
    const echo = (s: Socket): Promise<string> => new Promise((resolve) => { s.once('data', (d) => resolve(String(d))); s.write('ping'); });
    try {
      const [a, b] = [await open(), await open()];
      await new Promise((r) => setTimeout(r, 50)); // both accepted
      const c = await open();
      c.on('error', () => undefined);
      let told = '';
      c.on('data', (d) => { told += String(d); });
      c.write('a request it sends before it reads');
      await closed(c);
      assert.equal(told, 'no: the test service has 2 connections open, its limit; try again later\n', 'the refused client is told why');
      assert.equal(listener.connections, 2);
      assert.deepEqual([await echo(a), await echo(b)], ['ping', 'ping'], 'the first two still served');
      a.destroy();
      b.destroy();
    } finally {
      await listener.close();
    }
  });

  it('holds each local user to a few connections, so one cannot lock the others out; root only to the bound (G9, G10)', async () => {
    const refused: string[] = [];
    const seen: Array<number | undefined> = [];
    const listener = new TcpListener('test', () => undefined, { maxConnections: 64, maxPerPeer: 3, refusal: (why) => `${why}\n`,
      onRefused: (peer) => refused.push(peer), uidOf: (socket) => { const uid = loopbackPeerUid(socket); seen.push(uid); return uid; } });
    const port = await listener.listen(0, '127.0.0.1');
    // nobody opens 5, reading, and holds them: how many did grimseld close, and what did it say?
    const script = `const net = require('net'); let closed = 0; const told = [];
      for (let i = 0; i < 5; i++) { const s = net.connect(${port}, '127.0.0.1'); s.on('close', () => closed++); s.on('error', () => {});
        s.on('data', (d) => told.push(String(d).trim())); }
      // Until two are closed and 500 ms more have passed (a third would be closed by then), or 10 s: a loaded
      // machine may take a while to refuse, and a fixed second was too short once.
      const start = Date.now(); let twoAt = 0;
      setInterval(() => { if (closed >= 2 && !twoAt) twoAt = Date.now();
        if ((twoAt && Date.now() - twoAt > 500) || Date.now() - start > 10000) { console.log(closed); console.log(JSON.stringify(told)); process.exit(0); } }, 20);`;
    try {
      const out = await new Promise<string>((resolve, reject) => execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
        (err, stdout) => (err ? reject(err) : resolve(stdout))));
      const [closedN, told] = out.trim().split('\n');
      assert.equal(closedN, '2', 'two beyond the three a user may hold');
      assert.deepEqual(JSON.parse(told!), Array(2).fill('uid 65534 has 3 test connections open already, the most one local user may hold; close one first'));
      assert.deepEqual(refused, ['uid 65534'], 'said once');
      assert.ok(seen.slice(0, 5).every((u) => u === 65534), `the peer's uid read from the kernel: ${JSON.stringify(seen)}`);
      // root (the operator's own scripts) is held to the service's bound alone.
      const mine = await Promise.all(Array.from({ length: 5 }, () => new Promise<Socket>((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', reject);
      })));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(listener.connections, 5, 'nobody\'s are gone with its process; root\'s five all held');
      for (const s of mine) s.destroy();
    } finally {
      await listener.close();
    }
  });
});

// grimseld's TCP services (G9, G10) against a peer that opens connection after connection: beyond the bound
// each new one is closed at once, and the ones already open are served on.
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { TcpListener } from '../../src/grimseld/tcp-listener.js';
import { loopbackPeerUid } from '../../src/grimseld/peer-owner.js';

describe('a TCP service of grimseld, bounded in connections (G9, G10)', () => {
  it('closes connections beyond its bound at once and keeps serving the others', async () => {
    const listener = new TcpListener('test', (s) => { s.on('data', (d) => s.write(d)); }, 2);
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
      await closed(c);
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
    const listener = new TcpListener('test', () => undefined, 64, 3, (peer) => refused.push(peer),
      (socket) => { const uid = loopbackPeerUid(socket); seen.push(uid); return uid; });
    const port = await listener.listen(0, '127.0.0.1');
    // nobody opens 5 and holds them for a second: how many did grimseld close?
    const script = `const net = require('net'); let closed = 0;
      for (let i = 0; i < 5; i++) { const s = net.connect(${port}, '127.0.0.1'); s.on('close', () => closed++); s.on('error', () => {}); }
      setTimeout(() => { console.log(closed); process.exit(0); }, 1000);`;
    try {
      const out = await new Promise<string>((resolve, reject) => execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
        (err, stdout) => (err ? reject(err) : resolve(stdout))));
      assert.equal(out.trim(), '2', 'two beyond the three a user may hold');
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

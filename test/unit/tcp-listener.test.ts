// grimseld's TCP services (G9, G10) against a peer that opens connection after connection: beyond the bound
// each new one is closed at once, and the ones already open are served on.
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { TcpListener } from '../../src/grimseld/tcp-listener.js';

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
});

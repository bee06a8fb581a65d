// furkad's agent client when the connection goes in the middle of a file: every fetch ends, one way or the other.
// Found by the soak: a fetch whose stream was closed while paused (its file behind on writes) never settled, and
// the detector's loop waited for it for ever, reconnecting only when furkad was restarted (F10, A3).
import { strict as assert } from 'node:assert';
import * as http2 from 'node:http2';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentClient } from '../../src/furkad/agent-client.js';
import { startAgent } from '../fixtures/agent.js';
import { writeImage } from '../fixtures/files.js';

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
        const client = new AgentClient(`http://127.0.0.1:${port}`, '/');
        await client.connect();
        const fetching = client.fetch('1', path.join(work, `f-${outcomes.length}`));
        await pause(ms);
        client.close();
        outcomes.push(await settledWithin(fetching, 3000));
      }
      assert.deepEqual(outcomes.filter((o) => o === 'pending'), [], `every fetch ended: ${outcomes.join('; ')}`);
      assert.deepEqual(outcomes.filter((o) => o.includes('"unchanged":true')), [], 'none taken for a whole file');
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
      const client = new AgentClient(`http://127.0.0.1:${agent.port}`, '/');
      const announced: string[] = [];
      client.on('file', (f) => announced.push(f.id));
      try {
        await client.connect();
        await pause(100);
        // Eight at a time, as furkad fetches; each fetch remembered until it ends.
        const open = new Set<string>();
        let next = 0;
        const worker = async (): Promise<void> => {
          for (let id = announced[next++]; id !== undefined; id = announced[next++]) {
            open.add(id);
            await client.fetch(id, path.join(staging, id.replace(/\W/g, '_'))).catch(() => undefined);
            open.delete(id);
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

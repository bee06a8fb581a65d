// furka-agent serves each source to one events client at a time (A3, A4): two PPUs holding the agent's key were
// each sent every file, and whichever acknowledged first had it deleted from under the other.
import { strict as assert } from 'node:assert';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { AgentClient, startAgent, type Agent, type EventsReader } from '../fixtures/agent.js';
import { tempDir } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';
import { markFixture } from '../fixtures/processes.js';
import { SilentProxy } from '../fixtures/silent-proxy.js';

interface Refusal {
  error: string;
  holder: { address: string; port: number; source: string; since: string };
}

describe('furka-agent serves each source to one events client at a time (A3, A4)', function () {
  this.timeout(60_000);
  let work: string;
  let root: string;
  let agent: Agent;
  let clients: AgentClient[] = [];
  let proxy: SilentProxy | undefined;
  before(async () => {
    work = tempDir('agent-holders');
    root = path.join(work, 'root');
    for (const d of ['a/sub', 'b', 'ab']) mkdirSync(path.join(root, d), { recursive: true });
    agent = await startAgent({ root, dir: work, allow: '127.0.0.1 127.0.0.2 ::1' });
    markFixture(agent.proc);
  });
  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await proxy?.close();
    proxy = undefined;
  });
  after(async () => {
    await agent?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const open = (o: { localAddress?: string } = {}, port = agent.port): AgentClient => {
    const c = new AgentClient({ port, key: agent.key }, o);
    clients.push(c);
    return c;
  };
  const synced = (ev: EventsReader, what: string): Promise<void> => ev.waitFor((e) => e.some((x) => x.t === 'synced'), `${what}: synced`, 20_000);

  it('refuses a second client asking for a source that overlaps a held one (409, naming the holder), from another address or the same; serves other sources, the holder\'s own connection and watchers; serves the next once the holder is gone', async () => {
    const first = open();
    const held = first.events('/a');
    await synced(held, 'the first client');
    const port = first.session.socket.localPort;
    for (const [o, source] of [[{ localAddress: '127.0.0.2' }, '/a'], [{}, '/a'], [{}, '/'], [{ localAddress: '127.0.0.2' }, '/a/sub']] as const) {
      const c = open(o);
      const ev = c.events(source);
      await eventually(() => ev.ended, 10_000, `the answer to ${source} from ${o.localAddress ?? '127.0.0.1'}`);
      assert.equal(ev.status, 409, `${source} from ${o.localAddress ?? '127.0.0.1'}`);
      const body = ev.events[0] as unknown as Refusal;
      assert.deepEqual(body.holder, { address: '127.0.0.1', port, source: '/a', since: body.holder.since });
      assert.match(body.error, new RegExp(`^source ${source} is held by another events client, 127\\.0\\.0\\.1 port ${port}`));
      assert.deepEqual(ev.files(), [], 'nothing announced to it');
      c.close();
    }
    await agent.proc.said(/"peer":"127\.0\.0\.2 port \d+".*asked for a source another one holds: refused \(409\)/);
    // A source that shares no file with it ('/ab' is not below '/a'): served to another client.
    const other = open({ localAddress: '127.0.0.2' });
    for (const source of ['/b', '/ab']) await synced(other.events(source), source);
    // Its own connection asking again is the same client; a client that only watches holds nothing.
    const again = first.events('/a');
    await synced(again, 'a second stream of the holder\'s connection');
    const watcher = open({ localAddress: '127.0.0.2' });
    const watching = watcher.events('/', undefined, { observe: true });
    await synced(watching, 'a watcher');
    writeFileSync(path.join(root, 'a', 'x.cbf'), 'x');
    await held.waitFor(() => held.files('x.cbf').length === 1, 'the file announced to the holder');
    await watching.waitFor(() => watching.files('a/x.cbf').length === 1, 'and to the watcher');
    // The holder goes: the next client is served, and is told of the file it left.
    first.close();
    const next = open({ localAddress: '127.0.0.2' }).events('/a');
    await synced(next, 'the client after the holder');
    assert.equal(next.status, 200);
    assert.equal(next.files('x.cbf').length, 1);
  });

  it('serves a new client in place of a holder whose connection no longer answers (a link that drops every packet, no FIN): that connection is closed', async () => {
    proxy = await SilentProxy.start(() => agent.port);
    const stale = open({}, proxy.port);
    const staleEvents = stale.events('/b');
    await synced(staleEvents, 'the client behind the proxy');
    // The link goes silent at the next bytes from the agent: a file's announcement.
    proxy.silenceAfter = 0;
    writeFileSync(path.join(root, 'b', 'y.cbf'), 'y');
    await eventually(() => proxy!.silenced === 1, 10_000, 'the link to the holder silent');
    const fresh = open().events('/b');
    await synced(fresh, 'the new client');
    assert.equal(fresh.status, 200);
    assert.equal(fresh.files('y.cbf').length, 1, 'the file announced to the new client');
    await agent.proc.said(/did not answer a ping within 3000 ms: its connection is taken as dead and closed/);
    assert.equal(staleEvents.files('y.cbf').length, 0, 'the silent link delivered nothing');
  });
  it('decides a claim of another source at once while a claim waits for a silent holder\'s ping (A3)', async () => {
    proxy = await SilentProxy.start(() => agent.port);
    const stale = open({}, proxy.port);
    await synced(stale.events('/ab'), 'the client behind the proxy');
    proxy.silenceAfter = 0;
    writeFileSync(path.join(root, 'ab', 'z.cbf'), 'z');
    await eventually(() => proxy!.silenced === 1, 10_000, 'the link to the holder silent');
    const order: string[] = [];
    const fresh = open().events('/ab'); // waits for the silent holder's ping (3 s)
    await agent.proc.said(/"source":"\/ab".*is that one still there/, 5_000);
    const other = open().events('/a'); // another source: nobody holds it
    await Promise.all([synced(fresh, 'the new client of /ab').then(() => order.push('/ab')),
      synced(other, 'the client of /a').then(() => order.push('/a'))]);
    assert.deepEqual(order, ['/a', '/ab'], 'the client of /a served before the ping of /ab\'s silent holder gave up, not after it');
    assert.equal(fresh.files('z.cbf').length, 1);
  });
});

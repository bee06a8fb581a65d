// Two PPUs (two furkads holding the agent's key) against one furka-agent: one is served, the other is refused
// and says by whom, and takes over once the first is gone; a furkad whose old connection died without a word
// is not locked out by it (A3, A4, F1, F10).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import type { SilentProxy } from '../fixtures/silent-proxy.js';
import { ppuBehindLink } from '../fixtures/agent-link.js';

type Row = [string, string, string, bigint, bigint, bigint];

async function row(ppu: Ppu): Promise<Row> {
  return (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === '1MF')!;
}

const placed = (ppu: Ppu, f: WrittenFile): string => path.join(ppu.ppuRamdisk, '1mf', '1000_1000', f.rel);

describe('two PPUs against one furka-agent (A4, F1)', function () {
  this.timeout(300_000);
  let first: Ppu;
  let second: Ppu | undefined;
  before(async () => {
    first = await new Ppu({ prefix: 'ppu-two-a', transport: 'agent' }).start();
  });
  after(async () => {
    await second?.stop();
    await first?.stop();
  });

  it('serves the detector to one furkad: the second shows the refusal naming the agent and the holder, gets no file, and takes over once the first stops', async () => {
    const agent = first.agents['1MF']!;
    const detector = first.detectorRamdisks['1MF']!;
    const warm = writeImage(detector, 'warm/w.cbf', 5000);
    await eventually(() => existsSync(placed(first, warm)), 20_000, 'the first PPU connected and delivering');
    // A second PPU configured with the same detector server and key (its own bus, grimseld and furkad).
    second = await new Ppu({
      prefix: 'ppu-two-b', transport: 'agent', testPeers: ['1MF'], detectorConf: { '1MF': { port: agent.port, agent_key_file: agent.keyFile } },
    }).start();
    const refused = new RegExp(`^the agent at http://127\\.0\\.0\\.1:${agent.port} serves '/' to another furkad, at 127\\.0\\.0\\.1 port \\d+: one PPU per detector source`);
    await eventually(async () => { const r = await row(second!); return r[1] === 'retrying' && refused.test(r[2]); }, 30_000, 'the second PPU to show the refusal')
      .catch(async (e: Error) => { throw new Error(`${e.message}: ${String(await row(second!))}`); });
    // The holder it names is the first furkad's connection (its local port, as the agent saw it).
    const port = Number(/ port (\d+):/.exec((await row(second))[2])![1]);
    await agent.proc.said(new RegExp(`"holder":"127\\.0\\.0\\.1 port ${port}".*refused \\(409\\)`));

    const files = Array.from({ length: 30 }, (_, i) => writeImage(detector, `run/img_${String(i).padStart(3, '0')}.cbf`, 50_000 + i));
    await eventually(() => files.every((f) => existsSync(placed(first, f))), 30_000, 'every file on the first PPU');
    await eventually(() => listFiles(detector).length === 0, 20_000, 'every source deleted once the first PPU placed it');
    for (const f of files) assert.equal(sha256File(readFileSync(placed(first, f))), f.sha256, f.rel);
    assert.deepEqual(listFiles(path.join(second.ppuRamdisk, '1mf')), [], 'nothing on the second PPU, not even in its staging');
    const r = await row(second);
    assert.equal(r[1], 'retrying', String(r));
    assert.equal(r[3], 0n, 'no file counted by the second PPU');

    // The first PPU's furkad stops: the second is served at its next try.
    await first.furkad!.stop();
    first.furkad = undefined;
    await eventually(async () => (await row(second!))[2] === '', 30_000, 'the second PPU connected');
    const after = writeImage(detector, 'run2/after.cbf', 5000);
    await eventually(() => existsSync(placed(second!, after)), 20_000, 'a file on the second PPU');
    assert.equal(sha256File(readFileSync(placed(second, after))), after.sha256);
    await eventually(() => listFiles(detector).length === 0, 20_000, 'its source deleted');
    assert.ok(!existsSync(placed(first, after)), 'not on the first PPU');
  });
});

describe('a furkad whose connection to the agent died without a word (A3, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let proxy: SilentProxy;
  before(async () => {
    // furkad reaches the agent through a link that can drop every packet (no FIN, no RST).
    ({ ppu, proxy } = await ppuBehindLink('ppu-two-silent'));
  });
  after(async () => {
    await ppu?.stop();
    await proxy?.close();
  });

  it('reconnects and is served although the agent still holds its old connection open: that one no longer answers, so it is closed', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const furkad = ppu.furkad!.proc;
    const agent = ppu.agents['1MF']!;
    const before = writeImage(detector, 'a/before.cbf', 5000);
    await eventually(() => existsSync(placed(ppu, before)), 30_000, 'furkad connected through the link');
    // The link drops everything from the agent's next bytes on: a file's announcement.
    proxy.silenceAfter = 0;
    const during = writeImage(detector, 'a/during.cbf', 5000);
    await eventually(() => proxy.silenced === 1, 20_000, 'the link silent');
    proxy.silenceAfter = undefined; // new connections pass; the silent one stays silent, both of its ends open
    await furkad.said(/connection to the agent lost; reconnecting/, 30_000);
    await eventually(() => existsSync(placed(ppu, during)), 30_000, 'the file delivered over the new connection');
    assert.equal(sha256File(readFileSync(placed(ppu, during))), during.sha256);
    await agent.proc.said(/did not answer a ping within 3000 ms: its connection is taken as dead and closed/);
    assert.doesNotMatch(furkad.output(), /to another furkad/, 'never refused for its own old connection');
    await eventually(() => listFiles(detector).length === 0, 20_000, 'its source deleted');
  });

  it('shows a file cut off mid-body by the dead link as the agent\'s silence, never as a bad body, and delivers it whole over the new connection (F10, A4)', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const furkad = ppu.furkad!.proc;
    const mark = furkad.output().length;
    const silencedBefore = proxy.silenced;
    // The link slows to at most 640 kB/s, so that the 4 MB body is on its way when the link goes silent.
    proxy.trickle = 64 * 1024;
    const big = writeImage(detector, 'b/big.cbf', 4 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 1500));
    proxy.silenceAfter = 0;
    await eventually(() => proxy.silenced > silencedBefore, 20_000, 'the link silent');
    proxy.silenceAfter = undefined; // new connections pass at full speed; the silent one stays silent
    proxy.trickle = undefined;
    assert.ok(!existsSync(placed(ppu, big)), 'the file was on its way when the link went silent');
    // What Detectors shows from the link's loss until the file is delivered.
    const seen = new Set<string>();
    await eventually(async () => {
      const r = (await ppu.furkaProperty<Array<[string, string, string]>>('Detectors')).find((x) => x[0] === '1MF')!;
      if (r[2] !== '') seen.add(r[2]);
      return existsSync(placed(ppu, big));
    }, 60_000, 'the file delivered over the new connection')
      .catch((e: Error) => { throw new Error(`${e.message}; shown: ${[...seen].join(' | ')}; furkad said:\n${furkad.output().slice(mark).slice(-6000)}`); });
    // Never "…was cut off: the body ended without the agent's trailers", as if the agent had sent a bad body (agent-client.test).
    const failing = furkad.output().slice(mark).split('\n').filter((l) => /detector unreachable or failing/.test(l));
    assert.deepEqual([...seen, ...failing].filter((w) => !/the agent at http:\/\/127\.0\.0\.1:\d+ stopped answering/.test(w) || /trailers/.test(w)), [],
      `every reason shown names the agent's silence: ${[...seen].join(' | ')}`);
    assert.ok(seen.size > 0, 'the outage was shown');
    assert.equal(sha256File(readFileSync(placed(ppu, big))), big.sha256);
  });
});

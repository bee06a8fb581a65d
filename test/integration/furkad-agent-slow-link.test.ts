// furkad and a furka-agent behind a link slower than the files come (A3, F10): the connection is kept while bytes
// arrive, and the files get through at the link's speed. Before 2026-12-06 a ping's answer, queued behind the
// bodies the agent had sent before it, came later than 5 s: furkad took the link for dead every 10 s, cut the body in
// flight and fetched it again, and almost nothing got through (hostile tester h13: 4 files a minute at 5 Mbit/s).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import type { SilentProxy } from '../fixtures/silent-proxy.js';
import { ppuBehindLink } from '../fixtures/agent-link.js';

const placed = (ppu: Ppu, f: WrittenFile): string => path.join(ppu.ppuRamdisk, '1mf', '1000_1000', f.rel);

describe('furkad and an agent behind a slow link (A3, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let proxy: SilentProxy;
  before(async () => {
    ({ ppu, proxy } = await ppuBehindLink('ppu-slow-link'));
  });
  after(async () => {
    await ppu?.stop();
    await proxy?.close();
  });

  it('keeps the connection while bodies trickle in behind a ping, and delivers every file once, whole', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const warm = writeImage(detector, 'warm/w.cbf', 5000);
    await eventually(() => existsSync(placed(ppu, warm)), 30_000, 'furkad connected through the link');
    const mark = ppu.furkad!.proc.output().length;
    // 320 kB/s from the agent: the 8 bodies it pushes ahead (4 MB) take 12 s, so a ping sent behind them waits as long.
    proxy.trickle = 32 * 1024;
    const files = Array.from({ length: 12 }, (_, i) => writeImage(detector, `run/img_${String(i).padStart(2, '0')}.cbf`, 512 * 1024 + i));
    await eventually(() => files.every((f) => existsSync(placed(ppu, f)) && readFileSync(placed(ppu, f)).length === f.size), 120_000, 'every file on the PPU at the link\'s speed')
      .catch((e: Error) => { throw new Error(`${e.message}; furkad said:\n${ppu.furkad!.proc.output().slice(mark).slice(-4000)}`); });
    proxy.trickle = undefined;
    for (const f of files) assert.equal(sha256File(readFileSync(placed(ppu, f))), f.sha256, f.rel);
    await eventually(() => listFiles(detector).length === 0, 30_000, 'every source deleted');
    const said = ppu.furkad!.proc.output().slice(mark);
    assert.doesNotMatch(said, /connection to the agent lost|was cut off/, `the slow connection was never taken for a dead one:\n${said.split('\n').filter((l) => /lost|cut off/.test(l)).join('\n')}`);
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf')).filter((f) => /\.~\d+~$/.test(f)), [], 'no file placed twice');
  });

  it('lets the agent stop at SIGTERM while its connection is silent with bodies queued on it, well before systemd would kill it', async () => {
    const detector = ppu.detectorRamdisks['1MF']!;
    const agent = ppu.agents['1MF']!;
    const warm = writeImage(detector, 'warm2/w.cbf', 5000);
    await eventually(() => existsSync(placed(ppu, warm)), 30_000, 'furkad connected through the link');
    // The link drops everything from now on, its ends open (no FIN, no RST): what the agent sends queues up.
    proxy.silenceAfter = 0;
    for (let i = 0; i < 6; i++) writeImage(detector, `stuck/img_${i}.cbf`, 4 << 20);
    await eventually(() => proxy.silenced > 0, 20_000, 'the link silent');
    await new Promise((r) => setTimeout(r, 2000)); // the agent's pushes queued behind the silent link
    // 8 s: the unit's TimeoutStopSec is 10. Before 2026-12-06 the stop waited for the link (hostile tester h13: 70 s).
    const code = await agent.proc.stop(8000, 'leader');
    assert.equal(code, 0, `furka-agent exited by itself, not killed:\n${agent.proc.output().slice(-2000)}`);
    proxy.release();
  });
});

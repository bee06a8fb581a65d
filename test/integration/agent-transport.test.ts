// furkad's agent transport against a real furka-agent, run by hand the way the detector loop runs it: a fetch
// that fails while the connection stays up (the PPU ramdisk full) leaves every untaken file waiting for the next
// run, never forgotten on the detector (A4, F10).
import { strict as assert } from 'node:assert';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { AgentTransport } from '../../src/furkad/agent-transport.js';
import { AgentPlaced } from '../../src/furkad/agent-placed.js';
import type { RunContext } from '../../src/furkad/transport.js';
import type { Logger } from '../../src/common/logger.js';
import { startAgent, type Agent } from '../fixtures/agent.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';
import { tempDir } from '../fixtures/ppu.js';
import { markFixture } from '../fixtures/processes.js';
import { eventually } from '../fixtures/files.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;

describe('agent transport with a real furka-agent (A4, F10)', function () {
  this.timeout(60_000);
  let work: string;
  let agent: Agent;
  let staging: string;
  before(async () => {
    work = tempDir('agent-transport');
    mkdirSync(path.join(work, 'root', 'run1'), { recursive: true });
    staging = mountTmpfs(path.join(work, 'staging'), 256 * 1024);
    agent = await startAgent({ root: path.join(work, 'root'), dir: work });
    markFixture(agent.proc);
  });
  after(async () => {
    await agent?.stop();
    unmount(staging);
    rmSync(work, { recursive: true, force: true });
  });

  it('keeps every file of a run whose fetch failed (a full ramdisk) and takes them once there is room', async () => {
    const placed: string[] = [];
    const t = new AgentTransport('D1', AgentPlaced.open(path.join(work, 'state')), quiet);
    const ctx = {
      assignment: { config: { remoteIP: '127.0.0.1', port: agent.port }, source: '/run1' },
      shift: { uid: 0, gid: 0 }, staging, signal: new AbortController().signal, wantsEnd: () => false,
      // The loop's part, reduced to what the agent needs: placed (here: taken out of staging), then acknowledged.
      complete: async (rels: string[]) => {
        for (const r of rels) rmSync(path.join(staging, r));
        placed.push(...rels);
        t.afterPlaced(rels);
        return { placed: rels, failed: [], gone: [] };
      },
    } as unknown as RunContext;
    try {
      await t.run(ctx); // connects
      const detector = path.join(work, 'root', 'run1');
      for (let i = 0; i < 12; i++) {
        writeFileSync(path.join(work, `.w${i}`), Buffer.alloc(100_000, i));
        renameSync(path.join(work, `.w${i}`), path.join(detector, `f${i}.cbf`));
      }
      await new Promise((r) => setTimeout(r, 500));
      writeFileSync(path.join(staging, 'ballast'), Buffer.alloc(150_000)); // grimseld away, the ramdisk nearly full
      const first = await t.run(ctx);
      assert.equal(first.verdict, 'retry', 'the full ramdisk is an outage of this run');
      assert.match(first.message, /ENOSPC/);
      rmSync(path.join(staging, 'ballast'));
      // 8 fetches in flight need more room than this small ramdisk has: each run takes some, none is dropped.
      for (let k = 0; k < 30 && placed.length < 12; k++) await t.run(ctx);
      assert.deepEqual(placed.sort(), Array.from({ length: 12 }, (_, i) => `f${i}.cbf`).sort(), `each file taken once; the agent (exit ${agent.proc.child.exitCode}, signal ${agent.proc.child.signalCode}) said:\n${agent.proc.output().slice(-2000)}`);
      await eventually(() => readdirSync(detector).length === 0, 10_000, 'every source acknowledged and deleted');
    } finally {
      await t.close();
    }
  });
});

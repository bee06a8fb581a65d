// A copy that fails while grimseld stops is still told to subscribers (G10). Before 2026-12-06 the bus and the
// message server were stopped before the storages: the COPY_ERROR of a copy of the last batch went nowhere, and the
// next start, finding the failure journaled, did not say it either (hostile tester h14: 13 of 27 never said).
import { strict as assert } from 'node:assert';
import { closeSync, mkdirSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { callMethod } from '../../src/dbus/bus.js';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';
import { grimselTcpPorts, LineClient } from '../fixtures/line-client.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';

/** The size of the largest temp file of a copy of f.bin below `dir` (being written), 0 if none. */
function largest(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true } as { withFileTypes: true })) {
    if (!e.isFile() || !e.name.startsWith('.f.bin.grimsel-')) continue;
    try {
      max = Math.max(max, statSync(path.join((e as unknown as { path: string }).path ?? dir, e.name)).size);
    } catch { /* renamed meanwhile */ }
  }
  return max;
}

describe('messages of copies that end while grimseld stops (G10)', function () {
  this.timeout(240_000);
  let ppu: Ppu;
  let small: string;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-stop-messages' });
    small = path.join(ppu.work, 'small');
    // Room for two thirds of the file: its copy fails with ENOSPC once 512 MB are written, some time after it began.
    mountTmpfs(small, 512 << 20);
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 1 },
      'storage.small': { type: 'OPTIONAL', target: path.join(small, 'data'), mountpoint: small, n_copy_processes: 1 },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('tells D-Bus and TCP subscribers of a copy that fails after SIGTERM, before the stop ends', async () => {
    const signals = await collectMessages(ppu);
    const tcp = await LineClient.connect((await grimselTcpPorts(ppu.client)).message);
    // No holes: a copy keeps a sparse file's holes, and would fit.
    const dir = path.join(ppu.ppuRamdisk, 'big');
    mkdirSync(dir, { recursive: true });
    const fd = openSync(path.join(dir, 'f.bin'), 'w');
    const mb = Buffer.alloc(1 << 20, 0x5a);
    for (let i = 0; i < 768; i++) writeSync(fd, mb);
    closeSync(fd);
    await callMethod(await ppu.grimsel(), 'AddFile', `${ppu.ppuRamdisk}/./big/f.bin`);
    // The copy to the small storage is under way: stop grimseld now, before it runs out of room.
    await eventually(() => largest(path.join(small, 'data')) > 0, 30_000, 'the copy begun on the small storage');
    assert.ok(largest(path.join(small, 'data')) < 400 << 20, 'SIGTERM came while the copy was still being written');
    const stopped = ppu.grimseld!;
    await stopped.stop();
    ppu.grimseld = undefined;
    const lines = stopped.proc.output().split('\n');
    const log = lines.filter((l) => l.length > 0).slice(-25).join('\n');
    // The failure came after the stop began: else this test would not test the stop.
    const stopping = lines.findIndex((l) => /"msg":"stopping"/.test(l));
    const failedAt = lines.findIndex((l) => l.includes('"errcode":"COPY_ERROR"') && l.includes('/big/f.bin'));
    assert.ok(stopping >= 0 && failedAt > stopping, `the copy failed after SIGTERM:\n${log}`);
    const isOurs = (short: string): boolean => short.includes('/big/f.bin:') && short.includes(small);
    await eventually(() => tcp.closed, 10_000, 'the message server closing the subscriber at the stop');
    const overTcp = tcp.lines.filter((l) => !Array.isArray(l) && l['errcode'] === 'COPY_ERROR' && isOurs(String(l['shortMessage'])));
    const overBus = signals.messages.filter((m) => m[0] === 'COPY_ERROR' && isOurs(m[1]));
    signals.stop();
    assert.equal(overTcp.length, 1, `the TCP subscriber got the COPY_ERROR once: ${JSON.stringify(tcp.lines)}\n${log}`);
    assert.equal(overBus.length, 1, `the Message signal came once: ${JSON.stringify(signals.messages)}`);
    // And the next start does not say it again: it was said.
    await ppu.startGrimseld();
    const again = await collectMessages(ppu);
    const failed = (await ppu.queryStatus()).filter((r) => r[3] === 'small').reduce((n, r) => n + r[6], 0n);
    assert.equal(failed, 1n, 'the failure counted, after the restart too');
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(again.messages.filter((m) => m[0] === 'COPY_ERROR' && isOurs(m[1])), [], 'not said again');
    again.stop();
  });
});

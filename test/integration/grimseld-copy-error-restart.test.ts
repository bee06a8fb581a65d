// A file whose copy keeps failing is announced once (G10, README "Failures and retries"), also across restarts
// of grimseld: its failure is in the journal, and the first retry of the new run is a retry, not news. Before
// 2026-12-04 every restart (SIGKILL or SIGTERM) said a COPY_ERROR again for every file still failing.
import { strict as assert } from 'node:assert';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { markFixture, type Managed } from '../fixtures/processes.js';
import { startNotifySocket } from '../fixtures/notify-socket.js';

/** The COPY_ERROR log lines (every message is logged as it is published) of the grimseld running now, by short message. */
function copyErrors(ppu: Ppu): string[] {
  return ppu.grimseld!.proc.output().split('\n').filter((l) => l.includes('"errcode":"COPY_ERROR"'))
    .map((l) => String((JSON.parse(l) as Record<string, unknown>)['short']));
}

describe('COPY_ERROR of a failing copy across grimseld restarts (G10)', function () {
  this.timeout(240_000);
  const N = 40;
  let ppu: Ppu;
  /** systemd's notify socket as grimseld sees it: each datagram a line. */
  let notify: Managed;
  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-copyerr-restart' });
    mkdirSync(ppu.work, { recursive: true });
    const sock = path.join(ppu.work, 'notify');
    notify = markFixture(await startNotifySocket(sock));
    ppu.opts.grimseldEnv = { NOTIFY_SOCKET: sock };
    // Every copy to the OPTIONAL storage fails (ENOTDIR): its target lies below a regular file.
    const plain = path.join(ppu.work, 'plainfile');
    mkdirSync(ppu.work, { recursive: true });
    writeFileSync(plain, 'not a directory\n');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      // One writer: its queue is worked in id order, so the files failing since before a restart are retried
      // before a file delivered after it.
      'storage.broken': { type: 'OPTIONAL', target: path.join(plain, 'sub'), n_copy_processes: 1 },
    };
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
    await notify?.stop();
  });

  const oldOnes = (shorts: string[]): string[] => shorts.filter((s) => /\/old\/f\d+\.cbf:/.test(s));

  it('says each failing file once, and not again after a SIGKILL or a SIGTERM restart; a file failing first after the restart is said once', async () => {
    await ppu.startShift(700, 701, []);
    for (let i = 0; i < N; i++) writeImage(ppu.detectorRamdisks['1MF']!, `old/f${i}.cbf`, 2000);
    await eventually(() => oldOnes(copyErrors(ppu)).length >= N, 60_000, `${N} COPY_ERRORs before the restart`);
    // Retries (1 s back-off, then more) add nothing.
    await eventually(async () => {
      const r = (await ppu.queryStatus(700)).find((x) => x[3] === 'broken');
      return r?.[6] === BigInt(N);
    }, 30_000, 'every file counted failed on the broken storage');
    assert.deepEqual([...new Set(oldOnes(copyErrors(ppu)))].length, N, 'one per file');

    const restarts: Array<[string, () => Promise<void>]> = [
      ['SIGKILL', async () => { await ppu.killGrimseld(); }],
      ['SIGTERM', async () => { await ppu.grimseld!.stop(); ppu.grimseld = undefined; }],
    ];
    for (const [how, down] of restarts) {
      await down();
      await ppu.startGrimseld();
      const signals = await collectMessages(ppu);
      // A file that fails for the first time after the restart: said once; the old ones came before it in the queue.
      const fresh = `new-${how}.cbf`;
      writeImage(ppu.detectorRamdisks['1MF']!, fresh, 2000);
      await eventually(() => copyErrors(ppu).some((s) => s.includes(`/${fresh}:`)), 60_000, `the COPY_ERROR of ${fresh} after the ${how} restart`);
      await eventually(() => signals.messages.some((m) => m[0] === 'COPY_ERROR' && m[1].includes(`/${fresh}:`)), 20_000, `its Message signal`);
      // Every old file is retried meanwhile (still failed, none copied) without a message.
      const r = (await ppu.queryStatus(700)).find((x) => x[3] === 'broken');
      assert.equal(r?.[6], BigInt(N + (how === 'SIGKILL' ? 1 : 2)), 'the old files and the new ones counted failed');
      assert.deepEqual(oldOnes(copyErrors(ppu)), [], `no COPY_ERROR again for the ${N} files announced before the ${how} restart (log)`);
      assert.deepEqual(oldOnes(signals.messages.filter((m) => m[0] === 'COPY_ERROR').map((m) => m[1])), [], 'nor as a Message signal');
      assert.equal(copyErrors(ppu).filter((s) => s.includes(`/${fresh}:`)).length, 1, 'the new file once');
      signals.stop();
    }
  });

  it("says an ended shift's failing files in systemd's STATUS line, not only the running shift's (G9)", async () => {
    await ppu.startShift(800, 801, []);
    // Before 2026-12-06 the line held the running shift alone: `systemctl status` looked clean (hostile tester h14).
    await eventually(() => new RegExp(`STATUS=shift 800:801; [^|]*; earlier shifts: \\d+ pending, [1-9]\\d* failed`).test(notify.output()), 20_000,
      `the ended shift's failures in the STATUS line:\n${notify.output().split('\n').slice(-3).join('\n')}`);
  });
});

// furkad's watch over an rsync run (rsync-stall.ts, F10), against real processes that read as a run does: a run
// whose processes read only keep-alives is ended; one that reads, however slowly, is not.
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { MIN_PROGRESS_BYTES, watchStall } from '../../src/furkad/rsync-stall.js';

/** A process that reads its stdin, as rsync's client reads its socket and pipes. */
function reader(): ChildProcess {
  return spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] });
}

/** Feeds `bytes` to `child` every `everyMs`, and watches it with a timeout of `timeoutMs`: whether the watch fired within `ms`. */
async function stalls(bytes: number, everyMs: number, timeoutMs: number, ms: number): Promise<boolean> {
  const child = reader();
  await new Promise((r) => child.once('spawn', r));
  let stalled = false;
  const watch = watchStall(child.pid!, timeoutMs, () => { stalled = true; }, 50);
  const feed = setInterval(() => child.stdin!.write(Buffer.alloc(bytes, 0x61)), everyMs);
  try {
    for (const end = Date.now() + ms; !stalled && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
    return stalled;
  } finally {
    clearInterval(feed);
    watch.stop();
    child.kill('SIGKILL');
  }
}

describe('the stall watch over an rsync run (F10)', function () {
  this.timeout(20_000);
  it("ends a run whose processes read nothing but a silent daemon's keep-alives (4 bytes now and then)", async () => {
    // Before 2026-12-06 each keep-alive counted as progress, and such a run waited for ever (hostile tester h15).
    assert.equal(await stalls(4, 300, 1500, 5000), true);
  });

  it('leaves a run that reads, however slowly: a trickle of data past the keep-alives', async () => {
    assert.equal(await stalls(MIN_PROGRESS_BYTES, 400, 1500, 4000), false);
  });
});

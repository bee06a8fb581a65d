// The detector server's wall clock stepped back by the time sync (S5: ntpdate hourly, and after boot by hours when
// the RTC was off) while furka-agent runs: its timers measure elapsed time, so nothing waits for the step.
import { strict as assert } from 'node:assert';
import { existsSync, linkSync, readdirSync, readFileSync, readlinkSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { SkewedClock } from '../fixtures/clock-skew.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';
import { unmount } from '../fixtures/tmpfs.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HOUR_S = 3600;

/** How many descriptors process `pid` holds on directory `dir` itself. */
function fdsOn(pid: number, dir: string): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === dir) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

describe('furka-agent across a step back of the detector\'s wall clock (S5, A2)', function () {
  this.timeout(120_000);
  const shim = tempDir('clock-shim');
  let ppu: Ppu | undefined;
  let clock: SkewedClock;
  before(async () => {
    clock = new SkewedClock(shim); // fails (never skips) without gcc
    ppu = await new Ppu({ prefix: 'ppu-clock', transport: 'agent', detectorRamdiskBytes: 64 * 1024 * 1024, agentEnv: clock.env }).start();
    await ppu.startShift(720, 721);
  });
  after(async () => {
    await ppu?.stop();
    rmSync(shim, { recursive: true, force: true });
  });

  const usr = (): string => path.join(ppu!.ppuRamdisk, '1mf', '720_721');

  it('delivers a name made by link(2) just before the wall clock went back an hour within seconds, not an hour later (S5, A2)', async () => {
    // The agent looks at such a name 2 s after its creation (the kernel says no close of it): that look was set
    // by the wall clock, and waited for the hour the clock went back. Found by a hostile tester, 2026-12.
    const detector = ppu!.detectorRamdisks['1MF']!;
    const data = randomBytes(1000);
    writeFileSync(path.join(detector, '.linked.tmp'), data);
    linkSync(path.join(detector, '.linked.tmp'), path.join(detector, 'linked.img'));
    unlinkSync(path.join(detector, '.linked.tmp'));
    await pause(500); // the agent has noted the new name and set its look
    clock.set(-HOUR_S);
    const placed = path.join(usr(), 'linked.img');
    await eventually(() => existsSync(placed), 20_000, 'the linked name on the PPU (it comes about 2 s after it was made)');
    assert.equal(sha256File(readFileSync(placed)), sha256File(data));
  });

  it('lets go of the detector ramdisk a second after its last use even when the wall clock went back an hour meanwhile: umount is not kept busy (S5, A2)', async () => {
    const detector = ppu!.detectorRamdisks['1MF']!;
    const agentPid = ppu!.agents['1MF']!.proc.child.pid!;
    const f = writeImage(detector, 'idle/img.cbf', 100_000);
    await eventually(() => existsSync(path.join(usr(), f.rel)), 20_000, 'the file on the PPU');
    await eventually(() => !existsSync(path.join(detector, f.rel)), 20_000, 'its source deleted by the agent (its last use of the root)');
    // Right after the last use, well within the second after which the root is let go.
    const heldBefore = fdsOn(agentPid, detector);
    clock.set(-2 * HOUR_S);
    assert.ok(heldBefore > 0, 'the agent held its root at the step (else this test shows nothing)');
    await eventually(() => fdsOn(agentPid, detector) === 0, 15_000, 'the agent to let go of its root (a second after its last use)');
    // What an administrator sees: the detector ramdisk unmounts (last test of this file: it stays unmounted).
    unmount(ppu!.detectorsRoot, { lazy: false });
  });
});

// Scheduled shift rotation: furkad starts a shift with the configured defaults at each boundary of
// `shift_schedule`, and says when the next one is (D-Bus NextShift, ppuctl).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type * as dbus from 'dbus-next';
import { PPUCTL_BIN, Ppu, tempDir } from '../fixtures/ppu.js';
import { SkewedClock } from '../fixtures/clock-skew.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { callMethod } from '../../src/dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH } from '../../src/dbus/names.js';

const run = promisify(execFile);

describe('scheduled shift rotation', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  const prop = async <T>(name: string): Promise<T> => {
    const props = (await ppu.client.getProxyObject(FURKA_NAME, FURKA_PATH)).getInterface('org.freedesktop.DBus.Properties');
    return ((await callMethod(props, 'Get', FURKA_IFACE, name)) as dbus.Variant<T>).value;
  };

  before(async () => {
    // Every 10 s: a boundary is always a few seconds ahead.
    ppu = await new Ppu({ prefix: 'ppu-schedule', uid: 1200, gid: 1201, furkad: { shift_schedule: '*/10 * * * * *' } }).start();
  });
  after(async () => ppu?.stop());

  it('publishes the next boundary, starts a default shift there, and moves on to the following one', async () => {
    const next = await prop<bigint>('NextShift');
    assert.ok(next > BigInt(Date.now() - 1000) * 1000n, 'the next change lies ahead');
    assert.equal(next % 10_000_000n, 0n, 'on a 10 s boundary');
    // An operator's shift runs until the boundary (started well before one, so the boundary cannot overtake it).
    await eventually(async () => (await prop<bigint>('NextShift')) - BigInt(Date.now()) * 1000n > 4_000_000n, 30_000, 'a boundary 4 s ahead');
    await ppu.startShift(900, 901, []);
    const operator = await prop<[bigint, number, number]>('Shift');
    assert.deepEqual(operator.slice(1), [900, 901]);
    const boundary = await prop<bigint>('NextShift');
    await eventually(async () => (await prop<[bigint, number, number]>('Shift'))[0] >= boundary, 30_000, 'the scheduled shift');
    const scheduled = await prop<[bigint, number, number]>('Shift');
    assert.deepEqual(scheduled.slice(1), [1200, 1201], 'the configured defaults');
    assert.ok((await prop<bigint>('NextShift')) > boundary, 'the next boundary moved on');
    // One shift per boundary: node-cron's recovery of "missed" executions fired each boundary again a second later.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal((await prop<[bigint, number, number]>('Shift'))[0], scheduled[0], 'no second shift a second after the boundary');
    // Files now go to the scheduled shift's directory.
    writeImage(ppu.detectorRamdisks['1MF']!, 'after/one.cbf', 1000);
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'internal/1mf/1200_1201/after/one.cbf')) ||
      existsSync(path.join(ppu.ppuRamdisk, '1mf/1200_1201/after/one.cbf')), 30_000, 'a file in the scheduled shift');
  });

  it("keeps furkad and the running shift when a scheduled change is refused (the defaults' directory holds a .furkad-staging), and changes at the next boundary once it can (reviewer r3)", async () => {
    const before = await prop<[bigint, number, number]>('Shift');
    const planted = path.join(ppu.ppuRamdisk, '1mf', '1200_1201', '.furkad-staging');
    mkdirSync(planted, { recursive: true });
    try {
      await ppu.furkad!.proc.said(/scheduled shift change failed: the running shift goes on/, 15_000);
      assert.equal(ppu.furkad!.proc.child.exitCode, null, 'furkad runs on');
      assert.deepEqual(await prop<[bigint, number, number]>('Shift'), before, 'the running shift goes on');
    } finally {
      rmSync(planted, { recursive: true, force: true });
    }
    await eventually(async () => (await prop<[bigint, number, number]>('Shift'))[0] > before[0], 15_000, 'the next boundary changes the shift');
  });

  it('ppuctl shift show and status name the next scheduled change', async () => {
    const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address };
    const show = JSON.parse((await run(process.execPath, [PPUCTL_BIN, 'shift', 'show', '--json'], { env })).stdout) as Record<string, unknown>;
    assert.ok(Date.parse(String(show['nextShift'])) % 10_000 === 0, `nextShift on a boundary: ${String(show['nextShift'])}`);
    const status = (await run(process.execPath, [PPUCTL_BIN, 'status', '-n', '1'], { env })).stdout;
    assert.match(status, /\nnext scheduled shift change: .+\n$/);
  });
});

describe("scheduled shift rotation across steps of the PPU's wall clock (ntpdate, date -s)", function () {
  this.timeout(120_000);
  const shim = tempDir('clock-shim-schedule');
  let ppu: Ppu;
  let clock: SkewedClock;
  let skewS = 0;
  const prop = async <T>(name: string): Promise<T> => {
    const props = (await ppu.client.getProxyObject(FURKA_NAME, FURKA_PATH)).getInterface('org.freedesktop.DBus.Properties');
    return ((await callMethod(props, 'Get', FURKA_IFACE, name)) as dbus.Variant<T>).value;
  };
  /** furkad's wall clock, in µs (NextShift's unit). */
  const furkadNowUs = (): bigint => BigInt(Date.now() + skewS * 1000) * 1000n;
  const step = (seconds: number): void => {
    skewS += seconds;
    clock.set(skewS);
  };

  before(async () => {
    clock = new SkewedClock(shim); // fails (never skips) without gcc
    ppu = await new Ppu({ prefix: 'ppu-schedule-step', uid: 1200, gid: 1201, furkad: { shift_schedule: '*/20 * * * * *' }, furkadEnv: clock.env }).start();
  });
  after(async () => {
    await ppu?.stop();
    rmSync(shim, { recursive: true, force: true });
  });

  it('starts the scheduled shift once when the clock steps forward across a boundary, and not again when it steps back over it (tester h9)', async () => {
    // An operator's shift, with a boundary 8-16 s ahead.
    await eventually(async () => {
      const ahead = (await prop<bigint>('NextShift')) - furkadNowUs();
      return ahead > 8_000_000n && ahead < 16_000_000n;
    }, 30_000, 'a boundary 8-16 s ahead');
    await ppu.startShift(900, 901, []);
    const boundary = await prop<bigint>('NextShift');
    // 3 s before it, ntpdate steps the clock 10 s forward: 7 s past it.
    await eventually(async () => boundary - furkadNowUs() < 3_000_000n, 20_000, 'the boundary 3 s ahead');
    // Counted from here: a boundary may have come while the test waited for one 8-16 s ahead (the CI run of 4e6be84).
    const said = ppu.furkad!.proc.output().length;
    step(10);
    await eventually(async () => (await prop<[bigint, number, number]>('Shift'))[1] === 1200, 5_000, 'the scheduled shift, at once');
    const scheduled = await prop<[bigint, number, number]>('Shift');
    const next = await prop<bigint>('NextShift');
    assert.ok(next > furkadNowUs(), `the next change lies ahead again: ${next}`);
    assert.equal(next - boundary, 20_000_000n, 'the boundary after the one passed');
    // Stepped back over the boundary (10 s): that boundary does not come a second time.
    step(-10);
    await new Promise((r) => setTimeout(r, 4000));
    assert.deepEqual(await prop<[bigint, number, number]>('Shift'), scheduled, 'no second scheduled shift');
    assert.equal(await prop<bigint>('NextShift'), next);
    const changes = ppu.furkad!.proc.output().slice(said).split('\n').filter((l) => l.includes('"msg":"scheduled shift change"'));
    assert.equal(changes.length, 1, changes.join('\n'));
  });

  it('plans again when the clock, ahead when furkad started, is stepped back: the boundaries in between are not skipped (reviewer r3)', async () => {
    // furkad (re)started while the clock is a minute ahead (an RTC read in the wrong zone, a date -s).
    assert.equal(await ppu.furkad!.proc.stop(30_000), 0);
    step(60);
    await ppu.startFurkad();
    await eventually(async () => (await prop<bigint>('NextShift')) > furkadNowUs(), 5_000, 'planned from the clock ahead');
    const ahead = await prop<[bigint, number, number]>('Shift');
    // Corrected by ntpdate: the next change is the first boundary after the right time, not a minute later.
    step(-60);
    await eventually(async () => {
      const left = (await prop<bigint>('NextShift')) - furkadNowUs();
      return left > 0n && left <= 20_000_000n;
    }, 5_000, 'the next boundary within 20 s of the corrected clock');
    await eventually(async () => (await prop<[bigint, number, number]>('Shift'))[0] !== ahead[0], 25_000, 'a scheduled shift at that boundary');
  });
});

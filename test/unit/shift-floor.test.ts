// Shift ids after a restart with the clock set back (F6, G5): the last shift's id is kept in state_dir, every
// new shift's id comes after it, and a shift whose id the clock is behind says so; keeping it can fail
// without stopping the shift.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/common/config-file.js';
import { validateFurkadConfig } from '../../src/furkad/config.js';
import { planShift, ShiftIds } from '../../src/furkad/shift.js';
import { readLastShift, writeLastShift } from '../../src/furkad/shift-floor.js';
import { ShiftManager } from '../../src/furkad/shift-manager.js';
import type { Logger } from '../../src/common/logger.js';

const config = parseConfig('furkad.conf', '[detector.1MF]\nremoteIP = a\ntarget = /ramdisk/./1mf\n', validateFurkadConfig);

describe('shift ids across restarts and a clock set back (F6, G5)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'shift-floor-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the last id in state_dir, reads none where there is none, and says a file that holds no id or one far ahead', () => {
    const said: string[] = [];
    const log = { error: (_: unknown, m: string) => { said.push(m); } } as unknown as Logger;
    assert.equal(readLastShift(dir, log), 0n);
    assert.equal(readLastShift(path.join(dir, 'missing'), log), 0n);
    assert.deepEqual(said, [], 'none kept yet: nothing to say');
    writeLastShift(dir, 1764672000123456n);
    assert.equal(readLastShift(dir, log), 1764672000123456n);
    for (const bad of ['garbage', '99999999999999999999', '9223372036854775808']) {
      writeFileSync(path.join(dir, 'last-shift'), `${bad}\n`);
      assert.equal(readLastShift(dir, log), 0n, bad);
    }
    assert.equal(said.filter((m) => /holds no id/.test(m)).length, 3);
    const year2100 = 4102444800000000n;
    writeLastShift(dir, year2100);
    assert.equal(readLastShift(dir, log), year2100, 'kept: a new shift must still sort after it');
    assert.match(said.at(-1)!, /more than a day after the time the clock says now/);
  });

  it('gives every new shift an id after the kept one, although the clock is behind it', () => {
    const ids = new ShiftIds();
    const hourAhead = (BigInt(Date.now()) + 3_600_000n) * 1000n;
    ids.after(hourAhead);
    const next = planShift(config, 500, 501, [], ids);
    assert.equal(next.usertime, hourAhead + 1n);
    assert.ok(planShift(config, 600, 601, [], ids).usertime > next.usertime);
    ids.after(1n); // an earlier id changes nothing
    assert.ok(planShift(config, 700, 701, [], ids).usertime > next.usertime);
    const fresh = new ShiftIds().next();
    assert.ok(Math.abs(Number(fresh / 1000n) - Date.now()) < 60_000, 'without a kept id: the clock');
  });

  it('keeps each started shift\'s id, says when the clock is behind it, and starts the shift when it cannot be kept', async () => {
    const said: string[] = [];
    const log = { info: () => undefined, warn: (_: unknown, m: string) => { said.push(`warn ${m}`); }, error: (_: unknown, m: string) => { said.push(`error ${m}`); } } as unknown as Logger;
    const kept: bigint[] = [];
    const handover = { shiftStarted: () => undefined };
    const shifts = new ShiftManager(config, new Map(), handover, log, (u) => { kept.push(u); writeLastShift(dir, u); });
    const ids = new ShiftIds();
    ids.after((BigInt(Date.now()) + 60_000n) * 1000n);
    const s = planShift(config, 500, 501, [], ids);
    await shifts.begin(s);
    assert.deepEqual(kept, [s.usertime]);
    assert.equal(readLastShift(dir, log), s.usertime);
    assert.match(said.join('\n'), /warn the clock is behind the start of the last shift/);
    const failing = new ShiftManager(config, new Map(), handover, log, () => { throw new Error('EROFS: read-only file system'); });
    const t = planShift(config, 600, 601, [], ids);
    await failing.begin(t);
    assert.equal(failing.shift, t, 'the shift started all the same');
    assert.match(said.join('\n'), /error cannot keep the shift's id in state_dir/);
  });
});

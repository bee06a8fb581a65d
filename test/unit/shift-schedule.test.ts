// Scheduled shift rotation: the next boundary of a cron schedule, and refusing a bad schedule (S3).
import { strict as assert } from 'node:assert';
import { ConfigError, parseConfig } from '../../src/common/config-file.js';
import { checkFurkadConfig, validateFurkadConfig, type FurkadConfig } from '../../src/furkad/config.js';
import { nextBoundary, scheduleProblem, validSchedule } from '../../src/furkad/shift-schedule.js';

const at = (s: string): Date => new Date(s); // local time, as cron schedules are
const next = (expr: string, after: string): string | undefined => {
  const d = nextBoundary(expr, at(after));
  if (!d) return undefined;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};

describe('shift schedule (S3)', () => {
  it('finds the next beamline shift boundary: later today, tomorrow, next Monday, next year', () => {
    assert.equal(next('0 8,16,0 * * *', '2026-11-24T14:00:00'), '2026-11-24T16:00:00');
    assert.equal(next('0 8,16,0 * * *', '2026-11-24T16:00:00'), '2026-11-25T00:00:00', 'strictly after');
    assert.equal(next('0 8,16,0 * * *', '2026-11-24T23:59:59'), '2026-11-25T00:00:00');
    assert.equal(next('30 7 * * mon', '2026-11-24T14:00:00'), '2026-11-30T07:30:00', 'Tuesday → next Monday');
    assert.equal(next('0 6 * * 1-5', '2026-11-27T07:00:00'), '2026-11-30T06:00:00', 'Friday → Monday');
    assert.equal(next('0 0 1 jan *', '2026-11-24T14:00:00'), '2027-01-01T00:00:00');
    assert.equal(next('*/15 * * * *', '2026-11-24T14:07:10'), '2026-11-24T14:15:00');
    assert.equal(next('*/10 * * * * *', '2026-11-24T14:07:10.500'), '2026-11-24T14:07:20', 'six fields: seconds first');
    assert.equal(next('0 0 31 2 *', '2026-11-24T14:00:00'), undefined, '31 February never comes');
  });

  it('gives one boundary a day across the ends of summer time, and a 29 February years ahead (tester h9)', () => {
    const tz = process.env['TZ'];
    process.env['TZ'] = 'Europe/Zurich'; // Node reads TZ again when it changes (tzdata is in every Debian)
    try {
      const iso = (expr: string, after: string): string | undefined => nextBoundary(expr, new Date(after))?.toISOString();
      // 25 October 2026: 02:30 comes twice (CEST 00:30Z, then CET 01:30Z); only the first is a boundary.
      assert.equal(iso('0 30 2 * * *', '2026-10-24T23:00:00Z'), '2026-10-25T00:30:00.000Z');
      assert.equal(iso('0 30 2 * * *', '2026-10-25T00:30:00.500Z'), '2026-10-26T01:30:00.000Z', 'not 02:30 again an hour later');
      // 29 March 2026: 02:30 does not exist; the boundary is at 03:30 CEST, not skipped.
      assert.equal(iso('0 30 2 * * *', '2026-03-28T23:00:00Z'), '2026-03-29T01:30:00.000Z');
    } finally {
      if (tz === undefined) delete process.env['TZ'];
      else process.env['TZ'] = tz;
    }
    assert.equal(next('0 0 0 29 2 *', '2028-03-01T00:00:00'), '2032-02-29T00:00:00', 'four years ahead');
  });

  it('accepts cron expressions and refuses anything else, naming the key', () => {
    assert.ok(validSchedule('0 8,16,0 * * *'));
    assert.ok(!validSchedule('every day at 8'));
    assert.ok(!validSchedule('61 * * * *'));
    const text = 'shift_schedule = at dawn\n[detector.1MF]\nremoteIP = 10.0.0.1\ntarget = /ramdisk/./1mf\n';
    const c = parseConfig<FurkadConfig>('/etc/ppu/furkad.conf', text, validateFurkadConfig);
    assert.throws(() => checkFurkadConfig('/etc/ppu/furkad.conf', c), (e: unknown) => e instanceof ConfigError &&
      /\/etc\/ppu\/furkad\.conf: .*key 'shift_schedule': must be a cron expression .*got 'at dawn'/s.test(e.message));
    // The field and the value node-cron refuses, not only the whole expression.
    const hour = parseConfig<FurkadConfig>('f', text.replace('at dawn', '0 8,16,24 * * *'), validateFurkadConfig);
    assert.throws(() => checkFurkadConfig('f', hour), (e: unknown) => e instanceof ConfigError &&
      e.message.includes("got '0 8,16,24 * * *': the hour field takes 0-23, '*', a range (a-b) or a step (*/n), not '24'"));
    assert.equal(scheduleProblem('every day at 8'), 'it has 4 fields, not 5 (or 6 with seconds first)');
    // node-cron 3 itself checks the first six only, and would run this one ignoring its seventh (a year).
    assert.equal(scheduleProblem('0 0 8 * * * 2027'), 'it has 7 fields, not 5 (or 6 with seconds first)');
    assert.match(scheduleProblem('61 * * * * *') ?? '', /^the second field .* not '61'$/);
    assert.match(scheduleProblem('0 8 * 13 *') ?? '', /^the month field takes 1-12 or jan-dec, .* not '13'$/);
    assert.match(scheduleProblem('0,soon 8 * * *') ?? '', /^the minute field .* not 'soon'$/);
    assert.equal(scheduleProblem('0 8,16,0 * * *'), undefined);
    const ok = parseConfig<FurkadConfig>('f', text.replace('at dawn', '0 8,16,0 * * *'), validateFurkadConfig);
    assert.equal(checkFurkadConfig('f', ok).shift_schedule, '0 8,16,0 * * *');
  });
});

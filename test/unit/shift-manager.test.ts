// The shift manager's order of a shift change against fake loops and a fake hand-over (F6): every loop held,
// the old shift drained, what it could not place left behind, the new shift announced to grimseld before any
// loop serves it, then released; a refused StartShift leaves everything as it was; changes never interleave.
import { strict as assert } from 'node:assert';
import { DBusError } from 'dbus-next';
import { parseConfig } from '../../src/common/config-file.js';
import { validateFurkadConfig } from '../../src/furkad/config.js';
import { CHANGE_BUDGET_MS, drainBoundMs, holdCutMs, ShiftManager, type ShiftLoop } from '../../src/furkad/shift-manager.js';
import { ChangeTimer, SLOW_CHANGE_MS } from '../../src/furkad/change-timer.js';
import { planShift, type Assignment, type Shift } from '../../src/furkad/shift.js';
import type { Logger } from '../../src/common/logger.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { bootId, defaultsOf, forgetRunningShift, keepRunningShift, readRunningShift, resumeClock, sinceBootMs, whyNotResume, type RunningShift } from '../../src/furkad/shift-resume.js';
import * as os from 'node:os';
import * as path from 'node:path';
import { DetectorLoop, DRAIN_MAX_MS, HOLD_CUT_MS, type LoopHandover } from '../../src/furkad/detector.js';
import { TransferGate } from '../../src/furkad/transfer-gate.js';
import { together } from '../../src/common/service.js';
import type { DeliveredFile } from '../../src/dbus/intake-interface.js';
import { FakeTransport } from './fake-transport.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;

const config = parseConfig('furkad.conf',
  'usrdir = $UID_$GID\n[detector.1MF]\nremoteIP = a\ntarget = /ramdisk/./1mf\n[detector.2MF]\nremoteIP = b\ntarget = /ramdisk/./2mf\n',
  validateFurkadConfig);

/** A promise and its resolve, for steps a test lets finish when it says so. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

/** A loop of bookkeeping only: each call is written down in the shared event list, when it starts and ends. */
class FakeLoop implements ShiftLoop {
  /** What this loop serves now ('-' = nothing in this shift). */
  serving = '';
  /** A test makes hold() wait on this, to see that nothing goes on before every loop is held. */
  holdGate: Promise<void> = Promise.resolve();
  /** The cut each hold() was given, and the bound each drain() (ms). */
  readonly cuts: Array<number | undefined> = [];
  readonly bounds: Array<number | undefined> = [];
  constructor(readonly id: string, private readonly events: string[]) {}
  async hold(cutMs?: number): Promise<void> {
    this.cuts.push(cutMs);
    this.events.push(`hold ${this.id}`);
    await this.holdGate;
    this.events.push(`held ${this.id}`);
  }
  /** Called in each drain() (a test moves its clock there). */
  onDrain: () => void = () => undefined;
  async drain(_at?: 'change' | 'stop', boundMs?: number): Promise<void> {
    this.bounds.push(boundMs);
    this.onDrain();
    this.events.push(`drain ${this.id}`);
    await Promise.resolve();
  }
  async leaveBehind(): Promise<void> {
    this.events.push(`leaveBehind ${this.id}`);
    await Promise.resolve();
  }
  assign(shift: Shift, assignment: Assignment | undefined): void {
    this.serving = assignment ? `${shift.usertime}:${assignment.target}` : '-';
    this.events.push(`assign ${this.id} ${assignment ? shift.usertime : '-'}`);
  }
  release(): void {
    this.events.push(`release ${this.id}`);
  }
}

function setup(): { events: string[]; loops: Map<string, FakeLoop>; shifts: ShiftManager; changes: () => number } {
  const events: string[] = [];
  const loops = new Map(['1MF', '2MF'].map((id) => [id, new FakeLoop(id, events)]));
  const handover = { shiftStarted: (usertime: bigint, uid: number, gid: number) => { events.push(`announce ${usertime} ${uid}:${gid}`); } };
  const shifts = new ShiftManager(config, loops, handover, quiet);
  let changes = 0;
  shifts.changed.on(() => { changes++; });
  return { events, loops, shifts, changes: () => changes };
}

/** The position of the first event starting with `prefix`, failing if there is none. */
function at(events: string[], prefix: string): number {
  const i = events.findIndex((e) => e.startsWith(prefix));
  assert.ok(i >= 0, `no event '${prefix}' in ${events.join(', ')}`);
  return i;
}
function lastAt(events: string[], prefix: string): number {
  const i = events.map((e) => e.startsWith(prefix)).lastIndexOf(true);
  assert.ok(i >= 0, `no event '${prefix}' in ${events.join(', ')}`);
  return i;
}

describe('shift manager, against fake loops and a fake hand-over (F6)', () => {
  it('starts the first shift without a drain: holds, announces, assigns every loop, releases', async () => {
    const { events, loops, shifts, changes } = setup();
    const first = planShift(config, 500, 501, [['2MF', '', '']]);
    await shifts.begin(first);
    assert.deepEqual(events, ['hold 1MF', 'hold 2MF', 'held 1MF', 'held 2MF', 'leaveBehind 1MF', 'leaveBehind 2MF',
      `announce ${first.usertime} 500:501`, 'assign 1MF -', `assign 2MF ${first.usertime}`, 'release 1MF', 'release 2MF']);
    assert.equal(loops.get('1MF')!.serving, '-', 'a detector not in the shift serves nothing');
    assert.equal(shifts.shift, first);
    assert.deepEqual(shifts.currentShift(), { usertime: first.usertime, uid: 500, gid: 501 });
    assert.equal(changes(), 1);
  });

  it('reports no shift before the first', () => {
    const { shifts } = setup();
    assert.equal(shifts.shift, undefined);
    assert.deepEqual(shifts.currentShift(), { usertime: 0n, uid: 0, gid: 0 });
  });

  it('holds every loop before draining any, drains before announcing, announces before any loop serves the new shift', async () => {
    const { events, loops, shifts, changes } = setup();
    await shifts.begin(planShift(config, 500, 501));
    events.length = 0;
    // One loop's run in flight ends late: no loop may drain, and nothing may be announced, before it is held.
    const slow = deferred();
    loops.get('2MF')!.holdGate = slow.promise;
    const second = planShift(config, 600, 601);
    const changing = shifts.begin(second);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['hold 1MF', 'hold 2MF', 'held 1MF'], 'waits for every loop to be held');
    slow.resolve();
    await changing;
    const announce = at(events, `announce ${second.usertime} 600:601`);
    assert.ok(lastAt(events, 'held ') < at(events, 'drain '), 'every loop held before any drains');
    assert.ok(lastAt(events, 'drain ') < at(events, 'leaveBehind '), 'drained before setting aside');
    assert.ok(lastAt(events, 'leaveBehind ') < announce, 'set aside for the old shift before the new one is announced');
    assert.ok(announce < at(events, 'assign '), 'announced before any loop is given the new shift');
    assert.ok(lastAt(events, 'assign ') < at(events, 'release '), 'released only once every loop has the new shift');
    assert.equal(events.filter((e) => e.startsWith('announce')).length, 1, 'announced once');
    assert.equal(shifts.shift, second);
    assert.equal(changes(), 2);
  });

  it('runs shift changes one after another, never interleaved', async () => {
    const { events, loops, shifts } = setup();
    await shifts.begin(planShift(config, 500, 501));
    events.length = 0;
    const slow = deferred();
    loops.get('1MF')!.holdGate = slow.promise;
    const [a, b] = [planShift(config, 600, 601), planShift(config, 700, 701)];
    const both = Promise.all([shifts.begin(a), shifts.begin(b)]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['hold 1MF', 'hold 2MF', 'held 2MF'], 'the second change waits for the first');
    slow.resolve();
    await both;
    assert.ok(lastAt(events, `announce ${a.usertime}`) < at(events, `announce ${b.usertime}`));
    const secondHold = events.indexOf('hold 1MF', 1);
    assert.ok(lastAt(events.slice(0, secondHold), 'release ') === secondHold - 1, 'the first change released before the second holds');
    assert.equal(shifts.shift, b);
  });

  it('a change that fails leaves the shift as it was, releases every loop, and does not stop the next one', async () => {
    const { loops, shifts, events } = setup();
    const first = planShift(config, 500, 501);
    await shifts.begin(first);
    loops.get('1MF')!.holdGate = Promise.reject(new Error('disk gone'));
    events.length = 0;
    await assert.rejects(shifts.begin(planShift(config, 600, 601)), /disk gone/);
    assert.equal(shifts.shift, first);
    assert.deepEqual(events.filter((e) => e.startsWith('release ')), ['release 1MF', 'release 2MF'],
      'every loop released again: a failed change leaves no detector paused');
    loops.get('1MF')!.holdGate = Promise.resolve();
    const third = planShift(config, 700, 701);
    await shifts.begin(third);
    assert.equal(shifts.shift, third);
  });

  it('ends the running shift at a stop as a change would (held, drained, set aside, nothing announced), after the change in flight, refusing changes not begun (A5)', async () => {
    const { events, loops, shifts, changes } = setup();
    const first = planShift(config, 500, 501);
    await shifts.begin(first);
    events.length = 0;
    const slow = deferred();
    loops.get('1MF')!.holdGate = slow.promise;
    const second = planShift(config, 600, 601);
    const changing = shifts.begin(second);
    await new Promise((r) => setImmediate(r)); // begun: holding
    const queued = shifts.begin(planShift(config, 650, 651));
    const stopping = shifts.stop();
    slow.resolve();
    await changing;
    await assert.rejects(queued, (e: unknown) => e instanceof DBusError && /stopping/.test(e.text), 'asked for before the stop, not begun: refused');
    await stopping;
    const released = lastAt(events, 'release ');
    assert.ok(at(events, `announce ${second.usertime}`) < released, 'the change asked for before the stop is made first');
    assert.deepEqual(events.slice(released + 1), ['hold 1MF', 'hold 2MF', 'held 1MF', 'held 2MF', 'drain 1MF', 'drain 2MF',
      'leaveBehind 1MF', 'leaveBehind 2MF'], 'then every loop held, drained and its unplaceable files set aside; not released, nothing announced');
    assert.equal(shifts.shift, second, 'the shift stays what it was');
    assert.equal(changes(), 2);
    await assert.rejects(shifts.begin(planShift(config, 700, 701)), (e: unknown) => e instanceof DBusError && /stopping/.test(e.text));
    assert.equal(shifts.shift, second);
  });

  it('goes on with the shift a furkad that did not stop cleanly kept, same id and request, unless it is stale or a StartShift came first', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'resume-'));
    try {
      const defaults = defaultsOf(config);
      const ran = planShift(config, 500, 501, [['2MF', '', '']]);
      keepRunningShift(dir, ran, defaults);
      const kept = readRunningShift(dir, quiet)!;
      assert.deepEqual({ ...kept, touchedMs: 0 }, { usertime: ran.usertime, uid: 500, gid: 501, requested: [['2MF', '', '']], defaults, boot: bootId(), touchedMs: 0 });
      assert.ok(bootId().length > 0, 'the boot is known');
      assert.ok(Math.abs(kept.touchedMs - sinceBootMs()) < 5000, 'touched by the time since the boot, not the wall clock');
      const manager = (resume: { shift: RunningShift; whyNot: string }) => {
        const loops = new Map(['1MF', '2MF'].map((id) => [id, new FakeLoop(id, [])]));
        return { loops, shifts: new ShiftManager(config, loops, { shiftStarted: () => undefined }, quiet, undefined, undefined, resume) };
      };
      const clock = resumeClock();
      const now = clock.wallMs;
      assert.equal(whyNotResume(kept, defaults, clock), '');
      const { loops, shifts } = manager({ shift: kept, whyNot: '' });
      await shifts.start();
      assert.equal(shifts.shift!.usertime, ran.usertime, 'the same shift');
      assert.equal(loops.get('1MF')!.serving, '-', 'the request as it was: 1MF not served');
      // Stale: ended long ago, defaults changed, a scheduled rotation passed: the default shift.
      assert.match(whyNotResume({ ...kept, touchedMs: clock.sinceBootMs - 120_000 }, defaults, clock), /ended more than 60 s ago/);
      assert.match(whyNotResume(kept, `${config.uid}:${config.gid}:other`, clock), /default shift .* changed/);
      assert.match(whyNotResume(kept, defaults, clock, () => new Date(now - 1000)), /scheduled shift change/);
      assert.equal(whyNotResume(kept, defaults, clock, () => new Date(now + 60_000)), '');
      // The wall clock stepped (ntpdate, an RTC behind at boot) says nothing of when that furkad ended (tester h9).
      assert.equal(whyNotResume(kept, defaults, { ...clock, wallMs: now + 120_000 }), '', 'stepped forward, ended a moment ago: resumed');
      assert.equal(whyNotResume(kept, defaults, { ...clock, wallMs: now - 3 * 3600_000 }), '', 'stepped back, ended a moment ago: resumed');
      assert.match(whyNotResume(kept, defaults, { ...clock, boot: 'another' }), /PPU was restarted since/, 'another boot: never');
      // A file of a furkad before 2026-12-05 (no boot): its mtime is the wall clock, as then.
      assert.equal(whyNotResume({ ...kept, boot: undefined, touchedMs: now - 5000 }, defaults, clock), '');
      assert.match(whyNotResume({ ...kept, boot: undefined, touchedMs: now - 120_000 }, defaults, clock), /ended more than 60 s ago/);
      const stale = manager({ shift: kept, whyNot: 'the furkad that ran it ended more than 60 s ago' });
      await stale.shifts.start();
      assert.deepEqual([stale.shifts.shift!.uid, stale.shifts.shift!.detectors.length], [config.uid, 2], 'stale: the default shift');
      const gone = manager({ shift: { ...kept, requested: [['9M', '', '']] }, whyNot: '' });
      await gone.shifts.start();
      assert.deepEqual([gone.shifts.shift!.uid, gone.shifts.shift!.detectors.length], [config.uid, 2], 'a detector no longer configured: the default shift');
      // A StartShift that came once the bus name was owned, before the first shift: it stands.
      const early = manager({ shift: kept, whyNot: '' });
      await early.shifts.startShift(700, 701, []);
      await early.shifts.start();
      assert.equal(early.shifts.shift!.uid, 700, 'the StartShift stands');
      forgetRunningShift(dir, quiet);
      assert.equal(readRunningShift(dir, quiet), undefined, 'after a clean stop: nothing to go on with');
      writeFileSync(path.join(dir, 'running-shift.json'), '{"usertime": 5');
      const said: string[] = [];
      const log = { ...quiet, error: (_o: unknown, m: string) => { said.push(m); } } as unknown as Logger;
      assert.equal(readRunningShift(dir, log), undefined);
      assert.match(said.join(), /not readable; starting the configured default shift/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets go of the kept shift when the new one cannot be kept, so that a crash does not bring the old one back', async () => {
    const events: string[] = [];
    const loops = new Map(['1MF', '2MF'].map((id) => [id, new FakeLoop(id, events)]));
    const running = { keep: () => { throw new Error('ENOSPC'); }, forget: () => { events.push('forget'); } };
    const shifts = new ShiftManager(config, loops, { shiftStarted: () => { events.push('announce'); } }, quiet, undefined, running);
    await shifts.startShift(600, 601, []);
    assert.equal(shifts.shift!.uid, 600, 'the shift starts all the same');
    assert.ok(events.indexOf('forget') >= 0 && events.indexOf('forget') < events.indexOf('announce'), events.join());
  });

  it('a refused StartShift leaves the shift, the loops and the hand-over as they were, with a named error', async () => {
    const { events, shifts, changes } = setup();
    await shifts.startShift(500, 501, []);
    const before = shifts.shift;
    events.length = 0;
    const refused = async (uid: number, gid: number, detectors: Array<[string, string, string]>, name: string): Promise<void> => {
      await assert.rejects(shifts.startShift(uid, gid, detectors), (e: unknown) => e instanceof DBusError && e.type === name);
    };
    await refused(600, 601, [['9M', '', '']], 'org.ppu.Error.UnknownDetector');
    await refused(0, 0, [], 'org.ppu.Error.NotAllowed');
    await refused(600, 601, [['1MF', '', 'relative']], 'org.ppu.Error.InvalidArgs');
    await refused(4294967295, 601, [], 'org.ppu.Error.InvalidArgs');
    assert.deepEqual(events, [], 'no loop held, nothing announced');
    assert.equal(shifts.shift, before);
    assert.deepEqual(shifts.currentShift(), { usertime: before!.usertime, uid: 500, gid: 501 });
    assert.equal(changes(), 1, 'no change signalled');
  });

  it('with real loops: a file that reaches the detectors during the change goes with the new shift, announced first', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'shift-manager-'));
    try {
      const events: string[] = [];
      const transports = new Map(['1MF', '2MF'].map((id) => [id, new FakeTransport(events)]));
      let duringChange: (() => void) | undefined;
      const delivered: Array<{ usertime: bigint; path: string }> = [];
      const handover: LoopHandover & { shiftStarted(usertime: bigint): void } = {
        intend: () => undefined,
        delivered: (usertime: bigint, _uid: number, _gid: number, files: DeliveredFile[]) => {
          for (const [p] of files) {
            delivered.push({ usertime, path: p });
            events.push(`delivered ${usertime} ${path.basename(p)}`);
          }
        },
        shiftStarted: (usertime: bigint) => {
          events.push(`announce ${usertime}`);
          duringChange?.();
        },
      };
      const loops = [...transports].map(([id, t]) => new DetectorLoop(id, t, handover, new TransferGate(Infinity), quiet));
      const shifts = new ShiftManager(config, new Map(loops.map((l) => [l.id, l])), handover, quiet);
      const uid = process.getuid?.() ?? 0;
      const gid = process.getgid?.() ?? 0;
      let n = 0;
      const plan = (): Shift => {
        n++;
        return { usertime: BigInt(1000 + n), uid, gid, usrdir: `u${n}`, detectors: loops.map((l): Assignment => {
          const target = `${root}/./${l.id.toLowerCase()}`;
          return { id: l.id, source: '/', target, config: { transport: 'rsync', remoteIP: '127.0.0.1', port: 1, module: 'm', source: '/', target,
            minpause: 2, interrun_pause: 0, remove_source: true, settle_ms: 0, exclude: '' } };
        }) };
      };
      const running = together('loops', loops);
      await running.start(new AbortController().signal);
      const [first, second] = [plan(), plan()];
      await shifts.begin(first);
      // Written while the change is under way, after the old shift's drain: the new shift's first files.
      duringChange = () => { for (const t of transports.values()) t.incoming.push('x.cbf'); };
      await shifts.begin(second);
      const end = Date.now() + 5000;
      while (delivered.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
      await running.stop();
      assert.deepEqual(delivered.map((d) => d.usertime), [second.usertime, second.usertime], 'both in the new shift');
      assert.ok(delivered.every((d) => d.path.includes(`/${second.usrdir}/`)));
      const announce = events.indexOf(`announce ${second.usertime}`);
      assert.ok(announce >= 0 && events.every((e, i) => !e.startsWith(`delivered ${second.usertime}`) || i > announce),
        `announced before the first file of the new shift: ${events.join(', ')}`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('how long a shift change took, said when busctl may have given up on it (F6)', () => {
  /** A clock the fake loops move on: `clock.ms` advanced by a step that "takes" that long. */
  const clock = { ms: 0 };
  const now = (): number => clock.ms;

  it('names each step, how long it took and the detector that was last, and counts as slow only beyond SLOW_CHANGE_MS', async () => {
    clock.ms = 1000;
    const timer = new ChangeTimer(now);
    const took: Record<string, number> = { '1MF': 2000, '2MF': 7100 };
    await timer.each('waiting for the runs in flight', [{ id: '1MF' }, { id: '2MF' }], async (l) => {
      await new Promise((r) => setTimeout(r, took[l.id]! / 1000));
      clock.ms = Math.max(clock.ms, 1000 + took[l.id]!);
    });
    await timer.each('the last runs', [{ id: '1MF' }], async () => { clock.ms += 10_000; });
    assert.equal(timer.describe(), 'waiting for the runs in flight 7.1 s (2MF), the last runs 10.0 s (1MF)');
    assert.equal(timer.ms, 17_100);
    assert.equal(timer.slow, true, `beyond ${SLOW_CHANGE_MS} ms`);
    clock.ms = 0;
    const quick = new ChangeTimer(now);
    clock.ms = SLOW_CHANGE_MS;
    assert.equal(quick.slow, false, 'at SLOW_CHANGE_MS exactly');
  });

  it('logs a warning naming what a slow change waited for, and the time with every shift started; none for a quick change', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const started: Array<Record<string, unknown>> = [];
    const log = { ...quiet, warn: (o: Record<string, unknown>, msg: string) => { warnings.push({ ...o, msg }); },
      info: (o: Record<string, unknown>, msg: string) => { if (msg === 'shift started') started.push(o); } } as unknown as Logger;
    const events: string[] = [];
    const loops = new Map(['1MF', '2MF'].map((id) => [id, new FakeLoop(id, events)]));
    const shifts = new ShiftManager(config, loops, { shiftStarted: () => undefined }, log, undefined, undefined, undefined, () => new ChangeTimer(now));
    clock.ms = 0;
    await shifts.start();
    assert.deepEqual(warnings, [], 'the first shift, at once');
    // The second change: 1MF's run in flight ends 16 s after the call.
    const gate = deferred();
    loops.get('1MF')!.holdGate = gate.promise;
    const before = events.length;
    const call = shifts.startShift(500, 501, []);
    while (!events.slice(before).includes('hold 2MF')) await new Promise((r) => setImmediate(r));
    clock.ms += 16_000;
    gate.resolve();
    await call;
    assert.deepEqual(started.map((o) => o['took_ms']), [0, 16_000]);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]!['waited'], 'waiting for the runs in flight 16.0 s (1MF), the ending shift\'s last runs 0.0 s (2MF), setting aside what they could not place 0.0 s (2MF)');
    assert.match(String(warnings[0]!['msg']), /^the shift change took 16 s, waiting for the detectors named \(busctl .* the shift starts all the same\)$/);
  });

  it('gives a lone change the full cut and drain, and one that waited its turn for another less, so each call ends within busctl\'s 25 s', () => {
    // A lone change: the run in flight HOLD_CUT_MS, then (even after a whole cut) the drain DRAIN_MAX_MS.
    assert.equal(holdCutMs(CHANGE_BUDGET_MS), HOLD_CUT_MS);
    assert.equal(drainBoundMs(CHANGE_BUDGET_MS - HOLD_CUT_MS - 200), DRAIN_MAX_MS);
    // Queued for 17.5 s behind a change that waited for a large file: the least of each, then the transport's listing.
    assert.equal(holdCutMs(CHANGE_BUDGET_MS - 17_500), 500);
    assert.equal(drainBoundMs(CHANGE_BUDGET_MS - 18_000), 1000);
    assert.equal(drainBoundMs(-5000), 1000, 'a budget spent still drains a little: a cut drain run lets rsync list what it owes');
    // In between, what is left less the listing's 3 s.
    assert.equal(drainBoundMs(CHANGE_BUDGET_MS - 12_000), 5000);
  });

  it('times a change queued behind another from its call: shorter steps for it, and the wait named in the warning (h5 F-2)', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const log = { ...quiet, warn: (o: Record<string, unknown>, msg: string) => { warnings.push({ ...o, msg }); } } as unknown as Logger;
    const events: string[] = [];
    const loops = new Map(['1MF', '2MF'].map((id) => [id, new FakeLoop(id, events)]));
    const shifts = new ShiftManager(config, loops, { shiftStarted: () => undefined }, log, undefined, undefined, undefined, () => new ChangeTimer(now));
    clock.ms = 0;
    await shifts.start();
    const one = loops.get('1MF')!;
    one.cuts.length = 0;
    // The first call waits 6 s for 1MF's run in flight and 10 s for its drain (a large file on a slow link); the
    // second is asked for meanwhile.
    one.onDrain = () => { if (one.bounds.length === 1) clock.ms += 10_000; };
    const gate = deferred();
    one.holdGate = gate.promise;
    const before = events.length;
    const first = shifts.startShift(500, 501, []);
    while (!events.slice(before).includes('hold 2MF')) await new Promise((r) => setImmediate(r));
    const second = shifts.startShift(600, 601, []);
    clock.ms += 6_000;
    gate.resolve();
    await first;
    one.holdGate = Promise.resolve();
    await second;
    assert.deepEqual(one.cuts, [HOLD_CUT_MS, 500], 'the second cuts its run in flight after the least');
    assert.deepEqual(one.bounds, [DRAIN_MAX_MS, 1000], 'and drains for the least');
    assert.equal(warnings.length, 2, JSON.stringify(warnings));
    assert.match(String(warnings[1]!['waited']), /^waiting for the shift change before it 16\.0 s, waiting for the runs in flight 0\.0 s/);
  });
});

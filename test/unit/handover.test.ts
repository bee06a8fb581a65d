// furkad's hand-over to grimseld against a fake bus: no call waits for ever, and a grimseld that comes back
// (a new owner of its bus name) gets the waiting files at once, in order (G12, F10).
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dbus from 'dbus-next';
import type { MessageBus } from '../../src/dbus/bus.js';
import { GRIMSEL_NAME } from '../../src/dbus/names.js';
import { Handover } from '../../src/furkad/handover.js';
import { Outbox } from '../../src/furkad/outbox.js';
import type { Logger } from '../../src/common/logger.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;

/** A grimseld process as furkad's proxy sees it: answers each call, or never (stopped, hung). */
class FakeGrimseld {
  calls: string[] = [];
  constructor(public answers: boolean) {}
  getInterface(): unknown {
    const call = (what: string) => (...args: unknown[]): Promise<void> => {
      this.calls.push(what === 'Delivered' ? `Delivered ${(args[3] as string[][]).map((f) => f.join(' ')).join(',')}` : `${what} ${args.join(' ')}`);
      return this.answers ? Promise.resolve() : new Promise(() => undefined);
    };
    return { ShiftStarted: call('ShiftStarted'), Delivered: call('Delivered') };
  }
}

function fakeBus(owner: () => FakeGrimseld): MessageBus {
  return { getProxyObject: () => Promise.resolve(owner()) } as unknown as MessageBus;
}

const until = async (what: string, ok: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('hand-over to grimseld (G12, F10)', () => {
  let dir: string;
  let outbox: Outbox;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'handover-'));
    outbox = Outbox.open(dir).outbox;
  });
  afterEach(() => {
    outbox.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A hand-over running against `first`, with a deadline far beyond the test (only an owner change may end a wait);
   * `to` gives grimseld's bus name to another process, `stop` ends the run.
   */
  const running = (first: FakeGrimseld): { handover: Handover; to: (g: FakeGrimseld, owner: string) => void; stop: () => Promise<void> } => {
    let current = first;
    const handover = new Handover(fakeBus(() => current), quiet, outbox, 3_600_000);
    const ctl = new AbortController();
    const done = handover.run(ctl.signal);
    return {
      handover,
      to: (g, owner) => { current = g; handover.grimseldChanged(owner); },
      stop: async () => { ctl.abort(); await done; },
    };
  };

  it('abandons a call to a grimseld that left the bus and sends it to the next one at once', async () => {
    const hung = new FakeGrimseld(false);
    const next = new FakeGrimseld(true);
    const { handover, to, stop } = running(hung);
    handover.shiftStarted(1n, 500, 501);
    handover.delivered(1n, 500, 501, [['/r/./a', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    await until('the first call', () => hung.calls.length === 1);
    to(hung, '');
    to(next, ':1.9');
    await until('the queue re-sent to the new grimseld', () => next.calls.length === 2);
    assert.deepEqual(next.calls, ['ShiftStarted 1 500 501', 'Delivered /r/./a xxh128:00112233445566778899aabbccddeeff 1MF'], 'in order, nothing skipped, with checksum and detector');
    await handover.drained();
    assert.equal(handover.pending, 0);
    await stop();
  });

  it('tells each new grimseld the current shift again, with nothing to deliver (a journal lost knows none)', async () => {
    const first = new FakeGrimseld(true);
    const next = new FakeGrimseld(false);
    const { handover, to, stop } = running(first);
    to(first, ':1.5');
    handover.shiftStarted(1n, 500, 501);
    handover.shiftStarted(2n, 600, 601);
    await handover.drained();
    assert.deepEqual(first.calls, ['ShiftStarted 1 500 501', 'ShiftStarted 2 600 601']);
    to(next, ':1.9');
    await until('the shift told to the new grimseld', () => next.calls.length === 1);
    // While that call hangs, two more owner changes: still one shift start queued, not three.
    to(next, ':1.10');
    to(next, ':1.11');
    to(first, ':1.12');
    await handover.drained();
    assert.deepEqual(next.calls, ['ShiftStarted 2 600 601'], 'the current shift, not the first');
    assert.deepEqual(first.calls.slice(2), ['ShiftStarted 2 600 601'], 'once to the last owner, not once per change');
    await stop();
  });

  it("tells a new grimseld the current shift before the files of an earlier shift still queued, after the call in flight", async () => {
    const hung = new FakeGrimseld(false);
    const next = new FakeGrimseld(true);
    const { handover, to, stop } = running(hung);
    handover.shiftStarted(1n, 500, 501);
    handover.shiftStarted(2n, 600, 601);
    await until('the first shift start in flight', () => hung.calls.length === 1);
    to(next, ':1.9'); // a shift start is still queued: nothing added
    await handover.drained();
    // Files of shift 1 set aside at the change and delivered late, while grimseld hangs.
    next.answers = false;
    const last = new FakeGrimseld(true);
    handover.delivered(1n, 500, 501, [['/r/./late1', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    handover.delivered(1n, 500, 501, [['/r/./late2', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    await until('a late file in flight', () => next.calls.length === 3);
    to(last, ':1.10');
    await handover.drained();
    assert.deepEqual(next.calls.slice(0, 2), ['ShiftStarted 1 500 501', 'ShiftStarted 2 600 601']);
    assert.deepEqual(last.calls.map((c) => c.split(' xxh128')[0]), ['Delivered /r/./late1', 'ShiftStarted 2 600 601', 'Delivered /r/./late2'],
      'the head again (it was in flight), then the current shift, then the rest');
    await stop();
  });

  it('gives up on a call that is never answered and tries again (a stopped grimseld keeps its name)', async () => {
    const stopped = new FakeGrimseld(false);
    const handover = new Handover(fakeBus(() => stopped), quiet, outbox, 50);
    const ctl = new AbortController();
    const running = handover.run(ctl.signal);
    handover.delivered(1n, 500, 501, [['/r/./a', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    await until('a second attempt', () => stopped.calls.length >= 2);
    assert.equal(handover.pending, 1, 'still kept, not dropped');
    ctl.abort();
    await running;
    assert.equal(handover.pending, 1, 'left for the outbox on shutdown');
  });

  it('retries a grimseld that is away at least once a second, without being woken', async function () {
    this.timeout(10_000);
    let attempts = 0;
    const bus = { getProxyObject: () => { attempts++; return Promise.reject(new Error('ServiceUnknown')); } } as unknown as MessageBus;
    const handover = new Handover(bus, quiet, outbox, 1000);
    const ctl = new AbortController();
    const running = handover.run(ctl.signal);
    handover.delivered(1n, 500, 501, [['/r/./a', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    await until('five attempts', () => attempts >= 5, 6000);
    const before = attempts;
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(attempts - before >= 2, `an attempt at least every second (${attempts - before} in 2.5 s)`);
    ctl.abort();
    await running;
  });

  it("says a grimseld that is not on the bus in those words, not as the bus's \"not provided by any .service files\"", async () => {
    const lines: string[] = [];
    const log = { ...quiet, error: (o: { err: string }, msg: string) => { lines.push(`${msg}: ${o.err}`); } } as unknown as Logger;
    const absent = new dbus.DBusError('org.freedesktop.DBus.Error.ServiceUnknown', `The name ${GRIMSEL_NAME} was not provided by any .service files`);
    const bus = { getProxyObject: () => Promise.reject(absent) } as unknown as MessageBus;
    const handover = new Handover(bus, log, outbox, 1000);
    const ctl = new AbortController();
    const running = handover.run(ctl.signal);
    handover.delivered(1n, 500, 501, [['/r/./a', 'xxh128:00112233445566778899aabbccddeeff', '1MF']]);
    await until('a failed attempt', () => handover.lastError !== '');
    assert.equal(handover.lastError, `grimseld is not running (nobody owns ${GRIMSEL_NAME} on the bus)`);
    assert.deepEqual(lines, [`cannot hand over to grimseld; keeping files until it answers: ${handover.lastError}`]);
    ctl.abort();
    await running;
  });

  it('as a component: follows grimseld\'s bus name once started, re-sends at once to a new owner, and stop ends it', async () => {
    const hung = new FakeGrimseld(false);
    const next = new FakeGrimseld(true);
    let current = hung;
    const listeners: Array<(msg: unknown) => void> = [];
    const matches: string[] = [];
    const bus = {
      getProxyObject: () => Promise.resolve(current),
      on: (event: string, fn: (msg: unknown) => void) => { if (event === 'message') listeners.push(fn); },
      call: (msg: { member: string; body: string[] }) => { matches.push(`${msg.member} ${msg.body[0]}`); return Promise.resolve(); },
    } as unknown as MessageBus;
    const handover = new Handover(bus, quiet, outbox, 3_600_000);
    handover.delivered(1n, 500, 501, [['/r/./a', '', '1MF']]);
    await handover.start();
    assert.equal(matches.length, 1);
    assert.match(matches[0]!, new RegExp(`^AddMatch .*member='NameOwnerChanged',arg0='${GRIMSEL_NAME.replace(/\./g, '\\.')}'`));
    await until('the first call', () => hung.calls.length === 1);
    current = next;
    const owner = (to: string): void => listeners.forEach((fn) => fn({ type: dbus.MessageType.SIGNAL, sender: 'org.freedesktop.DBus',
      interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged', body: [GRIMSEL_NAME, ':1.5', to] }));
    owner(':1.9');
    await until('the files re-sent to the new grimseld', () => next.calls.length === 1);
    await handover.drained();
    assert.equal(handover.pending, 0);
    await handover.stop();
  });
});

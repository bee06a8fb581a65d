// A SIGTERM ends furkad and grimseld with exit code 0 while bus clients keep calling them (S1): a status poller's
// call that reaches a daemon after it let go of the bus goes unanswered; it must not end the stop with exit 1.
import { strict as assert } from 'node:assert';
import type * as dbus from 'dbus-next';
import { Ppu } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';
import { callMethod, within } from '../../src/dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH, GRIMSEL_IFACE, GRIMSEL_NAME, GRIMSEL_PATH } from '../../src/dbus/names.js';

/** Calls `call` from 20 loops at once until stop(); `answered` counts the calls answered so far. */
function keepCalling(call: () => Promise<unknown>): { answered: () => number; stop: () => Promise<void> } {
  let on = true;
  let answered = 0;
  const loops = Array.from({ length: 20 }, async () => {
    while (on) {
      // The daemon going away mid-call: the bus daemon answers NoReply or ServiceUnknown; within() in case it does not.
      try {
        await within(call(), 10_000, 'a call of the poller');
        answered++;
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  return { answered: () => answered, stop: async () => { on = false; await Promise.all(loops); } };
}

/** SIGTERMs `daemon` (alone, as KillMode=mixed does) while `call` keeps coming; returns its exit code. */
async function stopWhileCalled(daemon: { proc: { stop(graceMs?: number, term?: 'group' | 'leader'): Promise<number | null> } }, call: () => Promise<unknown>): Promise<number | null> {
  const poller = keepCalling(call);
  try {
    await eventually(() => poller.answered() >= 100, 30_000, 'the poller answered 100 times');
    return await daemon.proc.stop(30_000, 'leader');
  } finally {
    await poller.stop();
  }
}

describe('daemons stopped while bus clients keep calling them (S1)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-stopcalls' }).start();
  });
  after(async () => ppu?.stop());

  it('furkad exits 0 on SIGTERM while a poller reads its Detectors property, each of five times', async () => {
    for (let i = 0; i < 5; i++) {
      const props = (await ppu.client.getProxyObject(FURKA_NAME, FURKA_PATH)).getInterface('org.freedesktop.DBus.Properties');
      const furkad = ppu.furkad!;
      const code = await stopWhileCalled(furkad, () => callMethod(props, 'Get', FURKA_IFACE, 'Detectors'));
      assert.equal(code, 0, `stop ${i + 1}: furkad's exit code; its output ends:\n${furkad.proc.output().slice(-3000)}`);
      assert.match(furkad.proc.output(), /"msg":"stopped"/);
      await ppu.startFurkad();
    }
  });

  it('grimseld exits 0 on SIGTERM while a poller calls QueryStatus, each of five times', async () => {
    for (let i = 0; i < 5; i++) {
      const iface: dbus.ClientInterface = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(GRIMSEL_IFACE);
      const grimseld = ppu.grimseld!;
      const code = await stopWhileCalled(grimseld, () => callMethod(iface, 'QueryStatus', 1));
      assert.equal(code, 0, `stop ${i + 1}: grimseld's exit code; its output ends:\n${grimseld.proc.output().slice(-3000)}`);
      await ppu.startGrimseld();
    }
  });
});

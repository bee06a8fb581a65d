// A daemon's components (src/common/service.ts): started in order, stopped in reverse, each stop on its own,
// and a stop during start cancels it.
import { strict as assert } from 'node:assert';
import { component, Components, together, type Component } from '../../src/common/service.js';
import type { Logger } from '../../src/common/logger.js';

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (_obj: unknown, msg?: string) => { lines.push(`${level} ${msg ?? String(_obj)}`); };
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger };
}

function part(name: string, events: string[], opts: { start?: (signal: AbortSignal) => Promise<void>; stopFails?: boolean } = {}): Component {
  return component(name, async (signal) => {
    events.push(`start ${name}`);
    await opts.start?.(signal);
    events.push(`started ${name}`);
  }, () => {
    events.push(`stop ${name}`);
    if (opts.stopFails) throw new Error(`${name} would not stop`);
  });
}

const never = new Promise<void>(() => undefined);

describe('components of a daemon (start in order, stop in reverse)', () => {
  it('starts in the order given and stops in reverse, skipping the ones left out', async () => {
    const events: string[] = [];
    const c = new Components([part('a', events), undefined, part('b', events), part('c', events)], recordingLog().log);
    assert.equal(await c.start(never), true);
    await c.stop();
    assert.deepEqual(events, ['start a', 'started a', 'start b', 'started b', 'start c', 'started c', 'stop c', 'stop b', 'stop a']);
  });

  it('stops every component though one of them fails to, and says which', async () => {
    const events: string[] = [];
    const { log, lines } = recordingLog();
    const c = new Components([part('a', events), part('b', events, { stopFails: true }), part('c', events)], log);
    await c.start(never);
    await c.stop();
    assert.deepEqual(events.filter((e) => e.startsWith('stop')), ['stop c', 'stop b', 'stop a']);
    assert.deepEqual(lines, ['error stopping b failed']);
  });

  it('a stop during start tells the component starting, starts no other, and stops what started', async () => {
    const events: string[] = [];
    let requestStop!: () => void;
    const stopRequest = new Promise<void>((r) => { requestStop = r; });
    const c = new Components([
      part('a', events),
      part('b', events, { start: (signal) => new Promise((r) => { signal.addEventListener('abort', () => { events.push('b cancelled'); r(); }); requestStop(); }) }),
      part('c', events),
    ], recordingLog().log);
    assert.equal(await c.start(stopRequest), false);
    await c.stop();
    assert.deepEqual(events, ['start a', 'started a', 'start b', 'b cancelled', 'started b', 'stop b', 'stop a']);
  });

  it('a stop while a start is in flight waits for it before stopping that component', async () => {
    const events: string[] = [];
    let finish!: () => void;
    const c = new Components([part('a', events, { start: () => new Promise((r) => { finish = r; }) })], recordingLog().log);
    const starting = c.start(never);
    await new Promise((r) => setImmediate(r));
    const stopping = c.stop();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['start a'], 'not stopped while starting');
    finish();
    await stopping;
    assert.equal(await starting, false);
    assert.deepEqual(events, ['start a', 'started a', 'stop a']);
  });

  it('a start that fails stops what started before it and throws its error', async () => {
    const events: string[] = [];
    const c = new Components([part('a', events), part('b', events, { start: () => Promise.reject(new Error('port in use')) }), part('c', events)],
      recordingLog().log);
    await assert.rejects(c.start(never), /port in use/);
    assert.deepEqual(events, ['start a', 'started a', 'start b', 'stop b', 'stop a']);
  });

  it('together: starts its parts in order and stops them all at once', async () => {
    const events: string[] = [];
    const slow = (name: string): Component => component(name, () => { events.push(`start ${name}`); }, async () => {
      events.push(`stop ${name}`);
      await new Promise((r) => setTimeout(r, 5));
      events.push(`stopped ${name}`);
    });
    const c = new Components([together('loops', [slow('x'), slow('y')])], recordingLog().log);
    await c.start(never);
    await c.stop();
    assert.deepEqual(events.slice(0, 4), ['start x', 'start y', 'stop x', 'stop y'], 'the second stop does not wait for the first');
  });
});

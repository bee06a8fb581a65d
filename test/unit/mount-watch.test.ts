// A storage's mount point (G13), on a fake clock: checked at most once a second, a missing one said as a
// COPY_ERROR and repeated every minute (every 10 s while files wait), and its return logged once.
import { strict as assert } from 'node:assert';
import pino from 'pino';
import { MountWatch } from '../../src/grimseld/mount-watch.js';
import { MessageHub, type Message } from '../../src/grimseld/messages.js';

describe('the mount watch of a storage (G13)', () => {
  const setup = (): { watch: MountWatch; messages: Message[]; logged: string[]; checks: () => number; clock: { now: number }; mounted: { ok: boolean; dev: number } } => {
    const logged: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(String((JSON.parse(line) as { msg: string }).msg)); } });
    const hub = new MessageHub(log);
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    const clock = { now: 1_000_000 };
    // The mount point's device: the storage's file system while mounted, the root file system's when not.
    const mounted = { ok: false, dev: 1 };
    let n = 0;
    const watch = new MountWatch({ id: 'usb', type: 'OPTIONAL', target: '/mnt/usb/data', mountpoint: '/mnt/usb', writers: 1 }, hub, log,
      async () => { n++; return mounted.ok; }, () => clock.now, async () => (mounted.ok ? `${mounted.dev}:2` : '1:2'));
    return { watch, messages, logged, checks: () => n, clock, mounted };
  };

  it('needs no mount check without a mount point', async () => {
    const hub = new MessageHub(pino({ level: 'silent' }));
    const watch = new MountWatch({ id: 'i', type: 'INTERNAL', target: '/i', mountpoint: undefined, writers: 1 }, hub, pino({ level: 'silent' }),
      async () => { throw new Error('not asked'); });
    assert.equal(await watch.ok(() => 0), true);
  });

  it('without a mount point, says a target whose stat hangs does not answer, writes nothing, and goes on once it answers', async () => {
    const logged: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(String((JSON.parse(line) as { msg: string }).msg)); } });
    const hub = new MessageHub(log);
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    let answer: ((id: string) => void) | undefined;
    const statted: string[] = [];
    const watch = new MountWatch({ id: 'nfs', type: 'EXTERNAL', target: '/nfs/data', mountpoint: undefined, writers: 2 }, hub, log,
      async () => { throw new Error('no mount table without a mount point'); }, () => 0,
      (dir) => { statted.push(dir); return answer ? Promise.resolve('7:2') : new Promise<string>((resolve) => { answer = resolve; }); }, 50);
    assert.equal(await watch.ok(() => 2), false);
    assert.equal(watch.foundDown, true, 'copies that read from it wait');
    assert.match(messages[0]!.longMessage, /^storage nfs: \/nfs\/data does not answer; nothing is written to \/nfs\/data and its 2 files stay pending until it answers again$/);
    assert.deepEqual(statted, ['/nfs/data'], 'its target is what is asked');
    answer!('7:2'); // the server is back: the hung stat returns
    await new Promise((r) => setImmediate(r));
    assert.equal(await watch.ok(() => 2), true);
    assert.equal(watch.foundDown, false);
    assert.ok(logged.includes('storage answering again; copying resumes'), logged.join('\n'));
    assert.equal(messages.length, 1, 'said once');
  });

  it('says the files waiting as QueryStatus counts them: those counted failed before as counted failed, not pending (G9, G13)', async () => {
    const { watch, messages } = setup();
    assert.equal(await watch.ok(() => 3, () => ({ pending: 1, failed: 2 })), false);
    assert.equal(messages[0]!.longMessage, 'storage usb: /mnt/usb is not mounted; nothing is written to /mnt/usb/data and its 3 files wait until it is mounted: ' +
      '1 pending, and 2 counted failed (an earlier copy of them failed, as QueryStatus shows; each is tried again then)');
  });

  it('checks at most once a second, says a missing mount point with the files waiting, and repeats it sooner while files wait', async () => {
    const { watch, messages, checks, clock } = setup();
    assert.equal(await watch.ok(() => 3), false);
    assert.equal(await watch.ok(() => 3), false);
    assert.equal(checks(), 1, 'once within the second');
    assert.equal(messages.length, 1);
    assert.deepEqual([messages[0]!.errcode, messages[0]!.shortMessage], ['COPY_ERROR', '/mnt/usb:/mnt/usb/data']);
    assert.match(messages[0]!.longMessage, /\/mnt\/usb is not mounted; .* its 3 files stay pending/);
    clock.now += 5_000;
    await watch.ok(() => 3);
    assert.equal(messages.length, 1, 'not again within 10 s');
    clock.now += 5_001;
    await watch.ok(() => 3);
    assert.equal(messages.length, 2, 'again after 10 s with files waiting');
    clock.now += 30_000;
    await watch.ok(() => 0);
    assert.equal(messages.length, 2, 'not within a minute when nothing waits');
    clock.now += 30_001;
    await watch.ok(() => 0);
    assert.equal(messages.length, 3);
  });

  it('logs the mount point back once, and says it missing again when it goes', async () => {
    const { watch, messages, logged, clock, mounted } = setup();
    await watch.ok(() => 0);
    mounted.ok = true;
    clock.now += 1_001;
    assert.equal(await watch.ok(() => 0), true);
    clock.now += 1_001;
    await watch.ok(() => 0);
    assert.equal(logged.filter((l) => /mounted again/.test(l)).length, 1);
    mounted.ok = false;
    clock.now += 1_001;
    assert.equal(await watch.ok(() => 0), false);
    assert.equal(messages.length, 2, 'said at once when it goes again');
  });

  it('sees a storage unmounted within the second at once, by its mount point\'s device, and writes nothing meanwhile', async () => {
    const { watch, messages, checks, clock, mounted } = setup();
    mounted.ok = true;
    mounted.dev = 42;
    assert.equal(await watch.ok(() => 0), true);
    clock.now += 100;
    assert.equal(await watch.ok(() => 0), true);
    assert.equal(checks(), 1, 'the same device: no second look at the mount table');
    mounted.ok = false;
    clock.now += 100;
    assert.equal(await watch.ok(() => 2), false, 'not a second later: now');
    assert.equal(checks(), 2);
    assert.match(messages[0]!.longMessage, /\/mnt\/usb is not mounted/);
    // Another file system mounted there within the second is looked at again too.
    mounted.ok = true;
    clock.now += 1_001;
    assert.equal(await watch.ok(() => 0), true);
    mounted.dev = 43;
    clock.now += 100;
    assert.equal(await watch.ok(() => 0), true);
    assert.equal(checks(), 4, 'asked the mount table again');
  });

  it('says nothing and writes nothing when the device changes while the mount table is read, and looks again next time', async () => {
    const hub = new MessageHub(pino({ level: 'silent' }));
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    const devices = ['7:2', '8:2', '8:2', '8:2', '8:2'];
    let reads = 0;
    const watch = new MountWatch({ id: 'usb', type: 'OPTIONAL', target: '/mnt/usb/data', mountpoint: '/mnt/usb', writers: 1 }, hub,
      pino({ level: 'silent' }), async () => { reads++; return true; }, () => 0, async () => devices.shift());
    assert.equal(await watch.ok(() => 1), false, 'mounted meanwhile: not yet');
    assert.deepEqual(messages, [], 'and no alarm for it');
    assert.equal(await watch.ok(() => 1), true, 'the next call reads the table again');
    assert.equal(reads, 2);
  });

  it('shares one check among the writers that ask at once', async () => {
    const hub = new MessageHub(pino({ level: 'silent' }));
    let stats = 0;
    let release!: () => void;
    const hung = new Promise<void>((r) => { release = r; });
    const watch = new MountWatch({ id: 'nfs', type: 'EXTERNAL', target: '/mnt/nfs/data', mountpoint: '/mnt/nfs', writers: 4 }, hub,
      pino({ level: 'silent' }), async () => true, () => 0, async () => { stats++; await hung; return '9:2'; });
    const asked = [watch.ok(() => 0), watch.ok(() => 0), watch.ok(() => 0), watch.ok(() => 0)];
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(stats, 1, 'one stat in flight, however long it hangs');
    release();
    assert.deepEqual(await Promise.all(asked), [true, true, true, true]);
  });

  it('says a mount point whose stat hangs (a hung NFS server) does not answer, writes nothing, and never stats it twice at once', async () => {
    const hub = new MessageHub(pino({ level: 'silent' }));
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    let stats = 0;
    let clock = 0;
    const watch = new MountWatch({ id: 'nfs', type: 'EXTERNAL', target: '/mnt/nfs/data', mountpoint: '/mnt/nfs', writers: 4 }, hub,
      pino({ level: 'silent' }), async () => true, () => (clock += 1001), () => { stats++; return new Promise<string>(() => undefined); }, 50);
    assert.equal(await watch.ok(() => 3), false);
    assert.match(messages[0]!.longMessage, /\/mnt\/nfs does not answer; nothing is written to \/mnt\/nfs\/data and its 3 files stay pending until it is mounted and answers/);
    assert.equal(await watch.ok(() => 3), false);
    assert.equal(stats, 1, 'the hung stat is waited for again, not made again');
  });
});

// A storage read-only in grimseld's view alone (G10, G13): the shipped unit's mount namespace keeps a mount read-only
// as it was when grimseld started, after it was made writable again (found by hostile tester h11). A read-only bind
// of a writable file system is what grimseld's view then is; told apart from a file system that is read-only itself,
// and said with what to do. Real tmpfs mounts (tests run as root).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { MountWatch, READ_ONLY, READ_ONLY_HERE, readOnly, readOnlyHereAlone } from '../../src/grimseld/mount-watch.js';
import { MessageHub, type Message } from '../../src/grimseld/messages.js';

describe('a storage read-only in grimseld\'s view alone (G10, G13)', () => {
  let root: string;
  const mounted: string[] = [];
  const mount = (...args: string[]): void => {
    execFileSync('mount', args);
    mounted.unshift(args[args.length - 1]!);
  };
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'ro-view-')); });
  afterEach(() => {
    for (const m of mounted.splice(0)) execFileSync('umount', ['-l', m]);
    rmSync(root, { recursive: true, force: true });
  });

  it("tells a mount read-only in grimseld's view alone from one read-only for init too and from a read-only file system, and says to restart grimseld for the first", async () => {
    const disk = path.join(root, 'disk');
    const view = path.join(root, 'view');
    const ro = path.join(root, 'ro');
    for (const d of [disk, view, ro]) mkdirSync(d);
    mount('-t', 'tmpfs', '-o', 'size=1m', 'ro-view-disk', disk);
    mkdirSync(path.join(disk, 'data'));
    // What grimseld's namespace shows of a disk read-only at its start and writable since: the mount's own flag.
    mount('--bind', disk, view);
    execFileSync('mount', ['-o', 'remount,bind,ro', view]);
    mount('-t', 'tmpfs', '-o', 'ro,size=1m', 'ro-view-ro', ro);

    assert.equal(await readOnly([path.join(disk, 'data')]), false);
    assert.equal(await readOnly([path.join(view, 'data')]), true);
    // grimseld's namespace read-only, init's (the host's) writable: what the unit's namespace does.
    const own = (): Promise<string> => readFile('/proc/self/mountinfo', 'utf8');
    const hostWritable = async (): Promise<string> => (await own()).split('\n')
      .map((l) => (l.split(' ')[4] === view ? l.replace(/^((?:\S+ ){5})ro(?=[, ])/, '$1rw') : l)).join('\n');
    assert.equal(await readOnlyHereAlone([path.join(view, 'data')], { own, init: hostWritable }), true, 'the view alone');
    // The same read-only bind seen so by init too: an administrator's, where a restart would not help (r5).
    assert.equal(await readOnlyHereAlone([path.join(view, 'data')], { own, init: own }), false, "everyone's view");
    assert.equal(await readOnly([ro]), true);
    assert.equal(await readOnlyHereAlone([ro], { own, init: hostWritable }), false, 'the file system itself');

    const said = async (target: string, mountpoint: string): Promise<string> => {
      const hub = new MessageHub(pino({ level: 'silent' }));
      const messages: Message[] = [];
      hub.subscribe((m) => messages.push(m));
      const watch = new MountWatch({ id: 'usb', type: 'OPTIONAL', target, mountpoint, writers: 1 }, hub, pino({ level: 'silent' }));
      assert.equal(await watch.ok(() => 3), false, 'nothing written there');
      return messages.map((m) => m.longMessage).join('\n');
    };
    assert.match(READ_ONLY_HERE, /restart grimseld/);
    const fs = await said(ro, ro);
    assert.ok(fs.includes(READ_ONLY) && !fs.includes(READ_ONLY_HERE), fs);
  });
});

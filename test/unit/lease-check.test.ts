// Whether a file is still open for writing anywhere, asked of the kernel through a read lease (A2, A4): the
// question furka-agent asks before it sends a file as whole and before it deletes an acknowledged source. Real
// python3, real writers in other processes; fakes stand in for python3 only where a real one cannot show the
// case (one that is missing, one that hangs, one that dies).
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, linkSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deviceTypes, fsTypeOf, LeaseCheck, leasesTellOn, leasesTellWriters } from '../../src/agent/lease-check.js';
import { makedev } from '../../src/common/mounts.js';

/** A process that holds `file` as `python` code says, and prints "ready" once it does. */
async function holder(code: string, file: string): Promise<ChildProcess> {
  const p = spawn('python3', ['-c', `import mmap, os, sys, time\nf = sys.argv[1]\n${code}\nprint("ready", flush=True)\ntime.sleep(60)`, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`holder ended (${c})`)));
  });
  return p;
}

/** Maps the file shared and writable with libc's mmap, closes the descriptor, and shows none is left open on it. */
const MAP_ONLY = `import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(f, os.O_RDWR)
assert libc.mmap(None, 5, 3, 1, fd, 0) not in (None, ctypes.c_void_p(-1).value)
os.close(fd)
assert not [d for d in os.listdir("/proc/self/fd") if os.path.realpath("/proc/self/fd/" + d) == os.path.realpath(f)]`;

describe('lease check: is a file still open for writing anywhere (A2, A4)', function () {
  // Each writer here is a python3 process, whose start takes from 0.3 s to seconds on a busy machine.
  this.timeout(60_000);
  const work = mkdtempSync(path.join(os.tmpdir(), 'lease-'));
  const checks: LeaseCheck[] = [];
  const holders: ChildProcess[] = [];
  const fds: number[] = [];
  const check = (o?: ConstructorParameters<typeof LeaseCheck>[0]): LeaseCheck => {
    const c = new LeaseCheck(o);
    checks.push(c);
    return c;
  };
  const file = (name: string, text = 'image'): { path: string; fd: number } => {
    const p = path.join(work, name);
    writeFileSync(p, text);
    const fd = openSync(p, 'r');
    fds.push(fd);
    return { path: p, fd };
  };
  const script = (name: string, text: string): string => {
    const f = path.join(work, name);
    writeFileSync(f, text);
    chmodSync(f, 0o755);
    return f;
  };
  afterEach(() => {
    checks.splice(0).forEach((c) => c.close());
    holders.splice(0).forEach((h) => h.kill('SIGKILL'));
    fds.splice(0).forEach((fd) => closeSync(fd));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('tells files nobody writes from files another process writes: under another name, or through a mapping only', async () => {
    const free = file('free.cbf');
    const appended = file('appended.cbf');
    holders.push(await holder('w = open(f, "ab")', appended.path));
    const linked = file('linked.cbf');
    linkSync(linked.path, path.join(work, 'other-name.cbf'));
    holders.push(await holder('w = open(f, "ab")', path.join(work, 'other-name.cbf')));
    // A writer that mapped the file shared and writable, then closed its descriptor: it still writes. (libc's
    // mmap: python's mmap module keeps a descriptor of its own.)
    const mapped = file('mapped.cbf');
    holders.push(await holder(MAP_ONLY, mapped.path));
    const read = file('read.cbf');
    holders.push(await holder('r = open(f, "rb")', read.path));
    const c = check();
    assert.deepEqual(await c.written([free.fd, appended.fd, linked.fd, mapped.fd, read.fd]), [false, true, true, true, false]);
    // Once the writers are gone, the same files are free; the one child answers every question.
    const pid = c.pid;
    await Promise.all(holders.splice(0).map((h) => new Promise((resolve) => { h.once('exit', resolve); h.kill('SIGKILL'); })));
    assert.deepEqual(await c.written([appended.fd, linked.fd, mapped.fd]), [false, false, false]);
    assert.equal(c.pid, pid, 'the same child');
  });

  it('counts a descriptor of its own process open for writing too (the agent never writes; furkad beside it in a test might)', async () => {
    const f = file('own.cbf');
    const w = openSync(f.path, 'a');
    try {
      assert.deepEqual(await check().written([f.fd]), [true]);
    } finally {
      closeSync(w);
    }
  });

  it('sends the first question of a turn at once and the rest of that turn as one line, each caller with its own answers', async () => {
    // The real python3 behind a tee that keeps every line the agent sends it.
    const lines = path.join(work, 'lines');
    const c = check({ python: script('counting', `#!/bin/sh\ntee -a ${lines} | python3 "$@"\n`) });
    const all = Array.from({ length: 20 }, (_, i) => file(`many-${i}.cbf`));
    const busy = all.filter((_, i) => i % 3 === 0);
    holders.push(...await Promise.all(busy.map((b) => holder('w = open(f, "ab")', b.path))));
    // Callers asking one descriptor, and some two (a file and the one after it), all in this turn.
    const asked = all.map((f, i) => (i % 4 === 1 && all[i + 1] ? [f.fd, all[i + 1]!.fd] : [f.fd]));
    const answers = await Promise.all(asked.map((fds) => c.written(fds)));
    const isBusy = (fd: number): boolean => busy.some((b) => b.fd === fd);
    assert.deepEqual(answers, asked.map((fds) => fds.map(isBusy)));
    // The first question at once (one descriptor), the other 19 callers' together at the end of the turn.
    // tee writes each line to python3 before it writes it to the file: the answer may come first.
    const linesSent = async (n: number): Promise<string[]> => {
      let got: string[] = [];
      for (const end = Date.now() + 5000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
        got = readFileSync(lines, 'utf8').split('\n').filter(Boolean);
        if (got.length >= n) break;
      }
      return got;
    };
    const sent = await linesSent(2);
    assert.deepEqual(sent.map((l) => l.split(' ').length), [1, asked.flat().length - 1], sent.join('\n'));
    // A question of a later turn is a line of its own.
    assert.deepEqual(await c.written([busy[0]!.fd]), [true]);
    assert.deepEqual(await c.written([all[1]!.fd]), [false]);
    assert.equal((await linesSent(4)).length, 4);
  });

  it('starts no child after close(), also for questions gathered in the turn it was called in', async () => {
    const starts = path.join(work, 'close-starts');
    const c = check({ python: script('close-counting', `#!/bin/sh\necho start >> ${starts}\nexec python3 "$@"\n`) });
    const f = file('closing.cbf');
    assert.deepEqual(await c.written([f.fd]), [false], 'the child runs');
    const first = c.written([f.fd]); // goes to the child at once
    const gathered = c.written([f.fd]); // waits for the end of the turn
    c.close();
    assert.deepEqual(await first, [undefined]);
    assert.deepEqual(await gathered, [undefined]);
    assert.deepEqual(await c.written([f.fd]), [undefined]);
    c.prepare();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(readFileSync(starts, 'utf8'), 'start\n', 'not started again');
  });

  it('says "do not know", never "free", without python3, and reports why once', async () => {
    const troubles: string[] = [];
    const c = check({ python: path.join(work, 'no-such-python3'), onTrouble: (w) => troubles.push(w) });
    const f = file('nopython.cbf');
    assert.deepEqual(await c.written([f.fd, f.fd]), [undefined, undefined]);
    assert.deepEqual(await c.written([f.fd]), [undefined]);
    assert.equal(troubles.length, 1, troubles.join('; '));
    assert.match(troubles[0]!, /no-such-python3.*ENOENT/);
  });

  it('trusts leases only on local file systems: the mount holding the root, as /proc/self/mountinfo says', () => {
    const info = [
      '22 1 8:1 / / rw - ext4 /dev/sda1 rw',
      '30 22 0:40 / /ramdisk rw,nosuid - tmpfs tmpfs rw',
      '31 22 0:41 / /data/nfs\\040share rw - nfs4 server:/x rw',
      '32 30 0:42 / /ramdisk/sub rw shared:5 - cifs //srv/x rw',
      '33 30 0:43 / /ramdisk rw - xfs /dev/sdb rw',
    ].join('\n');
    assert.equal(fsTypeOf('/ramdisk', info), 'xfs', 'the later of two mounts on one point is on top');
    assert.equal(fsTypeOf('/ramdisk/det1', info), 'xfs');
    assert.equal(fsTypeOf('/ramdisk/sub/x', info), 'cifs', 'optional fields before the dash');
    assert.equal(fsTypeOf('/ramdisks', info), 'ext4', 'a prefix of a name is not a parent');
    assert.equal(fsTypeOf('/data/nfs share/run', info), 'nfs4', 'escaped blanks in mount points');
    assert.equal(leasesTellWriters('/dev/shm').ok, true, '/dev/shm is tmpfs here');
    assert.equal(leasesTellWriters('/proc').ok, false);
  });

  it('asks about a file on a file system mounted below the root only if that one\'s leases tell writers too', async () => {
    // /dev/shm (tmpfs) stands for a ramdisk mounted below the root (in /tmp): another device, leases that tell.
    const elsewhere = mkdtempSync(path.join('/dev/shm', 'lease-'));
    try {
      const other = path.join(elsewhere, 'other.cbf');
      writeFileSync(other, 'image');
      const otherFd = openSync(other, 'r');
      fds.push(otherFd);
      holders.push(await holder('w = open(f, "ab")', other));
      assert.ok(leasesTellWriters(work).ok, `the test's root ${work} must be on a file system with leases`);
      assert.notEqual(statSync(other).dev, statSync(work).dev);
      assert.deepEqual(await check({ root: work }).written([otherFd]), [true]);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
    // An NFS mount below the root (its leases are refused for reasons of its own): not asked about.
    const types = deviceTypes('36 25 0:52 / /ramdisk rw - tmpfs tmpfs rw\n37 36 0:53 / /ramdisk/nfs rw - nfs4 srv:/x rw\n38 36 8:1 / /ramdisk/disk rw - ext4 /dev/sda1 rw\n');
    const root = { dev: 52, type: 'tmpfs' };
    assert.deepEqual([52, 53, (1 & 0xff) | (8 << 8), 99].map((d) => leasesTellOn(d, root, types)), [true, false, true, false]);
    assert.equal(leasesTellOn(99, { dev: 52, type: 'btrfs' }, types), true, 'a btrfs subvolume (a device mountinfo does not list) on a btrfs root');
    // Device numbers as Node's st_dev has them (glibc's makedev), also past 32 bits.
    assert.equal(makedev(8, 1), 0x801);
    assert.equal(makedev(0, 0x100000), 2 ** 32);
    assert.equal(makedev(0x1000, 0), 2 ** 44);
  });

  it('says "do not know" for a descriptor the kernel will not lease (not a regular file: a directory)', async () => {
    const troubles: string[] = [];
    const dir = openSync(work, 'r');
    fds.push(dir);
    const f = file('beside-dir.cbf');
    assert.deepEqual(await check({ onTrouble: (w) => troubles.push(w) }).written([dir, f.fd]), [undefined, false]);
    assert.match(troubles.join('; '), /no read lease \((EISDIR|EINVAL|EACCES|EBADF)/);
  });

  it('gives up a child that does not answer in time; one that keeps dying is not started again for a pause', async () => {
    const f = file('hang.cbf');
    const troubles: string[] = [];
    const hung = check({ python: script('hangs', '#!/bin/sh\nexec sleep 60\n'), timeoutMs: 200, onTrouble: (w) => troubles.push(w) });
    assert.deepEqual(await hung.written([f.fd]), [undefined]);
    assert.match(troubles.join('; '), /did not answer within 0.2 s/);
    const starts = path.join(work, 'starts');
    const dies = check({ python: script('dies', `#!/bin/sh\necho start >> ${starts}\necho broken >&2\nexit 3\n`), pauseMs: 500, onTrouble: (w) => troubles.push(w) });
    for (let i = 0; i < 3; i++) assert.deepEqual(await dies.written([f.fd]), [undefined]);
    assert.match(troubles.join('; '), /ended \(exit 3\): broken/);
    assert.match(troubles.join('; '), /3 times in a row: not asked for 0.5 s/);
    for (let i = 0; i < 3; i++) assert.deepEqual(await dies.written([f.fd]), [undefined]);
    assert.equal(readFileSync(starts, 'utf8'), 'start\n'.repeat(3), 'not started again during the pause');
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(await dies.written([f.fd]), [undefined]);
    assert.equal(readFileSync(starts, 'utf8'), 'start\n'.repeat(4), 'tried again after it');
  });
});

// The fill state on Node 16 (CentOS 7), which has no fs.statfs: one python3 child answers statfs(2) for every
// query, instead of a `stat -f` process (a fork of grimseld) each time (G6, G7). The fakes below stand in for
// python3 where a real one cannot show the case: a hung mount, an interpreter that cannot run.
import { strict as assert } from 'node:assert';
import * as fsp from 'node:fs/promises';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StatfsHelper, statfsByCommand, type FsBlocks } from '../../src/common/statfs-helper.js';

/** statfs(2) as Node reports it (18.15 and later), else as `stat -f` does. */
const reference = (fsp as unknown as { statfs?: (d: string) => Promise<FsBlocks> }).statfs ?? statfsByCommand;
/** File systems of different sizes, so that answers swapped between them would show. */
const DIRS = ['/', '/proc', '/dev/shm'];

function sameFileSystem(a: FsBlocks, b: FsBlocks, dir: string): void {
  assert.equal(a.blocks, b.blocks, `${dir} blocks`);
  assert.equal(a.bsize, b.bsize, `${dir} block size`);
  // Free counts move with other writers between the two calls: within 1 % of the size.
  assert.ok(Math.abs(a.bavail - b.bavail) <= b.blocks / 100 + 1, `${dir} available ${a.bavail} vs ${b.bavail}`);
}

describe('statfs without fs.statfs (Node 16): one helper process', () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'statfs-'));
  const helpers: StatfsHelper[] = [];
  const helper = (o?: ConstructorParameters<typeof StatfsHelper>[0]): StatfsHelper => {
    const h = new StatfsHelper(o);
    helpers.push(h);
    return h;
  };
  const script = (name: string, text: string): string => {
    const f = path.join(work, name);
    writeFileSync(f, text);
    chmodSync(f, 0o755);
    return f;
  };
  afterEach(() => helpers.splice(0).forEach((h) => h.close()));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('reads the same blocks as statfs(2), for many queries at once, errors among them, in one process', async () => {
    const refs = new Map(await Promise.all(DIRS.map(async (d) => [d, await reference(d)] as const)));
    assert.notEqual(refs.get('/')!.blocks, refs.get('/dev/shm')!.blocks, 'the test needs file systems of different sizes');
    const h = helper();
    const asked = Array.from({ length: 60 }, (_, i) => (i % 7 === 3 ? '/no/such/dir' : DIRS[i % DIRS.length]!));
    const got = await Promise.allSettled(asked.map((d) => h.statfs(d)));
    const pid = h.pid;
    assert.ok(pid, 'a helper runs');
    for (const [i, d] of asked.entries()) {
      const r = got[i]!;
      if (d === '/no/such/dir') {
        assert.equal(r.status, 'rejected', `${d} fails`);
        assert.match(String((r as PromiseRejectedResult).reason), /statfs \/no\/such\/dir: .*No such file/);
      } else {
        assert.equal(r.status, 'fulfilled', `${d} answered`);
        sameFileSystem((r as PromiseFulfilledResult<FsBlocks>).value, refs.get(d)!, d);
      }
    }
    sameFileSystem(await h.statfs('/'), refs.get('/')!, '/');
    assert.equal(h.pid, pid, 'the same process answered every query');
  });

  it('starts another helper when its helper was killed', async () => {
    const h = helper();
    await h.statfs('/');
    const first = h.pid!;
    process.kill(first, 'SIGKILL');
    for (let i = 0; i < 250 && h.pid === first; i++) await new Promise((r) => setTimeout(r, 20));
    sameFileSystem(await h.statfs('/'), await reference('/'), '/');
    assert.ok(h.pid !== undefined && h.pid !== first, 'a new helper');
  });

  it('a hung mount fails its own queries after the timeout, not the others, and is not asked again meanwhile', async () => {
    // python3 as the helper, but statvfs of /hang never returns (a dead NFS server).
    const fake = script('hangs.py', `#!/usr/bin/env python3
import json, os, sys, threading, time
lock = threading.Lock()
def answer(q):
    if q["dir"] == "/hang":
        time.sleep(3600)
    s = os.statvfs(q["dir"])
    with lock:
        sys.stdout.write(json.dumps({"id": q["id"], "ok": [s.f_blocks, s.f_bfree, s.f_bavail, s.f_frsize]}) + "\\n")
        sys.stdout.flush()
for line in iter(sys.stdin.readline, ""):
    t = threading.Thread(target=answer, args=(json.loads(line),)); t.daemon = True; t.start()
`);
    const h = helper({ python: fake, timeoutMs: 2000 });
    const hung = h.statfs('/hang');
    const hungToo = h.statfs('/hang');
    sameFileSystem(await h.statfs('/'), await reference('/'), '/'); // answered while /hang hangs
    await assert.rejects(hung, /statfs \/hang: no answer within 2 s/);
    await assert.rejects(hungToo, /statfs \/hang: no answer within 2 s/);
    await assert.rejects(h.statfs('/hang'), /statfs \/hang: still no answer/);
    sameFileSystem(await h.statfs('/proc'), await reference('/proc'), '/proc');
  });

  it('a python3 that cannot run: its queries fail saying why, then `stat -f` answers', async () => {
    const broken = script('broken.sh', '#!/bin/sh\necho "python3: cannot load its standard library" >&2\nexit 3\n');
    const h = helper({ python: broken });
    for (let i = 0; i < 3; i++) await assert.rejects(h.statfs('/'), /statfs helper .* ended \(exit 3\): python3: cannot load its standard library/);
    assert.ok(h.fallback, 'stat -f after three ends in a row');
    sameFileSystem(await h.statfs('/'), await reference('/'), '/');
  });

  it('a python3 that cannot be started (not executable): its queries fail saying why, then `stat -f` answers', async () => {
    const unrunnable = path.join(work, 'not-executable');
    writeFileSync(unrunnable, '#!/bin/sh\n');
    chmodSync(unrunnable, 0o644);
    const h = helper({ python: unrunnable });
    for (let i = 0; i < 3; i++) await assert.rejects(h.statfs('/'), /statfs helper \(.*not-executable\): .*EACCES/);
    assert.ok(h.fallback, 'stat -f after three failed starts in a row, not a spawn per query for ever');
    sameFileSystem(await h.statfs('/'), await reference('/'), '/');
  });

  it('without python3, asks `stat -f` instead', async () => {
    const h = helper({ python: '/nonexistent/python3' });
    sameFileSystem(await h.statfs(os.tmpdir()), await reference(os.tmpdir()), os.tmpdir());
    await assert.rejects(h.statfs('/no/such/dir'), /stat -f \/no\/such\/dir/);
  });
});

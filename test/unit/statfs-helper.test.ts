// The fill state on Node 16 (CentOS 7), which has no fs.statfs: one python3 child answers statfs(2) for every
// query, instead of a `stat -f` process (a fork of grimseld) each time (G6, G7).
import { strict as assert } from 'node:assert';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { StatfsHelper, statfsByCommand, type FsBlocks } from '../../src/grimseld/statfs-helper.js';

/** statfs(2) as Node reports it (18.15 and later), else as `stat -f` does. */
const reference = (fsp as unknown as { statfs?: (d: string) => Promise<FsBlocks> }).statfs ?? statfsByCommand;
const DIRS = ['/', os.tmpdir(), '/proc'];

function sameFileSystem(a: FsBlocks, b: FsBlocks, dir: string): void {
  assert.equal(a.blocks, b.blocks, `${dir} blocks`);
  assert.equal(a.bsize, b.bsize, `${dir} block size`);
  // Free counts move with other writers between the two calls: within 1 % of the size.
  assert.ok(Math.abs(a.bavail - b.bavail) <= b.blocks / 100 + 1, `${dir} available ${a.bavail} vs ${b.bavail}`);
}

describe('statfs without fs.statfs (Node 16): one helper process', () => {
  let helper: StatfsHelper;
  beforeEach(() => { helper = new StatfsHelper(); });
  afterEach(() => helper.close());

  it('reads the same blocks as statfs(2), for many queries at once, in one process', async () => {
    const asked = Array.from({ length: 60 }, (_, i) => DIRS[i % DIRS.length]!);
    const got = await Promise.all(asked.map((d) => helper.statfs(d)));
    const pid = helper.pid;
    assert.ok(pid, 'a helper runs');
    for (const [i, d] of asked.entries()) sameFileSystem(got[i]!, await reference(d), d);
    await helper.statfs('/');
    assert.equal(helper.pid, pid, 'the same process answered every query');
  });

  it('names the directory when it cannot read it, and answers the next query', async () => {
    await assert.rejects(helper.statfs('/no/such/dir'), /statfs \/no\/such\/dir: .*No such file/);
    sameFileSystem(await helper.statfs('/'), await reference('/'), '/');
  });

  it('starts another helper when its helper was killed', async () => {
    await helper.statfs('/');
    const first = helper.pid!;
    process.kill(first, 'SIGKILL');
    for (let i = 0; i < 250 && helper.pid === first; i++) await new Promise((r) => setTimeout(r, 20));
    sameFileSystem(await helper.statfs('/'), await reference('/'), '/');
    assert.ok(helper.pid !== undefined && helper.pid !== first, 'a new helper');
  });

  it('without python3, asks `stat -f` instead', async () => {
    const without = new StatfsHelper('/nonexistent/python3');
    try {
      sameFileSystem(await without.statfs(os.tmpdir()), await reference(os.tmpdir()), os.tmpdir());
      await assert.rejects(without.statfs('/no/such/dir'), /stat -f \/no\/such\/dir/);
    } finally {
      without.close();
    }
  });
});

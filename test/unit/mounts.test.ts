// The fill state on Node 16 (CentOS 7), which has no fs.statfs: `stat -f` must say what statfs(2) says (G6, G7).
import { strict as assert } from 'node:assert';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { execFileSync } from 'node:child_process';
import { statfsByCommand, type FsBlocks } from '../../src/grimseld/mounts.js';

describe('file system fill state without fs.statfs (Node 16)', () => {
  it('reads the same blocks through stat -f as statfs(2) through Node', async function () {
    // Node 18.15+ has fs.statfs; on Node 16 the comparison is with Python's os.statvfs (statvfs(3), the same
    // system call underneath).
    const node = (fsp as unknown as { statfs?: (d: string) => Promise<FsBlocks> }).statfs ?? statvfsByPython;
    for (const dir of ['/', os.tmpdir(), '/proc']) {
      const [a, b]: FsBlocks[] = await Promise.all([statfsByCommand(dir), node(dir)]);
      assert.equal(a!.blocks, b!.blocks, `${dir} blocks`);
      assert.equal(a!.bsize, b!.bsize, `${dir} block size`);
      // Free counts move with other writers between the two calls: within 1 % of the size.
      assert.ok(Math.abs(a!.bavail - b!.bavail) <= b!.blocks / 100 + 1, `${dir} available ${a!.bavail} vs ${b!.bavail}`);
    }
  });

  it('names the directory when it cannot read it', async () => {
    await assert.rejects(statfsByCommand('/no/such/dir'), /stat -f \/no\/such\/dir/);
  });
});

/** statvfs(3) of `dir` as Python reports it, in statfs's terms. */
async function statvfsByPython(dir: string): Promise<FsBlocks> {
  const out = execFileSync('python3', ['-c', 'import os,sys;s=os.statvfs(sys.argv[1]);print(s.f_blocks,s.f_bfree,s.f_bavail,s.f_bsize)', dir], { encoding: 'utf8' });
  const [blocks, bfree, bavail, bsize] = out.trim().split(' ').map(Number) as [number, number, number, number];
  return { blocks, bfree, bavail, bsize };
}

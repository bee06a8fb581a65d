// The fill state on Node 16 (CentOS 7), which has no fs.statfs: `stat -f` must say what statfs(2) says (G6, G7).
import { strict as assert } from 'node:assert';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { statfsByCommand, type FsBlocks } from '../../src/grimseld/mounts.js';

describe('file system fill state without fs.statfs (Node 16)', () => {
  it('reads the same blocks through stat -f as statfs(2) through Node', async function () {
    const node = (fsp as unknown as { statfs?: (d: string) => Promise<{ blocks: number; bfree: number; bavail: number; bsize: number }> }).statfs;
    assert.ok(node, 'this test compares with Node 18.15+ fs.statfs, which the test machine has');
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

// How a daemon's process ends (S1): with main's exit code once main has stopped everything, also when
// something nothing can cancel (a stat of a hung NFS mount in libuv's pool) still holds the event loop.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const service = path.resolve(__dirname, '../../src/common/service.js');

/** Runs `body` (with runDaemon in scope) in a new node process; resolves with its exit code. */
function daemon(body: string): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', `const { runDaemon } = require(${JSON.stringify(service)});\n${body}`], { stdio: 'ignore' });
    child.on('exit', (code) => resolve(code));
  });
}

describe('a daemon process ending (S1)', () => {
  it('exits with main\'s code as soon as nothing holds its event loop', async () => {
    assert.equal(await daemon('runDaemon("d", async () => 3, 60_000);'), 3);
  });

  it('exits with main\'s code after the grace although something still holds the event loop', async () => {
    // A timer that is never cleared stands for the hung stat: without the grace the child would never end.
    assert.equal(await daemon('setInterval(() => undefined, 1000); runDaemon("d", async () => 0, 200);'), 0);
  });
});

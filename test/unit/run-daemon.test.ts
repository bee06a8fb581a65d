// How a daemon's process ends (S1): with main's exit code once main has stopped everything, also when
// something nothing can cancel (a stat of a hung NFS mount in libuv's pool) still holds the event loop.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const service = path.resolve(__dirname, '../../src/common/service.js');
const rotation = path.resolve(__dirname, '../../src/common/log-rotation.js');

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

  it('ends on main\'s failure only once the lines logged before it are in the log file (S4)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'run-daemon-log-'));
    try {
      const logfile = path.join(dir, 'd.log');
      const code = await daemon(`const { RotatingLog } = require(${JSON.stringify(rotation)});
        const log = new RotatingLog({ logfile: ${JSON.stringify(logfile)} });
        runDaemon("d", async () => { for (let i = 0; i < 2000; i++) log.write('line ' + i + ' ' + 'x'.repeat(200) + '\\n'); throw new Error('stop failed'); });`);
      assert.equal(code, 1);
      const lines = readFileSync(`${logfile}.1`, 'utf8').split('\n').filter(Boolean);
      assert.equal(lines.length, 2000, 'every line logged before the failure');
      assert.equal(lines[1999]!.split(' ')[1], '1999');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The Python clients (G11) and their examples against a running grimseld: runs python/tests with
// python3 -m unittest, and the message example across a grimseld restart (reconnect).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { freePort } from '../fixtures/net.js';
import { grimselTcpPorts } from '../fixtures/line-client.js';
import { startProcess } from '../fixtures/processes.js';
import { statusRecord } from '../../src/grimseld/status-server.js';
import { callMethod } from '../../src/dbus/bus.js';

const PYTHON_DIR = path.resolve(__dirname, '../../../python');

describe('Python clients against grimseld (G11)', function () {
  this.timeout(240_000);
  let ppu: Ppu;
  let breakable: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-python' });
    // The 'flaky' storage works until a test replaces `breakable` by a regular file: from then on only files
    // added after that fail, so the COPY_ERROR a test waits for is about its own file (messages are rate limited).
    breakable = path.join(ppu.work, 'flaky');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.flaky': { type: 'OPTIONAL', target: path.join(breakable, 'data'), n_copy_processes: 1 },
    };
    // A fixed message port, so that the example client finds grimseld again after a restart.
    ppu.opts.grimseld = { message_port: await freePort() };
    await ppu.start();
    for (const [uid, n] of [[600, 3], [610, 5]] as const) {
      await ppu.startShift(uid, uid + 1, []);
      for (let i = 0; i < n; i++) writeImage(ppu.detectorRamdisks['1MF']!, `s${uid}/img${i}.cbf`, 4000);
      await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === uid && r[3] === 'internal' && r[5] === BigInt(n)),
        30_000, `shift ${uid} copied to internal`);
    }
  });
  after(async () => ppu?.stop());

  it('passes python/tests (python3 -m unittest) with the classic classes and the examples', async () => {
    const ports = await grimselTcpPorts(ppu.client);
    const expected = (await ppu.queryStatus(-1)).filter((r) => r[3] === 'internal').map(statusRecord);
    const addDir = path.join(ppu.work, 'operator');
    mkdirSync(addDir, { recursive: true });
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve) => {
      execFile('python3', ['-m', 'unittest', 'discover', '-v', '-s', 'tests', '-t', '.'], {
        cwd: PYTHON_DIR,
        timeout: 200_000,
        env: {
          ...process.env,
          PPU_GRIMSEL_HOST: '127.0.0.1',
          PPU_STATUS_PORT: String(ports.status),
          PPU_MESSAGE_PORT: String(ports.message),
          PPU_EXPECTED_INTERNAL: JSON.stringify(expected),
          PPU_FIFO: path.join(ppu.work, 'run', 'files'),
          PPU_ADD_DIR: addDir,
          PPU_BREAKABLE: breakable,
          PYTHONDONTWRITEBYTECODE: '1',
        },
      }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }));
    });
    assert.equal(code, 0, output);
    assert.match(output, /^Ran \d+ tests/m, output);
    assert.doesNotMatch(output, /skipped/, `no test may be skipped:\n${output}`);
  });

  it('the message example reconnects after grimseld restarts and reports the next COPY_ERROR', async () => {
    const port = (await grimselTcpPorts(ppu.client)).message;
    const example = startProcess('python3', [path.join(PYTHON_DIR, 'examples/grimsel_messages.py'), '127.0.0.1', '--port', String(port), '--timeout', '0.5'],
      { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' } });
    try {
      const connects = (): number => (example.output().match(/connected to 127\.0\.0\.1/g) ?? []).length;
      await eventually(() => connects() >= 1, 30_000, 'the example to connect');
      await ppu.grimseld!.stop();
      await eventually(() => /disconnected from .*reconnecting in 0\.5 s/.test(example.output()), 30_000, 'the example to notice');
      await ppu.startGrimseld();
      await eventually(() => connects() >= 2, 30_000, `the example to reconnect:\n${example.output()}`);
      if (!existsSync(breakable) || lstatSync(breakable).isDirectory()) {
        if (existsSync(breakable)) renameSync(breakable, `${breakable}.away2`);
        writeFileSync(breakable, 'a file where a directory should be\n');
      }
      const seen = example.output().length;
      const dir = path.join(ppu.work, 'operator2');
      mkdirSync(path.join(dir, 'again'), { recursive: true });
      writeFileSync(path.join(dir, 'again', 'after-restart.cbf'), 'data');
      await callMethod(await ppu.grimsel(), 'AddFile', `${dir}/./again/after-restart.cbf`);
      await eventually(() => /COPY_ERROR \S+ -> \S+: .*storage flaky/.test(example.output().slice(seen)), 90_000,
        `the example to print the COPY_ERROR:\n${example.output()}`);
    } finally {
      await example.stop();
    }
  });
});

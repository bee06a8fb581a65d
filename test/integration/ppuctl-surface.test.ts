// ppuctl at the edges an operator reaches: a daemon that does not answer, stray words, odd files (S7).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { PPUCTL_BIN, Ppu } from '../fixtures/ppu.js';

interface Run { code: number; stdout: string; stderr: string; ms: number }

function ppuctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [PPUCTL_BIN, ...args], { env: { ...process.env, ...env }, timeout: 90_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr, ms: Date.now() - started }));
  });
}

const noStack = (r: Run): void => assert.doesNotMatch(r.stderr + r.stdout, /^\s+at /m, 'no stack trace');

describe('ppuctl and a daemon that does not answer (S7)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  const run = (...args: string[]): Promise<Run> => ppuctl(args, { DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address });
  /** Runs `body` with the daemon's process stopped (SIGSTOP): it owns its bus name and answers nothing. */
  async function whileStopped(pid: number, body: () => Promise<void>): Promise<void> {
    process.kill(pid, 'SIGSTOP');
    try {
      await body();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }

  before(async () => {
    ppu = await new Ppu({ prefix: 'ppuctl-stopped' }).start();
  });
  after(async () => ppu?.stop());

  it('status gives up on a stopped grimseld within seconds, says so, shows furkad, exit 3', async () => {
    await whileStopped(ppu.grimseld!.proc.child.pid!, async () => {
      const r = await run('status');
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.ms < 15_000, `answered after ${r.ms} ms`);
      assert.match(r.stdout, /^grimseld: did not answer within 5 s \(stopped, hung or overloaded\?\)\n/);
      assert.match(r.stdout, /\b1MF\b/, `furkad's detector table: ${r.stdout}`);
      noStack(r);
      const add = await run('add', '/tmp/./x');
      assert.equal(add.code, 3);
      assert.equal(add.stderr, 'ppuctl: grimseld did not answer within 5 s (stopped, hung or overloaded?)\n');
    });
  });

  it('status, shift show and shift start give up on a stopped furkad within seconds, naming it, exit 3', async () => {
    await whileStopped(ppu.furkad!.proc.child.pid!, async () => {
      const status = await run('status');
      assert.equal(status.code, 3, status.stderr);
      assert.ok(status.ms < 15_000, `answered after ${status.ms} ms`);
      assert.match(status.stdout, /\| Storage\s*\| Pending/, "grimseld's table");
      assert.match(status.stdout, /\nfurkad: did not answer within 5 s \(stopped, hung or overloaded\?\)\n$/);
      const json = JSON.parse((await run('status', '--json')).stdout) as { furkad: { error: string } };
      assert.match(json.furkad.error, /^furkad did not answer within 5 s/);
      for (const args of [['shift', 'show'], ['shift', 'start', '-u', '900:901']]) {
        const r = await run(...args);
        assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(r.ms < 15_000, `${args.join(' ')} answered after ${r.ms} ms`);
        assert.match(r.stderr, /^ppuctl: furkad did not answer within 5 s \(stopped, hung or overloaded\?\)/);
        noStack(r);
      }
    });
    // Running again, furkad answers as before.
    const show = await run('shift', 'show');
    assert.equal(show.code, 0, show.stderr);
  });
});

// ppuctl at the edges an operator reaches: a daemon that does not answer, stray words, odd files (S7).
import { strict as assert } from 'node:assert';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { FURKAD_BIN, GRIMSELD_BIN, PPUCTL_BIN, Ppu, tempDir } from '../fixtures/ppu.js';
import { startBus } from '../fixtures/bus-daemon.js';

interface Run { code: number; stdout: string; stderr: string; ms: number }

function ppuctl(args: string[], env: NodeJS.ProcessEnv = {}, bin = PPUCTL_BIN): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 90_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr, ms: Date.now() - started }));
  });
}

/**
 * ppuctl with its stdout read until `enough` says so (at once when undefined), then closed, as `| head -1` does;
 * resolves with its exit code and stderr.
 */
function closedEarly(args: string[], env: NodeJS.ProcessEnv, enough?: (out: string) => boolean): Promise<{ code: number | null; stderr: string; out: string }> {
  const child = spawn(process.execPath, [PPUCTL_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  if (!enough) child.stdout.destroy();
  else {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (enough(out)) child.stdout.destroy();
    });
  }
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.on('exit', (code) => {
    clearTimeout(killer);
    resolve({ code, stderr, out });
  }));
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

  it('status --watch | head -1: a closed stdout ends it quietly', async () => {
    const r = await closedEarly(['status', '--watch', '--interval', '0.2'], { DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address }, (out) => out.includes('\n'));
    assert.match(r.out, /^ppuctl status, /);
    assert.equal(r.stderr, '', 'nothing said, no stack trace');
    assert.equal(r.code, 141, 'as SIGPIPE ends a C tool');
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

describe('ppuctl refuses what it would otherwise ignore or misread (S7)', function () {
  this.timeout(60_000);
  /** No bus here: a usage error must be found before the bus is tried (that would be exit 3). */
  const NO_BUS = { DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/ppuctl-test-bus' };
  const usageError = async (args: string[], message: RegExp): Promise<void> => {
    const r = await ppuctl(args, NO_BUS);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.match(r.stderr, /\n\nusage: ppuctl/);
    noStack(r);
  };

  it('a word or an option the command does not take is bad usage, named (exit 2)', async () => {
    await usageError(['shift', 'start', '-u', '1002:1003', 'extra', 'args'], /^ppuctl: shift start: unexpected argument 'extra' \(detectors are chosen with -d/);
    await usageError(['shift', 'start', '-u', '1002:1003', '1MF'], /^ppuctl: shift start: unexpected argument '1MF'/);
    await usageError(['status', 'junk'], /^ppuctl: status: unexpected argument 'junk'\n/);
    await usageError(['status', '-u', '5:5'], /^ppuctl: status: option -u does not apply here\n/);
    await usageError(['shift', 'show', '-d', '1MF::'], /^ppuctl: shift show: option -d does not apply here\n/);
    await usageError(['messages', '--json', '-o', 'x'], /^ppuctl: messages: option -o does not apply here\n/);
    await usageError(['license', 'check', 'a.key', 'b.key'], /^ppuctl: license check: unexpected argument 'b\.key'\n/);
    await usageError(['verify', '--private-key', 'k.pem', '/data'], /^ppuctl: verify: option --private-key does not apply here\n/);
    // The last one would win, unsaid: the shift of the wrong user started (found by a hostile tester).
    await usageError(['shift', 'start', '-u', '500:501', '-u', '600:600'], /^ppuctl: option -u given more than once\n/);
    await usageError(['status', '-n', '2', '-n3'], /^ppuctl: option -n given more than once\n/);
  });

  it('a count that is not decimal digits is bad usage, as the TCP status port has it (exit 2)', async () => {
    // Number() read them: 1e3 as 1000, 0x10 as 16, '' as 0 shifts shown without a word (found by a hostile tester).
    for (const n of ['1e3', '0x10', ' 1', '']) {
      await usageError(['status', '-n', n], new RegExp(`^ppuctl: -n wants a number of shifts \\(-1 for all, up to \\d+\\), got '${n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'\n`));
      await usageError(['messages', '-n', n], /^ppuctl: -n wants a number of messages, got /);
    }
  });

  it('a DBUS_SYSTEM_BUS_ADDRESS that is no address is said in plain words (exit 3)', async () => {
    for (const [address, why] of [['garbage', "'garbage' is not TRANSPORT:KEY=VALUE,..."], [';', "';' holds no address"],
      ['tcp:host=127.0.0.1,port=abc', "'tcp:host=127.0.0.1,port=abc' wants port=1..65535"], ['unix:', "'unix:' names no path="]]) {
      const r = await ppuctl(['status'], { DBUS_SYSTEM_BUS_ADDRESS: address });
      assert.equal(r.code, 3, `${address}: ${r.stderr}`);
      assert.equal(r.stderr, `ppuctl: cannot reach the bus: DBUS_SYSTEM_BUS_ADDRESS: ${why} (e.g. unix:path=/var/run/dbus/system_bus_socket)\n`);
      assert.equal(r.stdout, '');
    }
    // A bus that fails to connect ends the command then: no status printed after the error, no wait for a call's timeout.
    const r = await ppuctl(['status'], NO_BUS);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^ppuctl: cannot reach the bus: connect ENOENT \/nonexistent\/ppuctl-test-bus\n$/);
    assert.equal(r.stdout, '');
    assert.ok(r.ms < 4000, `ended after ${r.ms} ms`);
  });

  it('verify PATH | head -1: a closed stdout ends it quietly', async () => {
    const dir = tempDir('ppuctl-pipe');
    mkdirSync(path.join(dir, 'tree'));
    for (let i = 0; i < 50; i++) writeFileSync(path.join(dir, 'tree', `f${i}`), `${i}`);
    try {
      const r = await closedEarly(['verify', path.join(dir, 'tree')], NO_BUS);
      assert.equal(r.stderr, '', 'nothing said, no stack trace');
      assert.equal(r.code, 141, 'as SIGPIPE ends a C tool');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('license issue with a key that is not an Ed25519 private key says what the file is (exit 1)', async () => {
    const dir = tempDir('ppuctl-keys');
    const ed = generateKeyPairSync('ed25519');
    const files = {
      pub: ed.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      rsa: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      junk: 'not a key\n',
      priv: ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, `${name}.pem`), text);
    const issue = (name: string): Promise<Run> => ppuctl(['license', 'issue', '--private-key', path.join(dir, `${name}.pem`), '--mac', '02:42:ac:11:00:02', '--holder', 'X'], NO_BUS);
    try {
      for (const [name, what] of [['pub', 'is a public key; issuing needs the private half of the pair'],
        ['rsa', 'is a private key of type rsa, not the Ed25519 key licenses are signed with'],
        ['junk', 'is not a private key of the expected kind']]) {
        const r = await issue(name!);
        assert.equal(r.code, 1, r.stderr);
        assert.equal(r.stderr.split('\n')[0], `ppuctl: --private-key ${path.join(dir, `${name}.pem`)} ${what}${name === 'rsa' ? '' : ' (an Ed25519 private key in PEM, BEGIN PRIVATE KEY)'}`);
        assert.equal(r.stdout, '');
        noStack(r);
      }
      const ok = await issue('priv');
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^holder = X$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a configuration path that is not a regular file is refused, named, never waited on', async () => {
    const dir = tempDir('ppuctl-fifo');
    const fifo = path.join(dir, 'furkad.conf');
    execFileSync('mkfifo', [fifo]);
    try {
      const check = await ppuctl(['config', 'check', fifo, dir], NO_BUS);
      assert.equal(check.code, 1, check.stdout);
      assert.equal(check.stdout, `${fifo}: invalid configuration:\n  cannot read the file: it is a FIFO, not a regular file\n` +
        `${dir}: invalid configuration:\n  cannot read the file: it is a directory, not a regular file\n`);
      const imported = await ppuctl(['config', 'import', fifo], NO_BUS);
      assert.equal(imported.code, 1);
      assert.equal(imported.stderr, `ppuctl: ${fifo}: cannot read the file: it is a FIFO, not a regular file\n`);
      // The daemons share the reader: --check says the same and exits EX_CONFIG.
      for (const bin of [FURKAD_BIN, GRIMSELD_BIN]) {
        const r = await ppuctl(['--check', '--config', fifo], NO_BUS, bin);
        assert.equal(r.code, 78, `${bin}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^\\w+: ${fifo}: invalid configuration:\n  cannot read the file: it is a FIFO, not a regular file\n$`));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file whose name says no daemon is checked as the agent\'s when it holds only the agent\'s keys (detector.conf)', async () => {
    const dir = tempDir('ppuctl-kind');
    const file = path.join(dir, 'detector.conf');
    // furkad would say "unknown key 'allow'": the agent's own check names what is wrong with the address.
    writeFileSync(file, 'root = /ramdisk\nallow = 10.0.0.0/99\n');
    try {
      const check = await ppuctl(['config', 'check', file], NO_BUS);
      assert.equal(check.code, 1, check.stdout);
      assert.match(check.stdout, /allow/);
      assert.doesNotMatch(check.stdout, /unknown key/, check.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a uid the bus refuses (no passwd entry) is told so, exit 3, not "write EPIPE"', async function () {
    const dir = tempDir('ppuctl-nouser');
    chmodSync(dir, 0o755);
    const bus = await startBus(dir);
    try {
      // 4242424 has no passwd entry on a test machine; dbus-daemon closes the socket at authentication.
      assert.throws(() => execFileSync('id', ['4242424'], { stdio: 'pipe' }));
      const r = await new Promise<Run>((resolve) => {
        execFile(process.execPath, [PPUCTL_BIN, 'shift', 'show'], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address }, uid: 4242424, gid: 4242424, timeout: 30_000 },
          (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr, ms: 0 }));
      });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^ppuctl: the bus refused the connection at authentication \(.*\): uid 4242424 has no user entry/);
    } finally {
      await bus.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('verify reports a checksum attribute it cannot use as such, not as a mismatch (exit 1)', async () => {
    const dir = tempDir('ppuctl-verify-odd');
    const files = { 'garbage.cbf': 'garbage', 'sha.cbf': `sha256:${'ab'.repeat(32)}`, 'short.cbf': 'xxh128:abc' };
    for (const [name, value] of Object.entries(files)) {
      writeFileSync(path.join(dir, name), name);
      execFileSync('setfattr', ['-n', 'user.ppu.checksum', '-v', value, path.join(dir, name)]);
    }
    try {
      const r = await ppuctl(['verify', dir], NO_BUS);
      assert.equal(r.code, 1, 'a file that cannot be checked fails the run');
      assert.doesNotMatch(r.stdout, /MISMATCH/);
      assert.match(r.stdout, new RegExp(`^UNKNOWN CHECKSUM ${dir}/garbage\\.cbf: recorded "garbage", not xxh128:<32 hex digits>$`, 'm'));
      assert.match(r.stdout, new RegExp(`^UNKNOWN CHECKSUM ${dir}/sha\\.cbf: recorded "sha256:(ab)+", unknown algorithm 'sha256' \\(this tool checks xxh128\\)$`, 'm'));
      assert.match(r.stdout, new RegExp(`^UNKNOWN CHECKSUM ${dir}/short\\.cbf: recorded "xxh128:abc", not xxh128:<32 hex digits>$`, 'm'));
      assert.match(r.stdout, /^0 files with a checksum checked \(0\.0 MB\): 0 good, 0 mismatched; 0 without a checksum, 3 with an unknown or malformed checksum, 0 unreadable/m);
      const json = JSON.parse((await ppuctl(['verify', '--json', dir], NO_BUS)).stdout) as { mismatched: unknown[]; unknownChecksum: Array<{ file: string; recorded: string; why: string }>; ok: boolean };
      assert.deepEqual(json.mismatched, []);
      assert.deepEqual(json.unknownChecksum.map((u) => [path.basename(u.file), u.recorded]), Object.entries(files));
      assert.equal(json.ok, false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a UID or GID beyond 32 bits is bad usage naming the value (exit 2)', async () => {
    await usageError(['shift', 'start', '-u', '4294967296:1'], /^ppuctl: -u wants UID:GID, each 0 to 4294967294, got '4294967296:1'\n/);
    await usageError(['shift', 'start', '-u', '1:99999999999999999999'], /^ppuctl: -u wants UID:GID, each 0 to 4294967294, got '1:99999999999999999999'\n/);
  });
});

// A throw-away systemd container booted from this machine's own tree (systemd-nspawn), and commands run in it.
// The root is a tmpfs (--volatile=yes) and /usr an overlay whose upper layer is a temp dir: whatever a
// test installs disappears with the container and the machine's own /usr is never written.
import { spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { startProcess, markFixture, type Managed } from '../fixtures/processes.js';
import { tempDir } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Commands inside get this environment, not the test's (which may name a private bus). */
const INSIDE_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', SYSTEMD_PAGER: 'cat', SYSTEMD_COLORS: '0' };

export class Container {
  private constructor(readonly name: string, private readonly proc: Managed, private readonly upper: string,
    readonly pid1: number) {}

  /**
   * Boots the container and waits until its systemd reports the boot finished. Throws (never skips)
   * when it cannot: the system tier is meant to fail on a machine that cannot run it.
   */
  static async boot(): Promise<Container> {
    const name = `ppu-system-${process.pid}`;
    const upper = tempDir('ppu-container-usr');
    // The upper layer's mode becomes /usr's: mkdtemp's 0700 would lock every non-root user (dbus-daemon too) out.
    chmodSync(upper, 0o755);
    const proc = markFixture(startProcess('systemd-nspawn', [
      '-D', '/', '--volatile=yes', `--overlay=/usr:${upper}:/usr`, '--boot', '--register=no', '--keep-unit',
      // Own network namespace (loopback only): the daemons' fixed ports (49371, 47199, 47198) cannot clash
      // with anything else running on this machine.
      '--private-network', '--console=read-only', '-M', name, '--', 'systemd.firstboot=off',
    ]));
    let pid1: number | undefined;
    try {
      await eventually(async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
          throw new Error(`systemd-nspawn exited with ${proc.child.exitCode ?? proc.child.signalCode}:\n${proc.output()}`);
        }
        pid1 = childOf(proc.child.pid!);
        return pid1 !== undefined;
      }, 30_000, 'the container to start its init');
      const c = new Container(name, proc, upper, pid1!);
      // 'degraded' (some unit of the host's tree failed in a container) is booted too. Until its
      // systemd listens, the query fails: ask again.
      let last: RunResult | undefined;
      await eventually(async () => {
        last = await c.run(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 120_000 });
        return /^(running|degraded)/.test(last.stdout);
      }, 120_000, 'the container to finish booting').catch((e: Error) => {
        throw new Error(`${e.message} (${last?.stdout.trim()} ${last?.stderr.trim()}):\n${c.console()}`);
      });
      return c;
    } catch (e) {
      await proc.stop(30_000);
      rmSync(upper, { recursive: true, force: true });
      throw e;
    }
  }

  /** The container's file system as seen from the host (for writing images and reading copies). */
  path(p: string): string {
    return path.join(`/proc/${this.pid1}/root`, p);
  }

  /** Runs a command inside, as root or as `user` (setpriv: PAM, hence runuser, is not set up in a volatile /etc). */
  run(argv: string[], opts: { user?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const as = opts.user ? ['setpriv', `--reuid=${opts.user}`, '--regid=users', '--init-groups', '--'] : [];
    return new Promise((resolve) => {
      // Own process group: a `kill 0` gone wrong inside must not reach the test runner's group.
      const child = spawn('nsenter', ['-t', String(this.pid1), '-a', ...as, ...argv],
        { env: INSIDE_ENV, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
      child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      const timer = setTimeout(() => {
        stderr += `\n(killed after ${opts.timeoutMs ?? 60_000} ms)`;
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
      }, opts.timeoutMs ?? 60_000);
      child.on('error', (e) => { clearTimeout(timer); resolve({ code: 127, stdout, stderr: `${stderr}${e.message}` }); });
      child.on('close', (code, sig) => { clearTimeout(timer); resolve({ code: code ?? (sig ? 128 : 1), stdout, stderr }); });
    });
  }

  /** Runs a command inside and returns its stdout; a non-zero exit is an error showing the output. */
  async ok(argv: string[], opts: { user?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.run(argv, opts);
    if (r.code !== 0) throw new Error(`in container: ${argv.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** One property of a unit (`systemctl show -P`). */
  async unitProperty(unit: string, prop: string): Promise<string> {
    return (await this.ok(['systemctl', 'show', '-P', prop, unit])).trim();
  }

  /** Powers the container off (SIGTERM to nspawn shuts it down in order), then removes the /usr layer. */
  async destroy(): Promise<void> {
    await this.proc.stop(30_000);
    rmSync(this.upper, { recursive: true, force: true });
  }

  /** The last lines nspawn printed (boot messages), for a failing test's message. */
  console(): string {
    return this.proc.output().slice(-4000);
  }
}

/** The child of systemd-nspawn that is PID 1 of its own PID namespace: the container's init. */
function childOf(pid: number): number | undefined {
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/)) {
        // nspawn forks helpers before the init; the init is the one whose NSpid ends in 1.
        const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${child}/status`, 'utf8'))?.[1]?.split(/\s+/);
        if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return Number(child);
      }
    } catch { /* gone meanwhile */ }
  }
  return undefined;
}

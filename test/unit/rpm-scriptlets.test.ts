// The detector package's scripts (F1, S6): scripts/rsyncd-setting.sh, with which rpm/ppu-movers.spec's %post
// detector tells a kept rsyncd.conf that does not chroot module ramdisk or asks no password for it, reads each
// setting as rsync would; scripts/rsyncd-secrets.sh, which ppu-detector-rsyncd.service runs before each start,
// writes the daemon's secrets from the detector server's key, or refuses a key others could read. The system
// tier runs the scriptlet itself on one kept file, and the unit with its secrets.
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.join(__dirname, '../../..');
const SETTING = path.join(REPO, 'scripts/rsyncd-setting.sh');
const SECRETS = path.join(REPO, 'scripts/rsyncd-secrets.sh');
const SPEC = (): string => readFileSync(path.join(REPO, 'rpm/ppu-movers.spec'), 'utf8');

describe('the detector package scripts', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'rsyncd-check-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** What rsyncd-setting.sh says module ramdisk's `key` is in `conf`. */
  const setting = (conf: string, key: string): string => {
    const file = path.join(dir, 'rsyncd.conf');
    writeFileSync(file, conf);
    return execFileSync('sh', [SETTING, file, key], { encoding: 'utf8' }).replace(/\n$/, '');
  };
  /** Whether %post's chroot check warns about `conf`. */
  const unchrooted = (conf: string): boolean => ['no', 'false', '0'].includes(setting(conf, 'use chroot').toLowerCase());

  it('are what %post detector and the rsync daemon unit run, from the installed tree', () => {
    assert.match(SPEC(), /sh %\{appdir\}\/scripts\/rsyncd-setting\.sh %\{_sysconfdir\}\/ppu\/rsyncd\.conf 'use chroot'/);
    assert.match(SPEC(), /sh %\{appdir\}\/scripts\/rsyncd-setting\.sh %\{_sysconfdir\}\/ppu\/rsyncd\.conf 'auth users'/);
    assert.match(SPEC(), /install -D -m 0755 scripts\/rsyncd-secrets\.sh %\{buildroot\}%\{_libexecdir\}\/ppu-movers\/rsyncd-secrets/);
    const unit = readFileSync(path.join(REPO, 'units/ppu-detector-rsyncd.service'), 'utf8');
    const conf = readFileSync(path.join(REPO, 'etc/ppu/rsyncd.conf'), 'utf8');
    const secrets = /^secrets file = (\S+)$/m.exec(conf)?.[1];
    assert.ok(secrets, 'the shipped rsyncd.conf names a secrets file');
    assert.match(unit, new RegExp(`^ExecStartPre=/usr/libexec/ppu-movers/rsyncd-secrets /etc/ppu/furka-agent\\.key ${secrets}$`, 'm'));
    assert.match(unit, new RegExp(`^RuntimeDirectory=${path.basename(path.dirname(secrets))}$`, 'm'));
  });

  it('find the shipped file chrooted and asking for furkad, and a file without the settings chrooted and asking nobody', () => {
    const shipped = readFileSync(path.join(REPO, 'etc/ppu/rsyncd.conf'), 'utf8');
    assert.equal(unchrooted(shipped), false);
    assert.equal(setting(shipped, 'auth users'), 'furkad');
    assert.equal(unchrooted('[ramdisk]\npath = /ramdisk\n'), false);
    assert.equal(setting('[ramdisk]\npath = /ramdisk\n', 'auth users'), '');
    assert.equal(unchrooted('use chroot = no\n[ramdisk]\nuse chroot = yes\n'), false);
    assert.equal(unchrooted('# use chroot = no\n[ramdisk]\n'), false);
  });

  it("read module ramdisk's setting in any spelling rsync accepts", () => {
    assert.equal(unchrooted('use chroot = no\n[ramdisk]\npath = /ramdisk\n'), true);
    assert.equal(unchrooted('use chroot = yes\n[ramdisk]\nuse chroot = no\n'), true, "the module's own setting");
    assert.equal(unchrooted('use chroot = yes\nuse chroot = no\n[ramdisk]\n'), true, 'the last one wins');
    assert.equal(unchrooted('use chroot = no\n[other]\nuse chroot = yes\n[ramdisk]\n'), true, "another module's setting");
    assert.equal(unchrooted('Use\tChroot=No\r\n[ramdisk]\r\n'), true);
    assert.equal(unchrooted('usechroot = false\n[ramdisk]\n'), true);
    assert.equal(unchrooted('[global]\nuse chroot = 0\n[ramdisk]\n'), true);
    assert.equal(unchrooted('use chroot = no'), true, 'a last line without its newline');
    assert.equal(setting('Auth Users = furkad\n[ramdisk]\n', 'auth users'), 'furkad', 'the global one');
    assert.equal(setting('auth users = furkad\n[ramdisk]\nauth users =\n', 'auth users'), '', "the module's empty one beats the global one");
    assert.equal(setting('[other]\nauth users = furkad\n[ramdisk]\n', 'auth users'), '', "another module's");
  });

  it("write the daemon's secrets from the key, root's and 0600, and refuse a key others can read, naming it", () => {
    const key = path.join(dir, 'furka-agent.key');
    const out = path.join(dir, 'secrets');
    writeFileSync(key, 'a1b2c3d4e5f60718293a4b5c6d7e8f90\n', { mode: 0o600 });
    chmodSync(key, 0o600);
    execFileSync('sh', [SECRETS, key, out]);
    assert.equal(readFileSync(out, 'utf8'), 'furkad:a1b2c3d4e5f60718293a4b5c6d7e8f90\n');
    assert.equal(statSync(out).mode & 0o777, 0o600);
    chmodSync(key, 0o644);
    const open = spawnSync('sh', [SECRETS, key, out], { encoding: 'utf8' });
    assert.notEqual(open.status, 0);
    assert.match(open.stderr, new RegExp(`${key} must be root's and open to nobody else`));
    const missing = spawnSync('sh', [SECRETS, path.join(dir, 'none.key'), out], { encoding: 'utf8' });
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /none\.key does not exist/);
  });
});

// %posttrans common starts again what %pre common stopped for an upgrade (S6, S1, A5). Run here with a stand-in
// systemctl that records its calls, and the marker directory moved to a temp dir; the system tier runs it for real.
describe("the upgrade's %posttrans common", () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'posttrans-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Scriptlet `name` of the spec, its marker directory moved into the test's directory. */
  const scriptlet = (name: string): string => {
    const body = new RegExp(`^%${name}\\n([\\s\\S]*?)\\n(?=%[a-z])`, 'm').exec(SPEC())?.[1];
    assert.ok(body, `the spec has a %${name}`);
    return body.split('/run/ppu-movers-upgrade').join(path.join(dir, 'ppu-movers-upgrade'));
  };
  /** A stand-in systemctl that logs each call to $LOG and then runs `lines` (sh); its directory, for PATH. */
  const standIn = (lines: string[]): string => {
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'systemctl'), ['#!/bin/sh', 'echo "$*" >> "$LOG"', ...lines, 'exit 0', ''].join('\n'));
    chmodSync(path.join(bin, 'systemctl'), 0o755);
    return bin;
  };

  /** Runs the scriptlet with markers for `running`; the stand-in systemctl fails to start the units in `failing`. */
  const posttrans = (running: string[], failing: string[] = []): { calls: string[]; stderr: string; markers: boolean } => {
    const body = scriptlet('posttrans common');
    const markers = path.join(dir, 'ppu-movers-upgrade');
    mkdirSync(markers);
    for (const u of running) writeFileSync(path.join(markers, u), '');
    const bin = standIn([
      'case "$1" in',
      '  start) shift; rc=0; for u in "$@"; do case " $FAILING " in *" ${u%.service} "*) rc=1 ;; *) echo "$u" >> "$ACTIVE" ;; esac; done; exit $rc ;;',
      '  -q) [ "$2" = is-active ] && grep -qx "$3" "$ACTIVE" 2>/dev/null; exit $? ;;',
      'esac',
    ]);
    const log = path.join(dir, 'calls');
    const r = spawnSync('sh', ['-c', body], {
      encoding: 'utf8',
      env: { PATH: `${bin}:/usr/bin:/bin`, LOG: log, ACTIVE: path.join(dir, 'active'), FAILING: failing.join(' ') },
    });
    assert.equal(r.status, 0, r.stderr);
    return { calls: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [], stderr: r.stderr, markers: existsSync(markers) };
  };
  /** The index of the first `systemctl start` call that starts `unit`. */
  const startedIn = (calls: string[], unit: string): number =>
    calls.findIndex((c) => c.startsWith('start ') && c.split(' ').includes(`${unit}.service`));

  it('starts furka-agent and grimseld no later than furkad, in one job that the units order (furkad after both), as on a host with both packages', () => {
    const furkadUnit = readFileSync(path.join(REPO, 'units/furkad.service'), 'utf8');
    assert.match(furkadUnit, /^After=furka-agent\.service$/m);
    assert.match(furkadUnit, /^After=grimseld\.service$/m);
    const { calls, stderr, markers } = posttrans(['furkad', 'grimseld', 'furka-agent']);
    const agent = startedIn(calls, 'furka-agent');
    const grimseld = startedIn(calls, 'grimseld');
    const furkad = startedIn(calls, 'furkad');
    assert.ok(agent >= 0 && grimseld >= 0 && furkad >= 0, `all three started: ${calls.join(' | ')}`);
    // Before, each was started alone in the order grimseld, furkad, furka-agent: furkad found no agent and logged
    // the detector unreachable, with back-off, at every upgrade.
    assert.ok(agent <= furkad, `furka-agent started with or before furkad: ${calls.join(' | ')}`);
    assert.ok(grimseld <= furkad, `grimseld started with or before furkad: ${calls.join(' | ')}`);
    assert.ok(calls.indexOf('daemon-reload') >= 0 && calls.indexOf('daemon-reload') < furkad, 'units reloaded before the start');
    assert.equal(stderr, '');
    assert.equal(markers, false, 'the marker directory is removed');
  });

  it('notes for the start after the upgrade every unit it stops that was running or starting, a crashed one waiting to restart among them (S6)', () => {
    const body = scriptlet('pre common');
    const markers = path.join(dir, 'ppu-movers-upgrade');
    // systemctl is-active as systemd answers it: the state, exit 0 only for active. furkad was SIGKILLed a moment
    // ago and waits out RestartSec (activating, auto-restart); grimseld runs; furka-agent as $AGENT says.
    const bin = standIn([
      '[ "$1" = -q ] && shift',
      'if [ "$1" = is-active ]; then',
      '  case "$2" in furkad.service) echo activating; exit 3 ;; grimseld.service) echo active; exit 0 ;; furka-agent.service) echo "$AGENT"; exit 3 ;; esac',
      'fi',
    ]);
    const log = path.join(dir, 'calls');
    const pre = (agent: string): string[] => {
      rmSync(markers, { recursive: true, force: true });
      const r = spawnSync('sh', ['-c', body, 'pre', '2'], {
        encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, LOG: log, AGENT: agent },
      });
      assert.equal(r.status, 0, r.stderr);
      return readdirSync(markers).sort();
    };
    assert.deepEqual(pre('inactive'), ['furkad', 'grimseld'], 'started again after the upgrade: the crashed furkad too; not the agent an administrator stopped');
    assert.deepEqual(pre('failed'), ['furka-agent', 'furkad', 'grimseld'], 'and one its start limit stopped (a crash loop)');
    assert.ok(readFileSync(log, 'utf8').split('\n').some((c) => c.startsWith('stop ') && c.includes('furkad.service')), 'all stopped for the upgrade');
  });

  it('starts only what ran before the upgrade, and names each unit that did not come up again', () => {
    const alone = posttrans(['grimseld']);
    assert.deepEqual(alone.calls.filter((c) => c.startsWith('start ')), ['start grimseld.service']);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const failed = posttrans(['furkad', 'grimseld', 'furka-agent'], ['furkad']);
    assert.match(failed.stderr, /^ppu-movers: furkad did not start again after the upgrade: see 'systemctl status furkad'/m);
    assert.doesNotMatch(failed.stderr, /(grimseld|furka-agent) did not start again/);
  });
});

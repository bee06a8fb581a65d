// AddFile by an operator who is not root (G8, S2, docs/threat-model.md): a real user in the operators group, on a
// bus carrying the shipped policy, adds through ppuctl only files they could read themselves; root adds any.
import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, PPUCTL_BIN } from '../fixtures/ppu.js';
import { shippedPolicies } from '../fixtures/bus-policy.js';
import { eventually, listFiles } from '../fixtures/files.js';
import { callMethod } from '../../src/dbus/bus.js';

const TAG = `${process.pid % 100000}`;
const OPERATORS = `ppuop${TAG}`;
const SHARED = `ppush${TAG}`;
const USER = `ppuopu${TAG}`;


describe('AddFile by an operator who is not root (G8, S2)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let uid = 0;
  let sharedGid = 0;

  const ppuctlAs = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
    execFile('setpriv', [`--reuid=${uid}`, `--regid=${OPERATORS}`, '--init-groups', process.execPath, PPUCTL_BIN, ...args],
      { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }));
  });
  const internal = (rel: string): string => path.join(ppu.storageRoot, 'internal', rel);

  before(async () => {
    execFileSync('groupadd', [OPERATORS]);
    execFileSync('groupadd', [SHARED]);
    execFileSync('useradd', ['--no-create-home', '--no-user-group', '-g', OPERATORS, '-G', SHARED, USER]);
    uid = Number(execFileSync('id', ['-u', USER]).toString());
    sharedGid = Number(execFileSync('getent', ['group', SHARED]).toString().split(':')[2]);
    ppu = new Ppu({ prefix: 'ppu-addfile-access', busPolicyXml: shippedPolicies(OPERATORS) });
    await ppu.start();
    const x = path.join(ppu.work, 'x');
    // Root's: a directory only root may search, holding a file anyone could read by its mode.
    mkdirSync(path.join(x, 'priv/sub'), { recursive: true, mode: 0o755 });
    chmodSync(path.join(x, 'priv/sub'), 0o700);
    writeFileSync(path.join(x, 'priv/sub/secret'), 'root only');
    chmodSync(path.join(x, 'priv/sub/secret'), 0o644);
    // A directory the operator searches through a supplementary group only.
    mkdirSync(path.join(x, 'team/run'), { recursive: true });
    chownSync(path.join(x, 'team'), 0, sharedGid);
    chmodSync(path.join(x, 'team'), 0o750);
    writeFileSync(path.join(x, 'team/run/log.txt'), 'team notes');
  });
  after(async () => {
    await ppu?.stop();
    for (const [cmd, name] of [['userdel', USER], ['groupdel', SHARED], ['groupdel', OPERATORS]] as const) {
      try {
        execFileSync(cmd, [name], { stdio: 'ignore' });
      } catch { /* not made */ }
    }
  });

  it('refuses a file protected only by its directory, naming the file and why, and takes nothing', async () => {
    const before = await ppu.queryStatus(1);
    const r = await ppuctlAs('add', `${ppu.work}/x/priv/./sub/secret`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`priv/\\./sub/secret: uid ${uid} may not search directory .*/x/priv/sub\\b`));
    await ppu.quiescent();
    assert.equal(existsSync(internal('sub/secret')), false);
    assert.deepEqual(await ppu.queryStatus(1), before, 'nothing pending, copied or failed');
  });

  it("refuses root's /etc/shadow", async () => {
    const r = await ppuctlAs('add', '/etc/./shadow');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`/etc/\\./shadow: uid ${uid} may not read '/etc/shadow'`));
    await ppu.quiescent();
    assert.ok(listFiles(path.join(ppu.storageRoot, 'internal')).every((f) => !f.includes('shadow')));
  });

  it('takes a file the operator can read through a supplementary group', async () => {
    const r = await ppuctlAs('add', `${ppu.work}/x/team/./run/log.txt`);
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => existsSync(internal('run/log.txt')), 20_000, 'the operator\'s file on the internal storage');
    assert.equal(readFileSync(internal('run/log.txt'), 'utf8'), 'team notes');
  });

  it("refuses a path with a link after './', as the copier would, instead of taking it and failing it for good; takes it written without the link", async () => {
    const z = path.join(ppu.work, 'z');
    mkdirSync(path.join(z, 'real'), { recursive: true, mode: 0o755 });
    writeFileSync(path.join(z, 'real/f.img'), 'data');
    chmodSync(path.join(z, 'real/f.img'), 0o644);
    symlinkSync('real', path.join(z, 'link'));
    const before = await ppu.queryStatus(1);
    const r = await ppuctlAs('add', `${z}/./link/f.img`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /its path holds a symbolic link or a file where a directory should be, never followed/);
    await ppu.quiescent();
    assert.deepEqual(await ppu.queryStatus(1), before, 'nothing pending, copied or failed');
    const ok = await ppuctlAs('add', `${z}/./real/f.img`);
    assert.equal(ok.code, 0, ok.stderr);
    await eventually(() => existsSync(internal('real/f.img')), 20_000, 'the file added without the link');
  });

  it('lets root add the file the operator may not', async () => {
    await callMethod(await ppu.grimsel(), 'AddFile', `${ppu.work}/x/priv/./sub/secret`);
    await eventually(() => existsSync(internal('sub/secret')), 20_000, "root's file on the internal storage");
  });

  it("copies the ramdisk files an operator adds but never deletes them after the shift, unlike root's (G8, G5, G6)", async () => {
    // On the ramdisk: root's notes (0644 in a directory of root's) and another user's file, both readable by the
    // operator, neither deletable by them; and a file root adds, which the shift clean-up does delete.
    const ram = ppu.ppuRamdisk;
    mkdirSync(path.join(ram, 'keep'), { recursive: true });
    writeFileSync(path.join(ram, 'keep/notes.txt'), "root's notes, not part of any shift");
    chmodSync(path.join(ram, 'keep/notes.txt'), 0o644);
    mkdirSync(path.join(ram, 'user4242'));
    writeFileSync(path.join(ram, 'user4242/mine.dat'), "user 4242's file");
    chownSync(path.join(ram, 'user4242'), 4242, 4242);
    chownSync(path.join(ram, 'user4242/mine.dat'), 4242, 4242);
    mkdirSync(path.join(ram, 'roots'));
    writeFileSync(path.join(ram, 'roots/added.dat'), 'root added this');
    const rm = await new Promise<number>((resolve) => execFile('setpriv', [`--reuid=${uid}`, `--regid=${OPERATORS}`, '--init-groups', 'rm', '-f',
      path.join(ram, 'keep/notes.txt')], (err) => resolve(err ? 1 : 0)));
    assert.equal(rm, 1, "the operator's own rm of root's notes fails");
    for (const f of ['keep/notes.txt', 'user4242/mine.dat']) {
      const r = await ppuctlAs('add', `${ram}/./${f}`);
      assert.equal(r.code, 0, r.stderr);
    }
    await callMethod(await ppu.grimsel(), 'AddFile', `${ram}/./roots/added.dat`);
    await eventually(() => ['keep/notes.txt', 'user4242/mine.dat', 'roots/added.dat'].every((f) => existsSync(internal(f))), 20_000,
      'the three copies on the internal storage');
    await ppu.startShift(1000, 1000, []);
    await eventually(() => !existsSync(path.join(ram, 'roots/added.dat')), 30_000, "root's added original deleted after the shift change (G5)");
    await ppu.quiescent();
    assert.equal(readFileSync(path.join(ram, 'keep/notes.txt'), 'utf8'), "root's notes, not part of any shift", "root's notes stay");
    assert.equal(readFileSync(path.join(ram, 'user4242/mine.dat'), 'utf8'), "user 4242's file", "user 4242's file stays");
    assert.equal(readFileSync(internal('keep/notes.txt'), 'utf8'), "root's notes, not part of any shift");
  });
});

// The bus interfaces as an administrator uses them, with the real busctl (S2, F6, G8, G9).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, lstatSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

const run = promisify(execFile);

describe('D-Bus interfaces through busctl (S2)', function () {
  this.timeout(90_000);
  let ppu: Ppu;
  const busctl = (...args: string[]) => run('busctl', [`--address=${ppu.bus.address}`, ...args]);
  const busctlFails = async (...args: string[]): Promise<string> => {
    try {
      await busctl(...args);
    } catch (e) {
      return String((e as { stderr?: string }).stderr ?? e);
    }
    return assert.fail(`busctl ${args.join(' ')} succeeded`);
  };

  before(async () => {
    ppu = await new Ppu({ detectors: ['1MF', '2MF'] }).start();
  });
  after(async () => {
    await ppu?.stop();
  });

  it('introspects org.ppu.Furka1 with StartShift(uua(sss)) and its Shift property', async () => {
    const { stdout } = await busctl('introspect', 'org.ppu.Furka', '/org/ppu/Furka');
    assert.match(stdout, /^org\.ppu\.Furka1\s+interface/m);
    assert.match(stdout, /^\.StartShift\s+method\s+uua\(sss\)\s+-/m);
    assert.match(stdout, /^\.Shift\s+property\s+\(tuu\)\s+\S+\s+emits-change/m);
    // Read when asked, never signalled (h12: shown as emits-change, a caching proxy kept an old value); fixed per run.
    assert.match(stdout, /^\.Handover\s+property\s+\(ts\)\s+\S+\s+-\s*$/m);
    assert.match(stdout, /^\.License\s+property\s+\(bs\)\s+\S+\s+const\s*$/m);
  });

  it('introspects org.ppu.Grimsel1 with QueryStatus, AddFile and the Message signal', async () => {
    const { stdout } = await busctl('introspect', 'org.ppu.Grimsel', '/org/ppu/Grimsel');
    assert.match(stdout, /^\.QueryStatus\s+method\s+i\s+a\(tuusttt\)/m);
    assert.match(stdout, /^\.AddFile\s+method\s+s\s+-/m);
    assert.match(stdout, /^\.Message\s+signal\s+sss\s+-/m);
  });

  it("starts a shift with the S2 busctl call and the new shift's directories are used", async () => {
    // Below the ramdisk directory the configured targets are replicated from: a target elsewhere is refused.
    const t1 = path.join(ppu.ppuRamdisk, 'custom-1mf');
    const t2 = path.join(ppu.ppuRamdisk, 'custom-2mf');
    await busctl('call', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'StartShift', 'uua(sss)',
      '500', '501', '2', '1MF', '', t1, '2MF', '', t2);
    const { stdout } = await busctl('get-property', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'Shift');
    assert.match(stdout, /^\(tuu\) \d+ 500 501$/m);
    writeImage(ppu.detectorRamdisks['1MF']!, 'a/one.cbf', 1000);
    writeImage(ppu.detectorRamdisks['2MF']!, 'b/two.cbf', 2000);
    await eventually(() => existsSync(path.join(t1, '500_501/a/one.cbf')) && existsSync(path.join(t2, '500_501/b/two.cbf')),
      20_000, "files in the new shift's usrdir below the overriding targets");
    const st = lstatSync(path.join(t1, '500_501'));
    assert.deepEqual([st.uid, st.gid], [500, 501]);
  });

  it('answers QueryStatus newest shift first, one row per storage, through busctl', async () => {
    await busctl('call', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'StartShift', 'uua(sss)', '600', '601', '0');
    writeImage(ppu.detectorRamdisks['1MF']!, 'q/x.cbf', 10);
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 600 && r[5] === 1n), 20_000, 'shift 600 copied');
    const { stdout } = await busctl('--json=short', '--', 'call', 'org.ppu.Grimsel', '/org/ppu/Grimsel', 'org.ppu.Grimsel1', 'QueryStatus', 'i', '-1');
    const reply = JSON.parse(stdout) as { type: string; data: [Array<[number, number, number, string, number, number, number]>] };
    assert.equal(reply.type, 'a(tuusttt)');
    const rows = reply.data[0];
    assert.deepEqual(rows.slice(0, 2).map((r) => [r[1], r[2], r[3]]), [[600, 601, 'internal'], [500, 501, 'internal']]);
    assert.ok(rows[0]![0] > rows[1]![0], 'newest first');
    assert.deepEqual(rows[0]!.slice(4), [0, 1, 0], 'pending, copied, failed of the new shift');
  });

  it('refuses bad StartShift arguments with named errors and keeps the running shift', async () => {
    const before = (await busctl('get-property', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'Shift')).stdout;
    const call = (...a: string[]) => busctlFails('call', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'StartShift', 'uua(sss)', ...a);
    assert.match(await call('1', '2', '1', 'NOPE', '', ''), /unknown detector 'NOPE'/);
    assert.match(await call('1', '2', '1', '1MF', '', 'relative/dir'), /must be an absolute path/);
    const after = (await busctl('get-property', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'Shift')).stdout;
    assert.equal(after, before, 'the running shift is untouched');
    // The error names travel on the bus, as scripts need them.
    const furka = await ppu.furka();
    await assert.rejects(() => (furka as unknown as Record<string, (...a: unknown[]) => Promise<void>>)['StartShift']!(1, 2, [['NOPE', '', '']]),
      (e: { type?: string }) => e.type === 'org.ppu.Error.UnknownDetector');
  });

  it('answers a call with the wrong argument types with InvalidArgs naming the expected signature, not "does not exist"', async () => {
    // dbus-send prints the error's name, busctl only its text.
    const send = async (dest: string, objectPath: string, member: string, ...args: string[]): Promise<string> => {
      try {
        await run('dbus-send', [`--bus=${ppu.bus.address}`, '--print-reply', `--dest=${dest}`, objectPath, member, ...args]);
      } catch (e) {
        return String((e as { stderr?: string }).stderr ?? e).trim();
      }
      return assert.fail(`${member} with the wrong signature succeeded`);
    };
    assert.equal(await send('org.ppu.Grimsel', '/org/ppu/Grimsel', 'org.ppu.Grimsel1.QueryStatus', 'string:x'),
      "Error org.freedesktop.DBus.Error.InvalidArgs: org.ppu.Grimsel1.QueryStatus takes arguments of signature 'i', got 's'");
    assert.equal(await send('org.ppu.Grimsel', '/org/ppu/Grimsel', 'org.ppu.Grimsel1.AddFile'),
      "Error org.freedesktop.DBus.Error.InvalidArgs: org.ppu.Grimsel1.AddFile takes arguments of signature 's', got none");
    assert.equal(await send('org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1.StartShift', 'uint32:500', 'uint32:501'),
      "Error org.freedesktop.DBus.Error.InvalidArgs: org.ppu.Furka1.StartShift takes arguments of signature 'uua(sss)', got 'uu'");
    assert.match(await send('org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1.Nonsense'), /UnknownMethod.*Nonsense/, 'a missing method is still one');
    assert.ok((await ppu.queryStatus(1)).length > 0, 'the right signature still works');
  });

  it('AddFile copies an operator file, replicating the part after ./, and refuses bad paths by name (G8)', async () => {
    const dir = path.join(ppu.work, 'operator', 'keep', 'me');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'notes.txt'), 'beamline notes');
    await busctl('call', 'org.ppu.Grimsel', '/org/ppu/Grimsel', 'org.ppu.Grimsel1', 'AddFile', 's',
      `${ppu.work}/operator/./keep/me/notes.txt`);
    const copy = path.join(ppu.storageRoot, 'internal', 'keep/me/notes.txt');
    await eventually(() => existsSync(copy), 10_000, 'the added file on the internal storage');
    assert.equal(readFileSync(copy, 'utf8'), 'beamline notes');
    const add = (p: string) => busctlFails('call', 'org.ppu.Grimsel', '/org/ppu/Grimsel', 'org.ppu.Grimsel1', 'AddFile', 's', p);
    assert.match(await add('relative/file'), /not absolute/);
    assert.match(await add(`${ppu.work}/missing.cbf`), /does not exist/);
    assert.match(await add(`${ppu.work}/operator`), /not a regular file/);
    assert.match(await add(`${ppu.work}/./../etc/passwd`), /must stay below/);
    assert.ok(listFiles(path.join(ppu.storageRoot, 'internal')).every((f) => !f.includes('passwd')));
  });
});

// ppuctl as an operator uses it, against the real daemons on a private bus (S7, S3, G8, G9, G10).
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { PPUCTL_BIN, Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, writeImage } from '../fixtures/files.js';
import { startProcess } from '../fixtures/processes.js';
import { startBus } from '../fixtures/bus-daemon.js';
import { statusRecord } from '../../src/grimseld/status-server.js';
import * as dbus from 'dbus-next';
import { callMethod } from '../../src/dbus/bus.js';
import { GRIMSEL_IFACE, GRIMSEL_PATH } from '../../src/dbus/names.js';

interface Run { code: number; stdout: string; stderr: string }

function ppuctl(args: string[], busAddress: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PPUCTL_BIN, ...args], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stdout, stderr }));
  });
}

const VENDOR = path.resolve(__dirname, '../../../test/fixtures/vendor');
const noStack = (r: Run): void => assert.doesNotMatch(r.stderr + r.stdout, /^\s+at /m, 'no stack trace');

describe('ppuctl (S7)', function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let breakable: string;
  const run = (...args: string[]): Promise<Run> => ppuctl(args, ppu.bus.address);
  /** ppuctl left running (watch, messages), in its own process group like every test child. */
  const spawnPpuctl = (...args: string[]) => startProcess(process.execPath, [PPUCTL_BIN, ...args],
    { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address } });

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-ctl', detectors: ['1MF', '2MF'] });
    // 'flaky' works until a test replaces `breakable` by a regular file: a COPY_ERROR on demand.
    breakable = path.join(ppu.work, 'flaky');
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.flaky': { type: 'OPTIONAL', target: path.join(breakable, 'data'), n_copy_processes: 1 },
    };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('shift start with the classic -u/-d syntax, then shift show (text and --json)', async () => {
    const r = await run('shift', 'start', '-u', '800:801', '-d', '1MF::', '-d', `2MF::${ppu.ppuRamdisk}/./2mf-b`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'shift 800:801 started\n');
    const show = await run('shift', 'show');
    assert.match(show.stdout, /^shift 800:801 since \d{4}-\d\d-\d\dT/);
    const json = JSON.parse((await run('shift', 'show', '--json')).stdout) as Record<string, unknown>;
    assert.deepEqual([json['uid'], json['gid']], [800, 801]);
    assert.equal(typeof json['usertime'], 'number');
    // The -d target took effect: 2MF delivers below the new target.
    writeImage(ppu.detectorRamdisks['2MF']!, 'x/one.cbf', 1000);
    await eventually(() => existsSync(path.join(ppu.ppuRamdisk, '2mf-b/800_801/x/one.cbf')) ||
      existsSync(path.join(ppu.storageRoot, 'internal/2mf-b/800_801/x/one.cbf')), 30_000, 'the file below the -d target');
  });

  it('status prints the classic table, then the verified copies (I2), and --json the rows of QueryStatus', async () => {
    for (let i = 0; i < 3; i++) writeImage(ppu.detectorRamdisks['1MF']!, `s/img${i}.cbf`, 2000);
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[3] === 'internal' && r[5] === 4n), 30_000, 'copies');
    const table = await run('status', '-n', '1');
    assert.equal(table.code, 0, table.stderr);
    const [shifts, grimselLicense, detectors, license] = table.stdout.split('\n\n');
    const lines = shifts!.trimEnd().split('\n');
    assert.match(lines[0]!, /^User Time\s+\| UID\s*\| GID\s*\| Storage\s*\| Pending \| Copied \| Failed \| Verified$/);
    assert.match(lines[1]!, /^-+(-\+-+)+$/);
    assert.equal(lines.length, 4, 'header, rule, one row per storage');
    assert.ok(lines.some((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| 800 \| 801 \| internal\s*\|\s+0 \|\s+4 \|\s+0 \|\s+4$/.test(l)), table.stdout);
    // grimseld's license (G14: without one, one writer per storage), then furkad's part: its detectors with this
    // shift's files, and its license state.
    assert.match(grimselLicense!, /^grimseld license: none \(one writer per storage\)/);
    const dets = detectors!.trimEnd().split('\n');
    assert.match(dets[0]!, /^Detector \| State\s*\| Files \|\s+MB \| Last run \| Last error$/);
    assert.ok(dets.some((l) => /^1MF\s+\| \w+\s*\|\s+3 \|\s+0\.0 \|\s+\d+\.\d{3} s \|$/.test(l)), detectors);
    assert.ok(dets.some((l) => /^2MF\s+\| \w+/.test(l)), detectors);
    assert.match(license!, /^license: none \(one transfer at a time\)/);
    // -n -1: every shift, as QueryStatus has it (an option value starting with '-').
    const all = await run('status', '-n', '-1');
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /\| 800\s+\| 801\s+\| internal[^]*\| 1000 \| 1000 \| internal/, 'this shift and the first');
    const json = JSON.parse((await run('status', '--json')).stdout) as { status: Array<Record<string, unknown>>; verified: Array<Record<string, unknown>>; furkad: { detectors: Array<Record<string, unknown>>; license: Record<string, unknown>; nextShift: unknown } };
    assert.deepEqual(json.status, (await ppu.queryStatus(-1)).map(statusRecord));
    assert.deepEqual(json.verified.map((v) => [v['uid'], v['storage']]), json.status.map((r) => [r['uid'], r['storage']]), 'a verified count for each row, in its order');
    assert.ok(json.verified.some((v) => v['uid'] === 800 && v['storage'] === 'internal' && v['verified'] === 4));
    assert.deepEqual(json.furkad.detectors.map((d) => [d['id'], d['files'], d['bytes']]), [['1MF', 3, 6000], ['2MF', 1, 1000]]);
    assert.equal(json.furkad.license['licensed'], false);
    assert.equal((json as unknown as { grimseld: { license: { licensed: boolean } } }).grimseld.license.licensed, false);
    assert.equal(json.furkad.nextShift, null);
  });

  it('status --watch redraws with progress bars until Ctrl-C, and --json gives one object per refresh', async () => {
    const watch = spawnPpuctl('status', '--watch', '--interval', '0.2', '-n', '1');
    await eventually(() => (watch.output().match(/^ppuctl status, /gm) ?? []).length >= 3, 30_000, 'three refreshes');
    watch.kill('SIGINT');
    assert.equal(await watch.exited, 0, watch.output());
    assert.match(watch.output(), /\| Progress/);
    assert.match(watch.output(), /internal\s*\|\s+0 \|\s+4 \|\s+0 \|\s+4 \| \[#{20}\] 100%/);
    // Watching, detectors get a rate column (MB/s since the previous refresh).
    assert.match(watch.output(), /^Detector \| State\s*\| Files \|\s+MB \| MB\/s \| Last run \| Last error$/m);
    assert.match(watch.output(), /^1MF\s+\| \w+\s*\|\s+3 \|\s+0\.0 \|\s+0\.0 \|/m);

    const json = spawnPpuctl('status', '--watch', '--json', '--interval', '0.2', '-n', '1');
    await eventually(() => json.output().split('\n').filter((l) => l.startsWith('{')).length >= 2, 30_000, 'two JSON refreshes');
    json.kill('SIGTERM');
    assert.equal(await json.exited, 0);
    const first = JSON.parse(json.output().split('\n')[0]!) as { time: string; status: Array<Record<string, unknown>>; furkad: Record<string, unknown> };
    assert.ok(!Number.isNaN(Date.parse(first.time)));
    assert.deepEqual(first.status.map((r) => r['storage']).sort(), ['flaky', 'internal']);
    assert.ok(Array.isArray(first.furkad['detectors']));
  });

  it('add copies operator files and names each one it refuses', async () => {
    const dir = path.join(ppu.work, 'operator');
    mkdirSync(path.join(dir, 'notes'), { recursive: true });
    writeFileSync(path.join(dir, 'notes/log.txt'), 'beam lost at 14:02\n');
    const ok = await run('add', `${dir}/./notes/log.txt`);
    assert.equal(ok.code, 0, ok.stderr);
    await eventually(() => existsSync(path.join(ppu.storageRoot, 'internal/notes/log.txt')), 30_000, 'the added file on internal');
    const bad = await run('add', `${dir}/./notes/missing.txt`, `${dir}/./notes`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /missing\.txt: .*(no such|does not exist|missing)/i);
    assert.match(bad.stderr, /notes: .*not a regular file/);
    noStack(bad);
    // A name that was not UTF-8 reaches ppuctl with U+FFFD in it, and would name another file: refused here.
    writeFileSync(path.join(dir, 'notes/lat\ufffd.txt'), 'another file');
    const lossy = await run('add', `${dir}/./notes/lat\ufffd.txt`, `${dir}/./notes/log.txt`);
    assert.equal(lossy.code, 1);
    assert.match(lossy.stderr, /lat\ufffd\.txt: the name holds U\+FFFD, .* rename the file/);
    assert.doesNotMatch(lossy.stderr, /log\.txt/, 'the next file added');
  });

  it('messages follows the signal: code, short and long message; -n ends after that many; --json; ignores signals not from grimseld', async () => {
    const busDaemon = (await ppu.client.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus')).getInterface('org.freedesktop.DBus');
    const before = new Set(await callMethod(busDaemon, 'ListNames') as string[]);
    const text = spawnPpuctl('messages');
    const json = spawnPpuctl('messages', '-n', '1', '--json');
    try {
      await eventually(() => /following grimseld messages/.test(text.output()) && /following grimseld messages/.test(json.output()), 30_000, 'both to subscribe');
      // Another local peer sends each of them a Message signal of its own, addressed to its connection.
      const peers = (await callMethod(busDaemon, 'ListNames') as string[]).filter((n) => n.startsWith(':') && !before.has(n));
      assert.ok(peers.length >= 2, `the two ppuctl connections among ${peers.join(' ')}`);
      for (const destination of peers) {
        ppu.client.send(new dbus.Message({ type: dbus.MessageType.SIGNAL, destination, path: GRIMSEL_PATH, interface: GRIMSEL_IFACE,
          member: 'Message', signature: 'sss', body: ['DISK_OVERFLOW', '/forged', 'forged by another peer'] }));
      }
      renameSync(breakable, `${breakable}.away`);
      writeFileSync(breakable, 'a file where a directory should be\n');
      writeImage(ppu.detectorRamdisks['1MF']!, 'm/provoke.cbf', 1000);
      assert.equal(await json.exited, 0, json.output());
      const line = json.output().split('\n').find((l) => l.startsWith('{'))!;
      const m = JSON.parse(line) as Record<string, string>;
      assert.equal(m['errcode'], 'COPY_ERROR');
      assert.match(m['shortMessage']!, new RegExp(`provoke\\.cbf:${breakable}/data/`));
      assert.match(m['longMessage']!, /storage flaky .*not a directory/i);
      await eventually(() => /COPY_ERROR \S+provoke\.cbf:\S+\n {4}copy of \S+ to storage flaky/.test(text.output()), 30_000, `the text form:\n${text.output()}`);
      assert.doesNotMatch(text.output() + json.output(), /forged/);
      text.kill('SIGINT');
      assert.equal(await text.exited, 0);
    } finally {
      await text.stop();
      await json.stop();
    }
  });

  it('messages keeps following across a grimseld restart', async () => {
    const text = spawnPpuctl('messages');
    try {
      await eventually(() => /following grimseld messages/.test(text.output()), 30_000, 'subscribed');
      await ppu.grimseld!.stop();
      await eventually(() => /grimseld left the bus/.test(text.output()), 30_000, 'ppuctl to notice');
      await ppu.startGrimseld();
      await eventually(() => /grimseld is back/.test(text.output()), 30_000, 'ppuctl to see it back');
      // An operator's file for the broken 'flaky' storage: a COPY_ERROR from the new grimseld.
      if (lstatSync(breakable).isDirectory()) {
        renameSync(breakable, `${breakable}.away2`);
        writeFileSync(breakable, 'a file where a directory should be\n');
      }
      const dir = path.join(ppu.work, 'operator-restart');
      mkdirSync(path.join(dir, 'r'), { recursive: true });
      writeFileSync(path.join(dir, 'r/after-restart.txt'), 'x');
      const add = await run('add', `${dir}/./r/after-restart.txt`);
      assert.equal(add.code, 0, add.stderr);
      // Messages are rate-limited per storage: the first one may be about an older file still failing there.
      const back = text.output().indexOf('grimseld is back');
      await eventually(() => /COPY_ERROR \S+:\S+\n {4}copy of .* to storage flaky/.test(text.output().slice(back)), 60_000,
        `a message from the new grimseld:\n${text.output()}`);
    } finally {
      await text.stop();
    }
  });

  it('config import refuses what config check would: a vendor uid 0 is named, exit 1, not "nothing left out" (S3)', async () => {
    const dir = tempDir('ppuctl-import-root');
    const vendor = path.join(dir, 'furka_dectris.conf');
    writeFileSync(vendor, 'uid 0\ngid 0\ndetectorID 1MF\nremoteIP 10.10.10.11\ntarget /ramdisk/./1mf\n');
    const out = path.join(dir, 'furkad.conf');
    const r = await run('config', 'import', vendor, '-o', out);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /nothing left out/);
    for (const k of ['uid', 'gid']) {
      assert.ok(r.stderr.includes(`the converted file is not valid: top level (before any section), key '${k}': 0 makes the shift furkad starts ` +
        "at each start root's, refused unless allow_root_shift = yes"), r.stderr);
    }
    const check = await run('config', 'check', out);
    assert.equal(check.code, 1);
    assert.ok(check.stdout.includes("key 'uid': 0 makes the shift furkad starts at each start root's"), check.stdout);
    noStack(r);
  });

  it("config import takes quotes off and moves the log file, saying so; refuses a Latin-1 byte and a ' #' that would cut a value, by line (S3, S4)", async () => {
    const dir = tempDir('ppuctl-import-quotes');
    const vendor = path.join(dir, 'furka_dectris.conf');
    writeFileSync(vendor, `logfile /var/log/furka_dectris.log\nusrdir "$UID_$GID"\ndetectorID 1MF\nremoteIP '10.10.10.11'\nsource '/images'\n` +
      'target /ramdisk/./1mf\n');
    const out = path.join(dir, 'furkad.conf');
    const r = await run('config', 'import', vendor, '-o', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /5 settings converted to furkad\.conf .*, nothing left out\n4 changed on the way:\n/);
    assert.ok(r.stderr.includes("  line 1: logfile '/var/log/furka_dectris.log' is written as '/var/log/ppu/furka_dectris.log'"), r.stderr);
    assert.ok(r.stderr.includes(`  line 2: the quotes around "$UID_$GID" were taken off: 'usrdir' is '$UID_$GID'`), r.stderr);
    const text = readFileSync(out, 'utf8');
    assert.match(text, /^usrdir = \$UID_\$GID$/m);
    assert.match(text, /^remoteIP = 10\.10\.10\.11$/m);
    assert.match(text, /^source = \/images$/m);
    assert.match(text, /^logfile = \/var\/log\/ppu\/furka_dectris\.log$/m);
    const check = await run('config', 'check', out);
    assert.equal(check.code, 0, check.stdout);

    const bad = path.join(dir, 'bad_furka_dectris.conf');
    writeFileSync(bad, Buffer.concat([Buffer.from('detectorID 1MF\nremoteIP 10.10.10.11\nsource /Bilder'), Buffer.from([0xc4]),
      Buffer.from('\ntarget /ramdisk/./run #1\n')]));
    const b = await run('config', 'import', bad);
    assert.equal(b.code, 1, b.stderr);
    assert.doesNotMatch(b.stderr, /nothing left out/);
    assert.ok(b.stderr.includes("line 3: 'source /Bilder\\xc4': not valid UTF-8 (the byte 0xc4)"), b.stderr);
    assert.ok(b.stderr.includes("line 4: 'target /ramdisk/./run #1': '#' after a space would end the value here (read as '/ramdisk/./run', dropping '#1')"), b.stderr);
    assert.doesNotMatch(b.stdout, /\ufffd|^target = \/ramdisk\/\.\/run$/m);
    noStack(b);
    rmSync(dir, { recursive: true, force: true });
  });

  it('config import converts vendor files that config check then accepts; --json reports the same', async () => {
    const dir = tempDir('ppuctl-import');
    const furkad = path.join(dir, 'furkad.conf');
    const grimseld = path.join(dir, 'grimseld.conf');
    const f = await run('config', 'import', path.join(VENDOR, 'furka_dectris.conf'), '-o', furkad);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stderr, /22 settings converted to furkad\.conf .*nothing left out/);
    const g = await run('config', 'import', path.join(VENDOR, 'grimsel_dectris.conf'), '-o', grimseld);
    assert.equal(g.code, 0, g.stderr);
    const check = await run('config', 'check', furkad, grimseld);
    assert.equal(check.code, 0, check.stdout);
    assert.match(check.stdout, /furkad\.conf: valid \(3 detectors\)\n.*grimseld\.conf: valid \(3 storages\)/);
    const checkJson = JSON.parse((await run('config', 'check', '--json', furkad)).stdout) as unknown;
    assert.deepEqual(checkJson, [{ file: furkad, valid: true, problems: [], notes: [] }]);
    // Never overwrites: the target is usually a live /etc/ppu file.
    // A refusal (exit 1, one line saying what to do), not bad usage (2, with the usage text).
    const again = await run('config', 'import', path.join(VENDOR, 'furka_dectris.conf'), '-o', furkad);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `ppuctl: -o ${furkad}: the file exists (or is a link) and is never replaced: name a new file, review it, then move it into place\n`);
    assert.equal(again.stdout, '');

    const odd = path.join(dir, 'grimsel_dectris.conf');
    const vendorText = readFileSync(path.join(VENDOR, 'grimsel_dectris.conf'), 'utf8');
    writeFileSync(odd, `${vendorText}compress_level 9\n`);
    const oddLine = vendorText.split('\n').length;
    const r = await run('config', 'import', '--json', odd);
    assert.equal(r.code, 1, 'something was left out');
    const j = JSON.parse(r.stdout) as { kind: string; problems: string[]; ini: string };
    assert.equal(j.kind, 'grimseld');
    assert.deepEqual(j.problems, [`line ${oddLine}: 'compress_level 9': unknown key 'compress_level', nothing in grimseld.conf corresponds to it`]);
    assert.match(j.ini, /^\[storage\.internal\]$/m);
    const missing = await run('config', 'import', path.join(dir, 'nope.conf'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.conf: cannot read the file: it does not exist\n$/);
    noStack(missing);
    rmSync(dir, { recursive: true, force: true });
  });

  it('bad usage exits 2 with the reason and the usage, never a stack trace', async () => {
    for (const args of [['status', '-n', 'x'], ['frobnicate'], ['messages', '-n', '0'], ['status', '--interval', '1'], ['config', 'import'],
      ['status', '--watch', '--interval', '1e7'], ['status', '-n', '99999999999'], ['status', '-n', '-2'], ['messages', '-n', '4294967296'],
      // An unknown option or a missing value: 2, never 1 (for verify, 1 says a copy does not match, I4).
      ['status', '--bogus'], ['verify', '--frob', '/data'], ['shift', 'start', '--frob'], ['status', '-n']]) {
      const r = await run(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^ppuctl: .+\n\nusage: ppuctl/);
      noStack(r);
    }
    const help = await run('--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /messages \[-n COUNT\] \[--json\]/);
  });
});

describe('ppuctl without the daemons (S7)', function () {
  this.timeout(60_000);

  it("shows furkad's detectors while grimseld is down, and says so (exit 3)", async () => {
    const ppu = await new Ppu({ prefix: 'ppuctl-half' }).start();
    try {
      await ppu.killGrimseld();
      const r = await ppuctl(['status'], ppu.bus.address);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stdout, /^grimseld: not running \(or not on this bus\)\n/);
      assert.match(r.stdout, /\b1MF\b/, `furkad's detector table: ${r.stdout}`);
      const json = await ppuctl(['status', '--json'], ppu.bus.address);
      assert.equal(json.code, 3);
      const parsed = JSON.parse(json.stdout) as { status: unknown; error: string; furkad: { detectors: unknown[] } };
      assert.equal(parsed.status, null);
      assert.match(parsed.error, /grimseld is not running/);
      assert.ok(parsed.furkad.detectors.length > 0, json.stdout);
    } finally {
      await ppu.stop();
    }
  });

  it('says in plain words that the daemon is not running (exit 3), or that there is no bus', async () => {
    const dir = tempDir('ppuctl-nobus');
    const bus = await startBus(dir);
    try {
      // Naming the daemon the command needed.
      for (const [args, daemon] of [[['messages'], 'grimseld'], [['shift', 'show'], 'furkad']] as const) {
        const r = await ppuctl([...args], bus.address);
        assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
        assert.equal(r.stderr, `ppuctl: ${daemon} is not running (or not on this bus)\n`);
      }
      const status = await ppuctl(['status'], bus.address);
      assert.equal(status.code, 3, status.stderr);
      assert.equal(status.stdout, 'grimseld: not running (or not on this bus)\n\nfurkad: not running (or not on this bus)\n');
    } finally {
      await bus.stop();
    }
    rmSync(dir, { recursive: true, force: true });
    const none = await ppuctl(['status'], `unix:path=${dir}/no-such-bus`);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /^ppuctl: cannot reach the bus: .*ENOENT/);
    noStack(none);
    // A missing file is not the bus: said as what it is, exit 1.
    const missing = await ppuctl(['license', 'issue', '--private-key', `${dir}/no-such.pem`, '--mac', '00:11:22:33:44:55', '--holder', 'x', '-o', `${dir}/k`], `unix:path=${dir}/no-such-bus`);
    assert.equal(missing.code, 1, missing.stderr);
    assert.doesNotMatch(missing.stderr, /cannot reach the bus/);
    assert.match(missing.stderr, /no-such\.pem/);
  });
});

describe('ppuctl status during a stream (I2, G9)', function () {
  this.timeout(240_000);

  it('never shows a row with more verified copies than copied ones, refresh after refresh of a live stream', async () => {
    // Found by a tester: `ppuctl status` read QueryStatus, then the license, then QueryVerified, three moments; copies
    // made and verified in between showed as Verified > Copied.
    const ppu = new Ppu({ prefix: 'ppuctl-stream' });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: 2 },
      'storage.backup': { type: 'OPTIONAL', target: path.join(ppu.storageRoot, 'backup'), n_copy_processes: 2 },
    };
    await ppu.start();
    try {
      await ppu.startShift(900, 901, []);
      const watch = startProcess(process.execPath, [PPUCTL_BIN, 'status', '--watch', '--json', '--interval', '0.1', '-n', '1'],
        { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address } });
      let out = ''; // every refresh (the process's own record keeps only the last 200 kB)
      watch.child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
      type Refresh = { status: Array<{ storage: string; copied: number }>; verified: Array<{ storage: string; verified: number }> };
      const refreshes = (): Refresh[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Refresh);
      const n = 1500;
      for (let i = 0; i < n; i++) writeImage(ppu.detectorRamdisks['1MF']!, `stream/img${String(i).padStart(4, '0')}.cbf`, 2000);
      await eventually(async () => (await ppu.queryStatus(1)).every((r) => r[5] === BigInt(n)), 180_000, 'the stream copied to both storages');
      await eventually(() => refreshes().some((r) => r.status.every((row) => row.copied === n)), 30_000, 'a refresh showing the whole stream copied');
      watch.kill('SIGTERM');
      assert.equal(await watch.exited, 0, watch.output());
      const all = refreshes();
      const during = all.filter((r) => r.status.some((row) => row.copied > 0 && row.copied < n));
      assert.ok(during.length >= 3, `refreshes while the stream was copied: ${during.length} of ${all.length}`);
      for (const r of all) {
        for (const row of r.status) {
          const v = r.verified.find((x) => x.storage === row.storage)!;
          assert.ok(v.verified <= row.copied, `storage ${row.storage}: ${v.verified} verified > ${row.copied} copied in one refresh`);
        }
      }
      const end = all.find((r) => r.status.every((row) => row.copied === n))!;
      assert.ok(end.verified.every((v) => v.verified > 0), `verified copies counted: ${JSON.stringify(end)}`);
    } finally {
      await ppu.stop();
    }
  });
});

describe('ppuctl when the bus goes away under it (S7)', function () {
  this.timeout(120_000);

  it('messages and status --watch end with exit 3 and say the bus was lost, not a quiet 0 (or 1)', async () => {
    // Found by a hostile tester: `ppuctl messages` printed "grimseld left the bus" and exited 0, which a supervisor
    // or a pipeline takes for a clean end (and stops alerting); `status --watch` exited 1.
    const ppu = await new Ppu({ prefix: 'ppu-ctl-busgone' }).start();
    const spawn = (...args: string[]) => startProcess(process.execPath, [PPUCTL_BIN, ...args], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address } });
    const messages = spawn('messages');
    const watch = spawn('status', '--watch', '--interval', '0.5');
    try {
      await eventually(() => /following grimseld messages/.test(messages.output()), 30_000, 'subscribed');
      await eventually(() => /^ppuctl status, /m.test(watch.output()), 30_000, 'a first table');
      process.kill(ppu.bus.proc.child.pid!, 'SIGKILL');
      const ended = (p: typeof messages): Promise<number | null | string> => Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
      const [m, w] = await Promise.all([ended(messages), ended(watch)]);
      assert.equal(m, 3, messages.output());
      assert.equal(w, 3, watch.output().slice(-2000));
      for (const out of [messages.output(), watch.output()]) assert.match(out, /ppuctl: lost the bus \(the bus connection has ended/);
    } finally {
      await messages.stop();
      await watch.stop();
      // Both daemons end by themselves without their bus (exit 1): stopped once they have.
      await Promise.all([ppu.furkad!.proc.stop(), ppu.grimseld!.proc.stop()]);
      ppu.furkad = undefined;
      ppu.grimseld = undefined;
      await ppu.stop();
    }
  });
});

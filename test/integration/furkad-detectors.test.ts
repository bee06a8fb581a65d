// furkad with two real rsync daemons: independent detector loops, outage and recovery, complete files only,
// per-detector state on the bus (F1, F2, F10).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type * as dbus from 'dbus-next';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, sizesWhile, writeImage } from '../fixtures/files.js';
import { startRsyncDaemon } from '../fixtures/rsync-daemon.js';
import { markFixture, startProcess } from '../fixtures/processes.js';
import { testIssuer } from '../fixtures/license.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH } from '../../src/dbus/names.js';

type Row = [string, string, string, bigint, bigint, bigint];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const furkaProperty = <T>(ppu: Ppu, name: string): Promise<T> => ppu.furkaProperty<T>(name);

describe('furkad: independent detectors, recovery, complete files (F1, F2, F10)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let keyDir: string;

  before(async () => {
    keyDir = tempDir('furkad-license');
    const issuer = testIssuer(keyDir);
    const licensekey = issuer.issue(path.join(keyDir, 'license.key'));
    // rsync_timeout_s = 3: a detector that accepts connections but never answers times out quickly (F10 test).
    ppu = await new Ppu({ prefix: 'ppu-detectors', detectors: ['1MF', '2MF'], furkad: { licensekey, rsync_timeout_s: 3 }, furkadEnv: issuer.env }).start();
  });
  after(async () => {
    await ppu?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('keeps delivering 1MF while 2MF is down, then takes 2MF up where it left off: nothing lost or duplicated, outage logged once', async () => {
    const [licensed, reason] = await furkaProperty<[boolean, string]>(ppu, 'License');
    assert.ok(licensed, reason);
    assert.match(reason, /^licensed to Test Beamline \(/);
    await ppu.startShift(500, 501);
    const props = (await ppu.client.getProxyObject(FURKA_NAME, FURKA_PATH)).getInterface('org.freedesktop.DBus.Properties');
    const seen: Row[][] = [];
    const onChange = (iface: string, changed: Record<string, dbus.Variant>) => {
      if (iface === FURKA_IFACE && changed['Detectors']) seen.push(changed['Detectors'].value as Row[]);
    };
    props.on('PropertiesChanged', onChange);

    const port2 = ppu.rsyncd['2MF']!.port;
    await ppu.rsyncd['2MF']!.stop();
    const usr1 = path.join(ppu.ppuRamdisk, '1mf', '500_501');
    const usr2 = path.join(ppu.ppuRamdisk, '2mf', '500_501');
    const names: string[] = [];
    // About 5 s of outage on 2MF while both detectors keep writing.
    for (let i = 0; i < 25; i++) {
      const rel = `outage/img_${String(i).padStart(3, '0')}.cbf`;
      writeImage(ppu.detectorRamdisks['1MF']!, rel, 20_000);
      writeImage(ppu.detectorRamdisks['2MF']!, rel, 20_000);
      names.push(rel);
      await sleep(200);
    }
    // 1MF is not delayed by the dead 2MF: all of its files are in place before 2MF's daemon is back.
    await eventually(() => listFiles(usr1).length === names.length, 20_000, "1MF's files while 2MF is down");
    assert.deepEqual(listFiles(usr2), [], 'nothing from 2MF while its daemon is down');
    const during = (await furkaProperty<Row[]>(ppu, 'Detectors')).find((r) => r[0] === '2MF')!;
    assert.equal(during[1], 'retrying', '2MF shows its outage on the bus');
    assert.match(during[2], /^rsync exit \d+: /, 'with the rsync error');
    assert.ok(seen.some((rows) => rows.some((r) => r[0] === '2MF' && r[1] === 'retrying')), 'PropertiesChanged told watchers');

    ppu.rsyncd['2MF'] = await startRsyncDaemon(ppu.detectorRamdisks['2MF']!, ppu.work, port2, { password: ppu.rsyncKey.key });
    markFixture(ppu.rsyncd['2MF'].proc);
    await eventually(() => listFiles(usr2).length === names.length, 30_000, "2MF's files after its daemon restarted");
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[5] === BigInt(2 * names.length) && r[4] === 0n),
      30_000, 'grimseld to copy every file of both detectors');
    await ppu.quiescent();
    assert.deepEqual(listFiles(usr1), names);
    assert.deepEqual(listFiles(usr2), names, 'every 2MF file once, none lost');
    const row = (await ppu.queryStatus(1))[0]!;
    assert.deepEqual([row[4], row[5], row[6]], [0n, BigInt(2 * names.length), 0n], 'grimseld counted each file once');
    assert.deepEqual(listFiles(ppu.detectorRamdisks['2MF']!), [], 'the 2MF detector ramdisk is emptied');

    const after = (await furkaProperty<Row[]>(ppu, 'Detectors')).find((r) => r[0] === '2MF')!;
    assert.deepEqual([after[1], after[2], after[3]], ['idle', '', BigInt(names.length)], '2MF idle again, its files counted');
    const log = ppu.furkad!.proc.output().split('\n').filter((l) => l.includes('"2MF"'));
    assert.equal(log.filter((l) => l.includes('unreachable or failing')).length, 1, `outage logged once:\n${log.join('\n')}`);
    assert.equal(log.filter((l) => l.includes('reachable again')).length, 1, 'recovery logged once');
    // Dozens of runs with files: waits must not pile listeners on the stop signal (a leak over months).
    assert.doesNotMatch(ppu.furkad!.proc.output(), /MaxListenersExceededWarning/);
    props.off('PropertiesChanged', onChange);
  });

  it('never shows a slowly appended file under its final name before it is complete, and delivers it once (F2)', async () => {
    await ppu.startShift(510, 511);
    const src = path.join(ppu.detectorRamdisks['1MF']!, 'slow', 'grow.cbf');
    const dest = path.join(ppu.ppuRamdisk, '1mf', '510_511', 'slow', 'grow.cbf');
    // A writer that puts 24 MiB under the final name and then keeps appending 4 KiB about every millisecond
    // for 3 s. A run takes longer than the gap between two appends, so every run sees the file change while
    // it is sent: the case F2 promises to hold back. (A writer pausing longer than a whole run, an empty
    // file before its first write included, is beyond what rsync can see; see the README.)
    const writer = startProcess(process.execPath, ['-e', `
      const fs = require('fs'); const path = require('path'); fs.mkdirSync(path.dirname(process.argv[1]), { recursive: true });
      const tmp = path.join(path.dirname(process.argv[1]), '.grow.cbf.writing'); fs.writeFileSync(tmp, Buffer.alloc(24 << 20, 7)); fs.renameSync(tmp, process.argv[1]);
      const fd = fs.openSync(process.argv[1], 'a');
      const b = Buffer.alloc(4096, 7); const end = Date.now() + 3000;
      while (Date.now() < end) { fs.writeSync(fd, b); const t = process.hrtime.bigint(); while (process.hrtime.bigint() - t < 1000000n) {} }
      fs.closeSync(fd);`, src]);
    const observed = await sizesWhile(dest, writer.exited);
    assert.equal(await writer.exited, 0, writer.output());
    const final = statSync(src, { throwIfNoEntry: false })?.size;
    await eventually(() => existsSync(dest) && !existsSync(src), 20_000, 'the complete file on the PPU');
    const size = statSync(dest).size;
    assert.ok(final === undefined || final === size, `PPU copy has the final size ${String(final)}`);
    assert.ok(size > (24 << 20) + 100 * 4096, `the writer wrote for a while (${size} bytes)`);
    assert.deepEqual(observed.filter((s) => s !== size), [], 'never observed shorter than complete under its final name');
    assert.equal(sha256File(readFileSync(dest)), sha256File(Buffer.alloc(size, 7)), 'content complete');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 510 && r[5] === 1n), 20_000, 'grimseld to copy it');
    await ppu.quiescent();
    const row = (await ppu.queryStatus(1))[0]!;
    assert.deepEqual([row[1], row[4], row[5], row[6]], [510, 0n, 1n, 0n], 'delivered to grimseld exactly once');
  });

  it('rides out a detector that accepts connections but never answers (network timeout), 1MF unaffected (F10)', async () => {
    await ppu.startShift(520, 521);
    const outages = () => ppu.furkad!.proc.output().split('\n').filter((l) => l.includes('"2MF"') && l.includes('unreachable or failing')).length;
    const before = outages();
    const port2 = ppu.rsyncd['2MF']!.port;
    await ppu.rsyncd['2MF']!.stop();
    // A black hole on 2MF's port: TCP accepts, nothing is ever said (a hung detector server).
    const sockets: net.Socket[] = [];
    const hole = net.createServer((s) => { sockets.push(s); s.on('error', () => undefined); });
    await new Promise<void>((r) => hole.listen(port2, '127.0.0.1', r));
    const names: string[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const rel = `hung/img_${String(i).padStart(3, '0')}.cbf`;
        writeImage(ppu.detectorRamdisks['1MF']!, rel, 10_000);
        writeImage(ppu.detectorRamdisks['2MF']!, rel, 10_000);
        names.push(rel);
        await sleep(250);
      }
      const usr1 = path.join(ppu.ppuRamdisk, '1mf', '520_521');
      await eventually(() => listFiles(usr1).length === names.length, 20_000, "1MF's files while 2MF hangs");
      await eventually(async () => (await furkaProperty<Row[]>(ppu, 'Detectors')).some((r) => r[0] === '2MF' && r[1] === 'retrying' &&
        /^rsync exit (30|35): /.test(r[2])), 20_000, '2MF to time out (rsync exit 35 or 30)');
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((r) => hole.close(() => r()));
    }
    ppu.rsyncd['2MF'] = await startRsyncDaemon(ppu.detectorRamdisks['2MF']!, ppu.work, port2, { password: ppu.rsyncKey.key });
    markFixture(ppu.rsyncd['2MF'].proc);
    const usr2 = path.join(ppu.ppuRamdisk, '2mf', '520_521');
    await eventually(() => listFiles(usr2).length === names.length, 30_000, "2MF's files once it answers again");
    assert.deepEqual(listFiles(usr2), names, 'nothing lost or duplicated');
    assert.equal(outages() - before, 1, 'the outage logged once, however many retries it took');
  });
});

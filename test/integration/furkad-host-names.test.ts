// Detector servers given by name (remoteIP = a host name), with real furka-agents and furkad in a private mount
// namespace whose /etc/hosts and /etc/resolv.conf are the test's (the machine's are never touched): two names whose
// DNS server never answers, one in /etc/hosts. The names that hang hold up their own detectors only, each saying
// so, and never a stop of furkad (F1, F10, S1).
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

type Row = [string, string, string, bigint, bigint, bigint];

describe('furkad with detector servers given by name, some whose DNS server does not answer (F1, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let silent: dgram.Socket;
  const names = tempDir('ppu-names');
  const hostsFile = path.join(names, 'hosts');
  const resolvFile = path.join(names, 'resolv.conf');

  before(async () => {
    // A DNS server that takes every query and never answers (one not listening would refuse at once: ICMP).
    const server = `127.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}.53`;
    silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => { silent.once('error', reject); silent.bind(53, server, resolve); });
    // Each lookup of a name it is asked for takes the C library 5 x 30 s before it gives up.
    writeFileSync(resolvFile, `nameserver ${server}\noptions timeout:30 attempts:5\n`);
    writeFileSync(hostsFile, '127.0.0.1 localhost\n127.0.0.1 det-d.beamline.test\n');
    ppu = await new Ppu({
      prefix: 'ppu-names',
      // The hanging ones first: their lookups are asked for before det-d's.
      detectors: ['H1', 'H2', 'D'],
      transport: 'agent',
      detectorConf: { H1: { remoteIP: 'det-h1.beamline.test' }, H2: { remoteIP: 'det-h2.beamline.test' }, D: { remoteIP: 'det-d.beamline.test' } },
      furkadWrap: ['unshare', '-m', 'sh', '-c', `mount --bind ${hostsFile} /etc/hosts && mount --bind ${resolvFile} /etc/resolv.conf && exec "$0" "$@"`],
    }).start();
  });
  after(async () => {
    await ppu?.stop();
    silent?.close();
  });

  const row = async (id: string): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)!;
  const usr = (id: string): string => path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');

  it('delivers the files of the detector whose name is in /etc/hosts, also after its agent restarted (F1, F10)', async () => {
    writeImage(ppu.detectorRamdisks['D']!, 'run/a.cbf', 20_000);
    // Before: its lookup queued behind the two that hung (libuv runs two at once), a minute each, again and again.
    await eventually(() => listFiles(usr('D')).includes('run/a.cbf'), 40_000, "D's first file while two other names hang");
    await ppu.killAgent('D');
    await ppu.startAgent('D');
    writeImage(ppu.detectorRamdisks['D']!, 'run/b.cbf', 20_000);
    await eventually(() => listFiles(usr('D')).includes('run/b.cbf'), 40_000, "D's file after its agent restarted, while two other names hang");
  });

  it('says of each detector whose name hangs that its name was not resolved, not that its server is off (F10)', async () => {
    for (const id of ['H1', 'H2']) {
      await eventually(async () => (await row(id))[1] === 'retrying', 30_000, `${id} retrying`);
      const [, , why] = await row(id);
      assert.match(why, new RegExp(`the name 'det-${id.toLowerCase()}\\.beamline\\.test' was not resolved within 8 s: its DNS servers`), why);
      assert.doesNotMatch(why, /server is off/);
    }
  });

  it('stops at SIGTERM without waiting for the lookups its DNS server never answers (S1)', async () => {
    const furkad = ppu.furkad!.proc;
    furkad.kill('SIGTERM');
    // Before, the lookups in flight (5 x 30 s each) kept the process after it said "stopped", past the unit's
    // TimeoutStopSec (30 s), to be killed by systemd.
    const code = await Promise.race([furkad.exited, new Promise((r) => setTimeout(() => r('still running'), 45_000))]);
    assert.equal(code, 0, furkad.output().slice(-3000));
    ppu.furkad = undefined;
  });
});

// Detector servers given by name (remoteIP = a host name), with real furka-agents and furkad in a private mount
// namespace whose /etc/hosts and /etc/resolv.conf are the test's (the machine's are never touched): two names whose
// DNS server never answers, one in /etc/hosts. The names that hang hold up their own detectors only, each saying
// so, and never a stop of furkad (F1, F10, S1).
import { strict as assert } from 'node:assert';
import { ppuBehindSilentDns } from '../fixtures/private-names.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

describe('furkad with detector servers given by name, some whose DNS server does not answer (F1, F10)', function () {
  this.timeout(300_000);
  const { ppu: ppuOf, row, usr } = ppuBehindSilentDns('127.0.0.1 det-d.beamline.test\n', {
    prefix: 'ppu-names',
    // The hanging ones first: their lookups are asked for before det-d's.
    detectors: ['H1', 'H2', 'D'],
    transport: 'agent',
    detectorConf: { H1: { remoteIP: 'det-h1.beamline.test' }, H2: { remoteIP: 'det-h2.beamline.test' }, D: { remoteIP: 'det-d.beamline.test' } },
  });

  it('delivers the files of the detector whose name is in /etc/hosts, also after its agent restarted (F1, F10)', async () => {
    const ppu = ppuOf();
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
    const ppu = ppuOf();
    const furkad = ppu.furkad!.proc;
    furkad.kill('SIGTERM');
    // Before, the lookups in flight (5 x 30 s each) kept the process after it said "stopped", past the unit's
    // TimeoutStopSec (30 s), to be killed by systemd.
    const code = await Promise.race([furkad.exited, new Promise((r) => setTimeout(() => r('still running'), 45_000))]);
    assert.equal(code, 0, furkad.output().slice(-3000));
    ppu.furkad = undefined;
  });
});

describe('furkad without a license and an rsync detector server whose name does not resolve in time (F1, F8, F10)', function () {
  this.timeout(300_000);
  const { ppu: ppuOf, row, usr } = ppuBehindSilentDns('', {
    prefix: 'ppu-names-rsync',
    detectors: ['R1', 'B', 'A'],
    transport: { A: 'agent' },
    detectorConf: { R1: { remoteIP: 'det-r1.beamline.test' } },
  });

  it('says the name was not resolved, and keeps serving the others one transfer at a time (F1, F8)', async () => {
    const ppu = ppuOf();
    const [licensed] = await ppu.furkaProperty<[boolean, string]>('License');
    assert.equal(licensed, false, 'single-thread mode: one transfer at a time across detectors');
    await eventually(async () => (await row('R1'))[1] === 'retrying', 60_000, 'R1 retrying');
    // Before: "no connection to the detector's rsync daemon at det-r1.beamline.test:PORT within 10 s".
    await eventually(async () => /the name 'det-r1\.beamline\.test' was not resolved within 8 s/.test((await row('R1'))[2]), 60_000,
      "R1's reason naming its name");
    assert.match((await row('R1'))[2], /retrying, without taking the single transfer slot meanwhile$/);
    for (let i = 0; i < 4; i++) {
      for (const id of ['B', 'A']) {
        writeImage(ppu.detectorRamdisks[id]!, `r/img_${i}.cbf`, 20_000);
        await eventually(() => listFiles(usr(id)).includes(`r/img_${i}.cbf`), 30_000, `${id}'s r/img_${i}.cbf while R1's name hangs`);
      }
    }
  });
});

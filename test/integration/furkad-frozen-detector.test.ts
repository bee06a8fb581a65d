// furkad without a license (one transfer at a time) and detectors that accept connections but do not answer: a
// stopped rsync daemon (SIGSTOP), a listener that never greets, a stopped furka-agent. They never take the single
// transfer slot while they do not answer, so the healthy detectors' files keep arriving; each frozen one says so
// (`retrying`, why), and is served again once it answers (F1, F8, F10).
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

type Row = [string, string, string, bigint, bigint, bigint];

describe('furkad without a license and detectors that do not answer (F1, F8, F10)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  /**
   * A daemon that hangs the moment furkad has asked whether it answers: it greets a connection on which the client
   * says nothing first (furkad's question), never one on which it speaks first (an rsync client, which sends its own
   * greeting at once). So every run meets a daemon that accepted the connection and then said nothing.
   */
  let mute: net.Server;
  const accepted = new Set<net.Socket>();
  const stopped: number[] = [];

  before(async () => {
    mute = net.createServer((s) => {
      accepted.add(s);
      s.on('error', () => undefined);
      s.on('close', () => accepted.delete(s));
      let spoke = false;
      s.once('data', () => { spoke = true; });
      setTimeout(() => { if (!spoke && !s.destroyed) s.write('@RSYNCD: 31.0\n'); }, 200);
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    // rsync_timeout_s = 60: a run that waited for a silent daemon's greeting would hold the slot for a minute.
    ppu = await new Ppu({ prefix: 'ppu-frozen', detectors: ['1MF', '2MF', '3MF', '4MF'], transport: { '1MF': 'agent' },
      furkad: { rsync_timeout_s: 60 }, detectorConf: { '4MF': { port: (mute.address() as net.AddressInfo).port } } }).start();
  });
  after(async () => {
    for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');
    await ppu?.stop();
    for (const s of accepted) s.destroy();
    await new Promise((r) => mute?.close(r));
  });

  const row = async (id: string): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)!;
  const usr = (id: string): string => path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000');
  /** One file after another on `id`, each written once the one before has arrived: every one needs a turn of the slot. */
  async function oneByOne(id: string, prefix: string, count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const rel = `${prefix}/img_${String(i).padStart(2, '0')}.cbf`;
      writeImage(ppu.detectorRamdisks[id]!, rel, 20_000);
      await eventually(() => listFiles(usr(id)).includes(rel), 30_000, `${id}'s ${rel} while others do not answer`);
    }
  }
  const freeze = (pid: number): void => {
    process.kill(pid, 'SIGSTOP');
    stopped.push(pid);
  };
  const thaw = (pid: number): void => {
    process.kill(pid, 'SIGCONT');
    stopped.splice(stopped.indexOf(pid), 1);
  };

  it("keeps serving the others while an rsync daemon is stopped and another never greets, each said as such (F1, F8)", async () => {
    const [licensed] = await ppu.furkaProperty<[boolean, string]>('License');
    assert.equal(licensed, false, 'single-thread mode: one transfer at a time across detectors');
    await eventually(async () => (await row('4MF'))[1] === 'retrying', 30_000, '4MF (hangs once asked) retrying');
    assert.match((await row('4MF'))[2], /^rsync exit 30: the detector's rsync daemon at 127\.0\.0\.1:\d+ accepted the connection but sent no greeting within 10 s .*run ended by furkad$/);

    const daemon = ppu.rsyncd['3MF']!.proc.child.pid!;
    freeze(daemon);
    await eventually(async () => (await row('3MF'))[1] === 'retrying', 30_000, '3MF (daemon stopped) retrying');
    assert.match((await row('3MF'))[2], /rsync daemon at 127\.0\.0\.1:\d+ accepted the connection but sent no greeting within 10 s/);
    // Written once no run of 3MF is in flight: one served by a child the daemon forked before it stopped could take it.
    writeImage(ppu.detectorRamdisks['3MF']!, 'frozen/a.cbf', 20_000);

    // Both silent ones keep trying meanwhile; the healthy detectors' files keep arriving, one after another.
    await Promise.all([oneByOne('2MF', 'r', 8), oneByOne('1MF', 'a', 8)]);
    assert.deepEqual(listFiles(usr('3MF')), [], 'nothing from the stopped daemon');
    assert.equal((await row('3MF'))[1], 'retrying', 'still said while stopped');

    thaw(daemon);
    await eventually(() => listFiles(usr('3MF')).includes('frozen/a.cbf'), 60_000, "3MF's file once its daemon goes on");
    await eventually(async () => (await row('3MF'))[1] !== 'retrying', 30_000, '3MF no longer retrying');
  });

  it('keeps serving the others while a furka-agent is stopped, said as such (F1, F8)', async () => {
    const agent = ppu.agents['1MF']!.proc.child.pid!;
    freeze(agent);
    writeImage(ppu.detectorRamdisks['1MF']!, 'frozen/b.cbf', 20_000);
    await eventually(async () => (await row('1MF'))[1] === 'retrying', 60_000, '1MF (agent stopped) retrying');
    assert.match((await row('1MF'))[2], /agent at .* (does not answer|stopped answering)|no answer from the agent/);
    await oneByOne('2MF', 'r2', 8);
    assert.equal(listFiles(usr('1MF')).includes('frozen/b.cbf'), false, 'nothing from the stopped agent');

    thaw(agent);
    await eventually(() => listFiles(usr('1MF')).includes('frozen/b.cbf'), 60_000, "1MF's file once its agent goes on");
  });
});

// furkad while a large file (an EIGER's HDF5 data file) is being fetched from furka-agent, behind a relay that
// stalls the body mid-file as a slow link keeps a 2 GB fetch going: Detectors shows the run (S7), and a stop then
// cuts the run in flight after 5 s, which closes the connection; the agent announces everything again on the next
// one. The file was complete before the stop, so it is the running shift's (A5): the stop's drain takes it into
// that shift, or, if it cannot in time, it is owed to that shift and the next furkad places it there. Before, the
// drain ended before the agent's listing came back, and the file went to the default shift unsaid; later it went
// there said (until 2026-12-05).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';
import { LoopbackRelay } from '../fixtures/loopback-relay.js';

const MB = 1024 * 1024;

interface Connection { down: net.Socket; up: net.Socket; left: number; held: Buffer[]; stalled: boolean }

/**
 * Passes what goes between furkad and the agent, except: stallAfter() lets only so many more of the agent's bytes
 * through on the connection open then (a body stalled mid-file, as a slow link keeps a 2 GB fetch going), until
 * release() or the connection closes; and on a connection made after a stall, the agent's first file announcement
 * and all after it are held for `listingDelayMs` (an agent busy reading a large file answers a reconnect late).
 */
class StallingRelay extends LoopbackRelay {
  listingDelayMs = 1500;
  #current: Connection | undefined;
  #stalledOnce = false;

  protected relay(down: net.Socket, up: net.Socket): void {
    down.pipe(up);
    const c: Connection = { down, up, left: Infinity, held: [], stalled: false };
    const delayListing = this.#stalledOnce;
    this.#current = c;
    if (delayListing) {
      this.#delayListing(down, up);
      return;
    }
    up.on('data', (b: Buffer) => {
      if (c.stalled) {
        c.held.push(b);
        return;
      }
      if (b.length > c.left) {
        down.write(b.subarray(0, c.left));
        c.held.push(b.subarray(c.left));
        c.left = 0;
        c.stalled = true;
        this.#stalledOnce = true;
        return;
      }
      c.left -= b.length;
      down.write(b);
    });
  }

  /**
   * The agent's HTTP/2 frames, passed as they come, except the events stream's (stream 1) DATA frames from the first
   * file announcement on: held back `listingDelayMs`, in order. Everything else (settings, pings, other answers)
   * passes, as from an agent that answers at once but lists late.
   */
  #delayListing(down: net.Socket, up: net.Socket): void {
    let rest = Buffer.alloc(0);
    let holding: Buffer[] | undefined;
    up.on('data', (b: Buffer) => {
      rest = Buffer.concat([rest, b]);
      while (rest.length >= 9) {
        const size = 9 + rest.readUIntBE(0, 3);
        if (rest.length < size) break;
        const frame = rest.subarray(0, size);
        rest = rest.subarray(size);
        const events = frame[3] === 0 && (frame.readUInt32BE(5) & 0x7fffffff) === 1;
        if (events && !holding && frame.includes('{"t":"file"')) {
          holding = [];
          setTimeout(() => { for (const f of holding!.splice(0)) down.write(f); holding = undefined; }, this.listingDelayMs);
        }
        if (events && holding) holding.push(Buffer.from(frame));
        else down.write(frame);
      }
    });
  }

  /** At most `bytes` more of the agent's come through on the connection open now. */
  stallAfter(bytes: number): void {
    this.#current!.left = bytes;
  }

  get stalled(): boolean {
    return this.#current?.stalled === true;
  }

  release(): void {
    this.#flush(this.#current!);
  }

  #flush(c: Connection): void {
    c.stalled = false;
    c.left = Infinity;
    for (const b of c.held.splice(0)) c.down.write(b);
  }
}

describe('furkad while a large file is fetched from the agent: its status, and a stop (A4, A5, F6, S7)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let relay: StallingRelay;

  before(async () => {
    relay = await StallingRelay.start(() => ppu.agents['1MF']!.port);
    ppu = new Ppu({ prefix: 'ppu-agent-stop-cut', transport: 'agent', detectorConf: { '1MF': { port: relay.port } } });
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
    await relay?.close();
  });

  it('shows a detector as transferring while a run fetches a large file, not idle with nothing pending (S7, A3)', async () => {
    await ppu.startShift(760, 761);
    const detector = ppu.detectorRamdisks['1MF']!;
    relay.stallAfter(2 * MB);
    const big = writeImage(detector, 'scan_0000/data_000001.h5', 80 * MB + 7);
    await eventually(() => relay.stalled, 30_000, 'the fetch to be under way and stalled');
    const state = async (): Promise<string> => (await ppu.furkaProperty<Array<[string, string, string, bigint, bigint, bigint]>>('Detectors'))[0]![1];
    // Before, it showed idle (what its last run left) for as long as the file took: a minute for 2 GB.
    await eventually(async () => (await state()) === 'transferring', 10_000, "Detectors to show the run fetching the file as 'transferring'");
    relay.release();
    const placed = path.join(ppu.ppuRamdisk, '1mf', '760_761', big.rel);
    await eventually(() => existsSync(placed), 60_000, 'the file placed');
    await ppu.quiescent(1000, 60_000);
    assert.equal(sha256File(readFileSync(placed)), big.sha256);
  });

  it('places a file whose fetch the stop cut short in the shift that ran, never in the default one the next furkad starts (A5, F6)', async () => {
    await ppu.startShift(770, 771);
    const detector = ppu.detectorRamdisks['1MF']!;
    // Over the 64 MiB the agent reads whole: sent in pieces, as an HDF5 data file is.
    relay.stallAfter(2 * MB);
    const big = writeImage(detector, 'scan_0001/data_000001.h5', 80 * MB + 123);
    await eventually(() => relay.stalled, 30_000, 'the fetch to be under way and stalled');
    const staged = path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging', '1MF', big.rel);
    await eventually(() => existsSync(staged), 30_000, 'the file being fetched into staging');
    // systemctl stop: SIGTERM to furkad alone (KillMode=mixed), SIGKILL after TimeoutStopSec=30s.
    assert.equal(await ppu.furkad!.proc.stop(30_000, 'leader'), 0, 'a clean stop within TimeoutStopSec');
    const said = ppu.furkad!.proc.output();
    const stopping = said.slice(said.lastIndexOf('"msg":"stopping"'));
    await ppu.startFurkad();
    const ran = path.join(ppu.storageRoot, 'internal', '1mf', '770_771', big.rel);
    const other = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000', big.rel);
    await eventually(() => existsSync(ran) || existsSync(other), 60_000, 'the file stored');
    await ppu.quiescent(1000, 60_000);
    // Known before the stop (announced, its fetch under way): the running shift's, whether the stop's drain took it
    // or the next furkad did (owed to it, A5). Before 2026-12-05 one the drain could not take went to the default
    // shift, said at the stop.
    assert.ok(existsSync(ran), `in the shift that ran, not the default one: ${stopping.split('\n').filter((l) => /"level":40/.test(l)).join('\n')}`);
    assert.equal(sha256File(readFileSync(ran)), big.sha256, 'whole, byte for byte');
    assert.deepEqual([statSync(ran).uid, statSync(ran).gid], [770, 771], 'owned by the shift that ran (F3)');
    assert.ok(!existsSync(other), 'once');
    assert.deepEqual(listFiles(detector), [], 'its source taken from the detector');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')), [], 'nothing left in staging');
  });
});

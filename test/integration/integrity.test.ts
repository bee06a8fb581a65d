// Integrity on the way in, with the real daemons: each ramdisk file carries the checksum of the detector's
// bytes with its shift and detector (I1, I3), over the agent and over rsync; a file damaged between agent and
// furkad is never placed and its source stays until a good copy is (I2, A4); the checksum reaches grimseld's
// journal through furkad's outbox, and stays there across restarts of both (F6, G12).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, placeImage, sha256File } from '../fixtures/files.js';
import { FlipProxy, MARKER } from '../fixtures/flip-proxy.js';
import { callMethod } from '../../src/dbus/bus.js';
import { Catalog } from '../../src/grimseld/catalog.js';
import { ShiftBook } from '../../src/grimseld/shift-book.js';

/** What `xxhsum -H2` says of some bytes: the value a facility would compute without this project. */
function xxh128(work: string, data: Buffer): string {
  const ref = path.join(work, 'ref', `${Date.now()}-${Math.random()}`);
  mkdirSync(path.dirname(ref), { recursive: true });
  writeFileSync(ref, data);
  return `xxh128:${execFileSync('xxhsum', ['-H2', ref], { encoding: 'utf8' }).split(/\s+/)[0]!}`;
}

/** The ppu.* attributes of a file as getfattr shows them (root sees user.* and trusted.*): namespace → name → value. */
function attributes(file: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  const text = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '^(user|trusted)\\.ppu\\.', file], { encoding: 'utf8' });
  for (const line of text.split('\n')) {
    const m = /^(user|trusted)\.ppu\.(\w+)="(.*)"$/.exec(line);
    if (m) (out[m[1]!] ??= {})[m[2]!] = m[3]!;
  }
  return out;
}

/** furkad's log lines (pino JSON) whose message matches. */
function logLines(ppu: Ppu, msg: RegExp): Array<Record<string, unknown>> {
  return (ppu.furkad?.proc.output() ?? '').split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => msg.test(String(l['msg'])));
}

const DAMAGED = /arrived damaged/;

describe('integrity on the way in: checksum, provenance, arrival check (I1–I3)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let proxy: FlipProxy;
  const offline = tempDir('integrity-offline');
  before(async () => {
    // 1MF: furka-agent, reached through the proxy that can damage bodies; 2MF: the stock rsync daemon.
    proxy = await FlipProxy.start(() => ppu.agents['1MF']!.port);
    ppu = new Ppu({
      prefix: 'ppu-integrity', detectors: ['1MF', '2MF'], transport: { '1MF': 'agent' },
      detectorConf: { '1MF': { port: proxy.port } }, ramdiskBytes: 64 << 20,
      storages: {
        'storage.internal': { type: 'INTERNAL', target: path.join(offline, 'internal'), n_copy_processes: 2 },
        // Never mounted (G13): every file stays pending there, so grimseld holds its record to the end of the suite.
        'storage.offline': { type: 'OPTIONAL', target: path.join(offline, 'unmounted', 'data'), mountpoint: path.join(offline, 'unmounted'), n_copy_processes: 1 },
      },
    });
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
    await proxy?.close();
    rmSync(offline, { recursive: true, force: true });
  });

  const detector = (id: string): string => ppu.detectorRamdisks[id]!;
  const onRamdisk = (id: string, uid: number, gid: number, rel: string): string => path.join(ppu.ppuRamdisk, id.toLowerCase(), `${uid}_${gid}`, rel);
  /** Writes an image (temp name, rename) whose bytes start with the proxy's marker; returns its bytes. */
  const write = (id: string, rel: string, size: number): Buffer => {
    const data = Buffer.concat([MARKER, randomBytes(size - MARKER.length)]);
    placeImage(detector(id), rel, data);
    return data;
  };

  it('puts the checksum of the detector\'s bytes, the shift and the detector on each ramdisk file, over the agent and over rsync (I1, I3)', async () => {
    await ppu.startShift(710, 711);
    const [usertime] = await ppu.furkaProperty<[bigint, number, number]>('Shift');
    const files = [
      { id: '1MF', rel: 'a/agent.cbf', data: write('1MF', 'a/agent.cbf', 1_000_003) },
      { id: '2MF', rel: 'r/rsync.cbf', data: write('2MF', 'r/rsync.cbf', 700_001) },
    ];
    for (const f of files) {
      const placed = onRamdisk(f.id, 710, 711, f.rel);
      await eventually(() => existsSync(placed), 20_000, `${f.rel} on the PPU ramdisk`);
      assert.equal(sha256File(readFileSync(placed)), sha256File(f.data), `${f.rel}: the detector's bytes`);
      const attrs = attributes(placed);
      // Linux 6.6 and later take user.* on tmpfs; older kernels (CentOS 7) only trusted.*. Either, all in one.
      const namespaces = Object.keys(attrs);
      assert.equal(namespaces.length, 1, `${f.rel}: one namespace (${JSON.stringify(attrs)})`);
      assert.deepEqual(attrs[namespaces[0]!], { checksum: xxh128(ppu.work, f.data), shift: `${usertime}:710:711`, detector: f.id },
        `${f.rel}: ppu.checksum = xxhsum -H2 of the detector's bytes, ppu.shift = start:uid:gid, ppu.detector`);
    }
    assert.equal(logLines(ppu, DAMAGED).length, 0, 'nothing arrived damaged without the proxy damaging it');
    assert.equal(logLines(ppu, /sends no checksum/).length, 0, 'this agent sends checksums');
  });

  it('never places a file damaged on the way; its source stays until a good copy is placed, fetched again on the same connection, and it arrives once and right (I2, A4)', async () => {
    await ppu.startShift(720, 721);
    const connections = proxy.connections;
    // Every transfer of it damaged, until the line is "repaired".
    proxy.damage = Infinity;
    const bad = write('1MF', 'd/broken-line.cbf', 500_000);
    const placed = onRamdisk('1MF', 720, 721, 'd/broken-line.cbf');
    await eventually(() => logLines(ppu, DAMAGED).filter((l) => l['file'] === 'd/broken-line.cbf').length >= 4, 20_000, 'four damaged arrivals');
    const errors = logLines(ppu, DAMAGED).filter((l) => l['file'] === 'd/broken-line.cbf');
    const want = xxh128(ppu.work, bad);
    for (const e of errors) {
      assert.equal(e['level'], 50, 'logged as an error');
      assert.equal(e['sent'], want, "names the agent's checksum");
      assert.match(String(e['received']), /^xxh128:[0-9a-f]{32}$/, 'and the one of what arrived');
      assert.notEqual(e['received'], want);
    }
    assert.ok(!existsSync(placed), 'never placed');
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '720_721')), [], 'nothing of it under any name');
    assert.ok(existsSync(path.join(detector('1MF'), 'd/broken-line.cbf')), 'the source stays on the detector (not acknowledged)');
    assert.equal(proxy.connections, connections, 'fetched again on the same connection: no reconnect needed');
    proxy.damage = 0;
    await eventually(() => existsSync(placed), 20_000, 'a good copy placed once the line is repaired');
    assert.equal(sha256File(readFileSync(placed)), sha256File(bad), 'the right bytes');
    assert.equal(Object.values(attributes(placed))[0]?.['checksum'], want);
    await eventually(() => !existsSync(path.join(detector('1MF'), 'd/broken-line.cbf')), 10_000, 'the source deleted once placed');

    // One damaged transfer: fetched again at once, not after a pause.
    proxy.damage = 1;
    const once = write('1MF', 'd/one-flip.cbf', 300_000);
    const started = Date.now();
    const placedOnce = onRamdisk('1MF', 720, 721, 'd/one-flip.cbf');
    await eventually(() => existsSync(placedOnce), 20_000, 'the file damaged once');
    const took = Date.now() - started;
    assert.ok(took < 2000, `placed ${took} ms after it was written, one damaged transfer included`);
    assert.equal(logLines(ppu, DAMAGED).filter((l) => l['file'] === 'd/one-flip.cbf').length, 1);
    assert.equal(sha256File(readFileSync(placedOnce)), sha256File(once));
    assert.equal(proxy.connections, connections);
    const internal = async () => (await ppu.queryStatus(-1)).find((r) => r[1] === 720 && r[3] === 'internal');
    await eventually(async () => (await internal())?.[5] === 2n, 30_000, 'grimseld to copy both');
    await new Promise((r) => setTimeout(r, 1000)); // a late second copy would be under way by now
    assert.deepEqual(listFiles(path.join(ppu.ppuRamdisk, '1mf', '720_721')), ['d/broken-line.cbf', 'd/one-flip.cbf'], 'each once, under its own name');
    const row = await internal();
    assert.deepEqual(row && [row[4], row[5], row[6]], [0n, 2n, 0n], 'grimseld copied each once');
  });

  it("keeps each file's checksum in furkad's outbox while grimseld is away, and in grimseld's journal across its restart; an operator's file has none (F6, G12)", async () => {
    await ppu.startShift(730, 731);
    await ppu.killGrimseld();
    const files = [
      { id: '1MF', rel: 'o/agent.cbf', data: write('1MF', 'o/agent.cbf', 200_000) },
      { id: '2MF', rel: 'o/rsync.cbf', data: write('2MF', 'o/rsync.cbf', 200_000) },
    ];
    for (const f of files) await eventually(() => existsSync(onRamdisk(f.id, 730, 731, f.rel)), 20_000, `${f.rel} placed while grimseld is away`);
    await ppu.killFurkad();
    const outbox = readFileSync(path.join(ppu.work, 'furkad-state', 'outbox.jsonl'), 'utf8');
    for (const f of files) assert.ok(outbox.includes(xxh128(ppu.work, f.data)), `${f.rel}: its checksum noted in the outbox`);

    await ppu.startGrimseld();
    await ppu.startFurkad(); // hands over what its outbox holds
    await eventually(async () => {
      const rows = await ppu.queryStatus(-1);
      // Both copied, and furkad's new start-up shift known: the operator's file below joins that one.
      return rows.some((r) => r[1] === 730 && r[3] === 'internal' && r[5] === 2n) && rows[0]![0] > rows.find((r) => r[1] === 730)![0];
    }, 30_000, 'grimseld to copy both, and to learn the next shift');
    const added = path.join(ppu.ppuRamdisk, 'ops', 'added.cbf');
    mkdirSync(path.dirname(added), { recursive: true });
    writeFileSync(added, 'an operator adds this');
    await callMethod(await ppu.grimsel(), 'AddFile', `${ppu.ppuRamdisk}/./ops/added.cbf`); // answered once journaled
    await ppu.killGrimseld();
    await ppu.startGrimseld(); // replays its journal
    await ppu.grimseld!.stop();
    ppu.grimseld = undefined;

    // The journal as the restarted grimseld left it, replayed the way grimseld replays it at start (Catalog.open):
    // the running daemon shows no record from outside yet (the copy verification will use these, I2).
    const storages = ['internal', 'offline'];
    const { catalog, journal } = await Catalog.open(path.join(ppu.work, 'state'), new ShiftBook(storages, 50), storages, ppu.ppuRamdisk, false);
    try {
      for (const f of files) {
        const rec = catalog.files.latestAt(onRamdisk(f.id, 730, 731, f.rel));
        assert.ok(rec, `${f.rel}: a record`);
        assert.deepEqual([rec.checksum, rec.detector], [xxh128(ppu.work, f.data), f.id], `${f.rel}: its checksum and detector`);
      }
      const op = catalog.files.latestAt(added);
      assert.ok(op, 'the operator\'s file has a record');
      assert.deepEqual([op.checksum, op.detector], [undefined, undefined], 'and no checksum yet');
    } finally {
      await journal.close();
    }
    await ppu.startGrimseld();
  });
});

// A file handed to grimseld without a checksum (an operator's, through the FIFO or AddFile, G8; one furkad delivers
// with checksum '') whose name, size and mtime a storage copy of another file already has (a detector that numbers
// its files anew, a rewritten file of a fixed length with its mtime set). Found by a hostile tester: it was counted
// copied without a byte read, the shift-change clean-up (G5) or the fill guard (G6, links to the old copy) then
// removed its original, and the new bytes were nowhere (G3, G12, I2). Now it is read, and copied beside the other
// file as NAME.~1~, as a file with a checksum always was.
import { strict as assert } from 'node:assert';
import { chownSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { callMethod } from '../../src/dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../../src/dbus/names.js';
import { collectMessages, Ppu } from '../fixtures/ppu.js';
import { eventually } from '../fixtures/files.js';

const MB = 1024 * 1024;
/** The one mtime both versions have, to the microsecond (as the tester's touch -d). */
const WHEN = new Date('2026-12-04T01:00:00.123Z');

describe('a file without a checksum whose name, size and mtime a copy of another file has (G3, G5, G6, G12, I2)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let u: string;
  let store: string;
  /** Copied files of the internal storage over all shifts. */
  const copied = async (): Promise<number> => (await ppu.queryStatus(-1))
    .filter((r) => r[3] === 'internal').reduce((n, r) => n + Number(r[5]), 0);
  /** `data` as the shift's user's file `rel` below the shift's ramdisk directory, a new inode with the one mtime. */
  const version = (rel: string, data: Buffer | string): void => {
    const p = path.join(u, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    chownSync(path.dirname(p), 1000, 1000);
    writeFileSync(`${p}.tmp`, data);
    chownSync(`${p}.tmp`, 1000, 1000);
    utimesSync(`${p}.tmp`, WHEN, WHEN);
    renameSync(`${p}.tmp`, p);
  };
  const marked = (rel: string): string => `${ppu.ppuRamdisk}/./1mf/1000_1000/${rel}`;
  const bytesOf = (p: string): string => (existsSync(p) ? readFileSync(p, 'latin1') : '');

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-reused', ramdiskBytes: 8 * MB, grimseld: { fillstate_limit: 50, create_links: 'yes' } });
    await ppu.start();
    u = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
    store = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000');
    await eventually(() => existsSync(u), 10_000, "the shift's directory");
  });
  after(async () => ppu?.stop());

  it("through the FIFO: the second version is copied as NAME.~1~, and the shift-change clean-up deletes its original only after that copy (the tester's repro)", async () => {
    const fifo = path.join(ppu.work, 'run', 'files');
    const rel = 'a/img_001.tif';
    version(rel, 'version ONE');
    writeFileSync(fifo, `${marked(rel)}\n`);
    await eventually(async () => (await copied()) === 1 && bytesOf(path.join(store, rel)) === 'version ONE', 20_000, 'version ONE copied');
    const msgs = await collectMessages(ppu);
    version(rel, 'version TWO'); // the same length and mtime
    writeFileSync(fifo, `${marked(rel)}\n`);
    await eventually(async () => (await copied()) === 2, 20_000, 'version TWO counted copied');
    try {
      assert.equal(bytesOf(path.join(store, rel)), 'version ONE', 'the first copy kept');
      assert.equal(bytesOf(path.join(store, `${rel}.~1~`)), 'version TWO', 'the second version copied beside it (before: counted copied, never read)');
      await eventually(() => msgs.messages.some(([code, , long]) => code === 'COPY_ERROR' && /holds another file/.test(long)), 10_000, 'the copy beside another said');
    } finally {
      msgs.stop();
    }
    await ppu.startShift(1000, 1000);
    await eventually(() => !existsSync(path.join(u, rel)), 20_000, "the ended shift's original cleaned up");
    assert.equal(bytesOf(path.join(store, `${rel}.~1~`)), 'version TWO', 'its bytes are still on the storage');
    const journal = readFileSync(path.join(ppu.work, 'state', 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(journal.filter((j) => j['t'] === 'copied').every((j) => j['verified'] === true), `every copy read back (I2): ${JSON.stringify(journal.filter((j) => j['t'] === 'copied'))}`);
  });

  it("delivered by furkad with checksum '': the fill guard links the second version's original to its own copy, not to the first one's (G6)", async () => {
    const usertime = (await ppu.queryStatus(1))[0]![0];
    const intake = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
    const rel = 'b/img_002.tif';
    const one = Buffer.alloc(1536 * 1024, 1);
    const two = Buffer.alloc(1536 * 1024, 2);
    const before = await copied();
    version(rel, one);
    await callMethod(intake, 'Delivered', usertime, 1000, 1000, [[marked(rel), '', '1MF']]);
    await eventually(async () => (await copied()) === before + 1, 20_000, 'version one copied');
    version(rel, two);
    await callMethod(intake, 'Delivered', usertime, 1000, 1000, [[marked(rel), '', '1MF']]);
    await eventually(async () => (await copied()) === before + 2, 20_000, 'version two counted copied');
    // Above the 50 % limit of the 8 MB ramdisk: the guard replaces copied originals by links to their copies.
    writeFileSync(path.join(ppu.ppuRamdisk, 'ballast'), Buffer.alloc(3 * MB));
    await eventually(() => lstatSync(path.join(u, rel)).isSymbolicLink(), 30_000, 'the original replaced by a link');
    assert.ok(readFileSync(path.join(u, rel)).equals(two), 'reading through the link gives version two (before: version one, and two was gone)');
    assert.ok(readFileSync(path.join(store, rel)).equals(one), 'the first copy kept');
  });
});

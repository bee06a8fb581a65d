// What grimseld's intake makes of a delivered file the shift's user has tampered with before grimseld took it
// (G2, G3, G9, G10, docs/threat-model.md): a directory on its path swapped for a link to a root-only directory, the
// file replaced by a FIFO or a link, or moved away. Delivered as furkad delivers (org.ppu.GrimselIntake1 on a
// private bus), to a real grimseld with an INTERNAL storage on a mount of its own and an EXTERNAL one.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { callMethod } from '../../src/dbus/bus.js';
import { GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../../src/dbus/names.js';
import { collectMessages, PPUCTL_BIN, Ppu, type Messages } from '../fixtures/ppu.js';
import { eventually, listFiles } from '../fixtures/files.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';
import { asNobody, NOBODY } from '../fixtures/hostile.js';

const MB = 1024 * 1024;
type Row = [bigint, number, number, string, bigint, bigint, bigint];

describe("grimseld's intake of files the shift's user tampered with (G2, G3, G9, G10)", function () {
  this.timeout(120_000);
  let ppu: Ppu;
  let usertime: bigint;
  let msgs: Messages;
  /** The shift's directory on the ramdisk (nobody's), and where its copies go on each storage. */
  let u: string;
  const internalMnt = (): string => path.join(ppu.work, 'internal-mnt');
  const dests = (rel: string): string[] => [path.join(internalMnt(), 'data', '1mf', `${NOBODY}_${NOBODY}`, rel),
    path.join(ppu.storageRoot, 'external', '1mf', `${NOBODY}_${NOBODY}`, rel)];
  const marked = (rel: string): string => `${ppu.ppuRamdisk}/./1mf/${NOBODY}_${NOBODY}/${rel}`;

  /** Hands files of the shift over as furkad does, by their paths below the shift's directory. */
  const deliver = async (rels: string[]): Promise<void> => {
    const intake = (await ppu.client.getProxyObject(GRIMSEL_NAME, GRIMSEL_PATH)).getInterface(INTAKE_IFACE);
    await callMethod(intake, 'Delivered', usertime, NOBODY, NOBODY, rels.map((r) => [marked(r), '', '1MF']));
  };
  /** A file as furkad places it: the shift's. */
  const userFile = (rel: string, text: string): void => {
    writeFileSync(path.join(u, rel), text);
    chownSync(path.join(u, rel), NOBODY, NOBODY);
  };
  /** A root-only (0700) directory holding a root file and a directory of two of `names`. */
  const rootOnly = (name: string, [file, dir]: string[]): string => {
    const d = path.join(ppu.work, name);
    mkdirSync(d, { mode: 0o700 });
    chmodSync(d, 0o700);
    writeFileSync(path.join(d, file!), `ROOT ONLY ${name}\n`, { mode: 0o600 });
    mkdirSync(path.join(d, dir!));
    return d;
  };
  const rows = async (): Promise<Row[]> => (await ppu.queryStatus(-1)).filter((r) => r[0] === usertime) as Row[];
  const counts = async (): Promise<Record<string, [number, number, number]>> =>
    Object.fromEntries((await rows()).map((r) => [r[3], [Number(r[4]), Number(r[5]), Number(r[6])]]));
  const copyErrors = (): Array<[string, string, string]> => msgs.messages.filter((m) => m[0] === 'COPY_ERROR');
  const noRootBytes = (): void => {
    for (const root of [internalMnt(), path.join(ppu.storageRoot, 'external')]) {
      for (const rel of listFiles(root)) assert.doesNotMatch(readFileSync(path.join(root, rel), 'utf8'), /ROOT ONLY/, `${rel} holds a root-only file`);
    }
  };

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-intake', uid: NOBODY, gid: NOBODY, ramdiskBytes: 16 * MB });
    ppu.opts.storages = {
      'storage.internal': { type: 'INTERNAL', target: path.join(ppu.work, 'internal-mnt', 'data'), mountpoint: path.join(ppu.work, 'internal-mnt'), n_copy_processes: 2 },
      'storage.external': { type: 'EXTERNAL', target: path.join(ppu.storageRoot, 'external'), n_copy_processes: 2 },
    };
    mountTmpfs(internalMnt(), 16 * MB);
    await ppu.start();
    u = path.join(ppu.ppuRamdisk, '1mf', `${NOBODY}_${NOBODY}`);
    await eventually(() => existsSync(u), 10_000, "the shift's directory");
    usertime = (await ppu.queryStatus(1))[0]![0];
    msgs = await collectMessages(ppu);
  });
  after(async () => {
    msgs?.stop();
    await ppu?.stop();
  });

  it("counts a delivered file replaced by a FIFO or a link, or moved away, as failed on every storage, across a restart and a hand-over sent again (G9, G12)", async () => {
    const start = await counts();
    assert.ok(asNobody('mkdir', path.join(u, 'c')));
    userFile('c/ok.cbf', 'taken\n');
    assert.ok(asNobody('mkfifo', path.join(u, 'c', 'fifo.cbf')) && asNobody('ln', '-s', '/etc/passwd', path.join(u, 'c', 'link.cbf')) &&
      asNobody('mkdir', path.join(u, 'c', 'dir.cbf')), 'the user replaces three of the files');
    const refused = ['fifo.cbf', 'link.cbf', 'dir.cbf', 'moved.cbf'].map((n) => `c/${n}`);
    const before = copyErrors().length;
    const batch = ['c/ok.cbf', ...refused];
    await deliver(batch);
    const plus = (add: number[]): Record<string, [number, number, number]> =>
      Object.fromEntries(Object.entries(start).map(([s, c]) => [s, c.map((v, i) => v + add[i]!) as [number, number, number]]));
    await eventually(async () => JSON.stringify(await counts()) === JSON.stringify(plus([0, 1, 4])), 20_000, 'the good file copied, four failed');
    assert.deepEqual(copyErrors().slice(before).map((m) => m[1]).sort(), refused.flatMap((r) => dests(r).map((d) => `${path.join(u, r)}:${d}`)).sort(),
      "each refused file said once per storage, src:dest");

    const ppuctl = await promisify(execFile)(process.execPath, [PPUCTL_BIN, 'status', '--json'], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address } });
    const shown = (JSON.parse(ppuctl.stdout) as { status: Array<{ usertime: number | string; storage: string; failed: number }> }).status
      .filter((r) => BigInt(r.usertime) === usertime).map((r) => [r.storage, r.failed]);
    assert.deepEqual(shown.sort(), Object.entries(plus([0, 1, 4])).map(([s, c]) => [s, c[2]]).sort(), 'ppuctl status shows them');

    // A kill and a restart keep the count (journaled), and furkad's hand-over sent again counts and says nothing twice.
    msgs.stop();
    await ppu.killGrimseld();
    await ppu.startGrimseld();
    msgs = await collectMessages(ppu);
    assert.deepEqual(await counts(), plus([0, 1, 4]), 'after a restart');
    await deliver(batch);
    assert.deepEqual(await counts(), plus([0, 1, 4]), 'after the same hand-over again');
    assert.deepEqual(copyErrors(), [], 'nothing said again');
  });
});

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

  it("refuses a file whose directory the user swapped for a link to a root-only one, telling nothing of what is there (G3, threat model)", async () => {
    // The report's attack: two of the names exist in the root-only directory (a file, a directory), one does not.
    // Looked up through the link, the answers differed ("does not exist", "is not a regular file", the root file
    // taken and journaled with its size and inode), and anyone reading the message port learnt which names root has.
    const names = ['id_rsa.cbf', 'authorized_keys.cbf', 'absent.cbf'];
    const secret = rootOnly('root-only', names);
    assert.ok(asNobody('mkdir', path.join(u, 'o2')));
    for (const n of names) userFile(`o2/${n}`, `the user's ${n}\n`);
    assert.ok(asNobody('mv', path.join(u, 'o2'), path.join(u, 'o2.real')) && asNobody('ln', '-s', secret, path.join(u, 'o2')), 'the user swaps o2');
    const before = copyErrors().length;
    await deliver(names.map((n) => `o2/${n}`));
    await eventually(() => copyErrors().length >= before + 2 * names.length, 10_000, 'a COPY_ERROR per file and storage');

    const said = copyErrors().slice(before);
    for (const [, , long] of said) assert.match(long, /its path holds a symbolic link/);
    const anonymous = new Set(said.map(([, short, long]) => names.reduce((t, n) => t.split(n).join('NAME'), `${short} ${long}`.split(dests('')[0]!).join('DEST'))));
    assert.equal(anonymous.size, 2, `one answer per storage whatever lies behind the link:\n${[...anonymous].join('\n')}`);
    assert.deepEqual(said.map((m) => m[1]).sort(), names.flatMap((n) => dests(`o2/${n}`).map((d) => `${path.join(u, 'o2', n)}:${d}`)).sort(),
      'short message src:dest, as for any copy');

    // Nothing of the root-only directory in the journal: no record of its file's inode or size, nor of these paths.
    const rootIno = statSync(path.join(secret, names[0]!)).ino;
    const journal = readFileSync(path.join(ppu.work, 'state', 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(journal.filter((l) => l['ino'] === rootIno || (l['t'] === 'file' && String(l['src']).includes('/o2/'))), []);
    // Counted, not lost from sight (G9): failed on both storages, nothing pending.
    assert.deepEqual(await counts(), { internal: [0, 0, 3], external: [0, 0, 3] });
    noRootBytes();
    assert.ok(asNobody('rm', path.join(u, 'o2')) && asNobody('mv', path.join(u, 'o2.real'), path.join(u, 'o2')), 'the user puts o2 back');
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

  it("copies a file taken before its directory was swapped for a link once the user puts the directory back (G3, G12)", async () => {
    // The INTERNAL storage unmounted: the file waits, pending; meanwhile the user swaps its directory for a link to a
    // root-only one holding a file of its name. The copy made once the storage is back refuses the link (retried,
    // never failed for good), and copies the user's file once the directory is back.
    unmount(internalMnt());
    assert.ok(asNobody('mkdir', path.join(u, 'o3')));
    userFile('o3/x.cbf', "the user's x\n");
    const start = await counts();
    await deliver(['o3/x.cbf']);
    await eventually(async () => (await counts())['external']![1] === start['external']![1] + 1, 20_000, 'the external copy');
    const secret = rootOnly('root-only-3', ['x.cbf', 'y.cbf']);
    assert.ok(asNobody('mv', path.join(u, 'o3'), path.join(u, 'o3.real')) && asNobody('ln', '-s', secret, path.join(u, 'o3')), 'the user swaps o3');
    const before = copyErrors().length;
    mountTmpfs(internalMnt(), 16 * MB);
    await eventually(() => copyErrors().slice(before).some((m) => m[1].endsWith('o3/x.cbf') && /symbolic link/.test(m[2])), 20_000, 'the copy refusing the link');
    assert.ok(asNobody('rm', path.join(u, 'o3')) && asNobody('mv', path.join(u, 'o3.real'), path.join(u, 'o3')), 'the user puts o3 back');
    await eventually(async () => (await counts())['internal']![1] === start['internal']![1] + 1, 30_000, 'the internal copy once o3 is back');
    assert.equal(readFileSync(dests('o3/x.cbf')[0]!, 'utf8'), "the user's x\n");
    assert.deepEqual(await counts(), { internal: [0, start['internal']![1] + 1, start['internal']![2]], external: [0, start['external']![1] + 1, start['external']![2]] });
    noRootBytes();
  });
});

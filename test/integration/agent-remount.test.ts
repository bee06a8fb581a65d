// furkad over a furka-agent whose root gets a new file system while it runs: a tmpfs mounted over the running
// root, or the detector ramdisk unmounted and a fresh one mounted on the same path (what detector software does
// between experiments). Every file written on the new one arrives, whole, once, in the running shift; a
// StartShift right after the change finds the files written on it before the call (A2, A5, F1).
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import { mountTmpfs, unmount } from '../fixtures/tmpfs.js';

const RAMDISK_BYTES = 64 * 1024 * 1024;

describe('furka-agent and a file system mounted on its root while it runs (A2, A5, F1)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-agent-remount', transport: 'agent' }).start();
  });
  after(async () => ppu?.stop());

  const usr = (uid: number, gid: number) => path.join(ppu.ppuRamdisk, '1mf', `${uid}_${gid}`);
  const detector = () => ppu.detectorRamdisks['1MF']!;
  const agentLog = () => ppu.agents['1MF']!.proc.output();

  /**
   * Waits until each of `files` is on the PPU in the shift of `uid`/`gid`, and checks its bytes: on the ramdisk, or
   * already on the internal storage (placed into an ended shift's directory, a file is deleted from the ramdisk
   * as soon as it is copied, G5, which on a loaded machine can come between two looks: a fresh-clone CI run).
   */
  async function arrived(uid: number, gid: number, files: WrittenFile[]): Promise<void> {
    const at = (f: WrittenFile): string | undefined => ppu.deliveredAt(path.join('1mf', `${uid}_${gid}`, f.rel));
    const missing = () => files.filter((f) => at(f) === undefined).map((f) => f.rel);
    await eventually(() => missing().length === 0, 60_000, `${files.length} files on the PPU in shift ${uid}`)
      .catch((e: Error) => { throw new Error(`${e.message}; missing ${missing().join(', ')}; the agent's log ends:\n${agentLog().slice(-3000)}`); });
    for (const f of files) assert.equal(sha256File(ppu.readDelivered(path.join('1mf', `${uid}_${gid}`, f.rel))), f.sha256, `${f.rel} whole`);
  }

  /** A few files in new subdirectories of the detector ramdisk, as a run writes them. */
  function writeRun(run: string): WrittenFile[] {
    const out: WrittenFile[] = [];
    for (let i = 0; i < 5; i++) out.push(writeImage(detector(), `${run}/scan/img_${String(i).padStart(3, '0')}.cbf`, 30_000 + i));
    out.push(writeImage(detector(), `${run}/deeper/a/b/last.cbf`, 12_345));
    return out;
  }

  it('announces files written on a tmpfs mounted over the running root, and on a fresh one after an unmount: whole, once, in the running shift', async () => {
    await ppu.startShift(720, 721);
    const first = [writeImage(detector(), 'first/before.cbf', 20_000)];
    await arrived(720, 721, first);

    // A tmpfs mounted over the running root: no event on the old watches says so.
    let mark = agentLog().length;
    mountTmpfs(detector(), RAMDISK_BYTES);
    const over = writeRun('over');
    await arrived(720, 721, over);
    assert.match(agentLog().slice(mark), /the root is no longer the directory inotifywait watches/, 'said in the log');

    // Unmounted (as an administrator's umount, not lazily: retried while the agent holds the root open between
    // files) and a fresh tmpfs mounted on the same path.
    mark = agentLog().length;
    await eventually(() => { try { unmount(detector(), { lazy: false }); return true; } catch { return false; } }, 20_000, 'the ramdisk unmounted');
    mountTmpfs(detector(), RAMDISK_BYTES);
    const fresh = writeRun('fresh');
    await arrived(720, 721, fresh);
    assert.match(agentLog().slice(mark), /the root is no longer the directory inotifywait watches/, 'said in the log');

    // Once each, nothing else; and each source deleted once placed.
    assert.deepEqual(listFiles(usr(720, 721)), [...first, ...over, ...fresh].map((f) => f.rel).sort());
    await eventually(() => listFiles(detector()).length === 0, 20_000, 'every source deleted by the agent once placed');
    await eventually(async () => (await ppu.queryStatus(1)).some((r) => r[1] === 720 && r[5] === 13n && r[4] === 0n), 30_000, 'grimseld to copy all 13 once');
  });

  it('a StartShift right after a tmpfs was mounted over the root, or a fresh one after an unmount, takes the files written on it before the call into the shift that ran (A5)', async () => {
    let shift = 722;
    await ppu.startShift(shift, shift + 1);
    await arrived(shift, shift + 1, [writeImage(detector(), 'first/before2.cbf', 20_000)]);
    for (let round = 0; round < 4; round++) {
      // A tmpfs mounted over the root, or the top one unmounted and a fresh one mounted (same device number and
      // root inode as the one before: the kernel hands the device number out again).
      if (round % 2 === 1) await eventually(() => { try { unmount(detector(), { lazy: false }); return true; } catch { return false; } }, 20_000, 'the ramdisk unmounted');
      mountTmpfs(detector(), RAMDISK_BYTES);
      const late = writeRun(`late${round}`);
      await ppu.startShift(shift + 2, shift + 3);
      await arrived(shift, shift + 1, late);
      assert.equal(existsSync(path.join(usr(shift + 2, shift + 3), `late${round}`)), false, 'nothing of them in the new shift');
      shift += 2;
    }
  });
});

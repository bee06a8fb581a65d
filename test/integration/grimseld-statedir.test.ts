// grimseld's state_dir full (its journal cannot note new files), with real daemons and a small tmpfs as the
// state_dir (G9, G10, G12). Found by a hostile tester: grimseld said nothing and sent no message, its status showed
// pending 0 while thousands of delivered files waited on the ramdisk, and furkad's only error was a bare ENOSPC.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { PPUCTL_BIN, Ppu, tempDir } from '../fixtures/ppu.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';

/** Fills the file system at `dir` with one file until it takes no more (ENOSPC). */
function fill(file: string): void {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}

function ppuctlStatus(busAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [PPUCTL_BIN, 'status'], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress }, timeout: 60_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
  });
}

describe("grimseld: its state_dir full (G9, G10, G12)", function () {
  this.timeout(180_000);

  it("says so once (DISK_OVERFLOW of the state_dir's mount point), names it to furkad, ppuctl status shows the files waiting, and takes them once there is room (G9, G10, G12)", async () => {
    const stateDir = mountTmpfs(path.join(tempDir('gstate'), 'state'), 256 * 1024);
    const ppu = await new Ppu({ prefix: 'ppu-gstate', grimseld: { state_dir: stateDir } }).start();
    try {
      await ppu.startShift(4242, 4243, []);
      const filler = path.join(stateDir, 'filler');
      fill(filler);
      const det = ppu.detectorRamdisks['1MF']!;
      const files = Array.from({ length: 20 }, (_, i) => writeImage(det, `img${String(i).padStart(2, '0')}.cbf`, 1000));
      const onRamdisk = (): number => listFiles(path.join(ppu.ppuRamdisk, '1mf/4242_4243')).length;
      await eventually(() => onRamdisk() === files.length, 30_000, 'the files placed on the PPU ramdisk');

      // grimseld says it, once, naming its state_dir and the mount point in the message (G10).
      await ppu.grimseld!.proc.said(new RegExp(`"errcode":"DISK_OVERFLOW","short":"${stateDir}".*grimseld's state_dir ${stateDir} is full.*deliveries and added files are refused until there is room`), 30_000);
      // furkad's error names it as grimseld's state_dir, not a bare ENOSPC.
      await ppu.furkad!.proc.said(new RegExp(`cannot hand over to grimseld.*grimseld's state_dir ${stateDir} is full|grimseld's state_dir ${stateDir} is full.*cannot hand over to grimseld`), 30_000);
      // The status is honest (G9): what grimseld counts (the journal's last page may have taken a few) and what
      // ppuctl status shows waiting to be handed over, with why, are all of them.
      let out = '';
      await eventually(async () => { out = await ppuctlStatus(ppu.bus.address); return /waiting to be handed over to grimseld \(not in its counts\): \d+ files?; the last hand-over failed: grimseld's state_dir .* is full/.test(out); },
        20_000, 'ppuctl status to show the files waiting for grimseld and why').catch((e: Error) => { throw new Error(`${e.message}:\n${out}`); });
      const waiting = Number(/not in its counts\): (\d+)/.exec(out)![1]);
      const counted = (await ppu.queryStatus(-1)).filter((r) => r[1] === 4242).reduce((n, r) => n + Number(r[4] + r[5] + r[6]), 0);
      assert.ok(waiting > 0, out);
      assert.equal(waiting + counted, files.length, `grimseld counts ${counted}, ppuctl status shows ${waiting} waiting:\n${out}`);

      // Room again: everything is taken and copied, said once, and the message was not repeated per delivery.
      rmSync(filler);
      await eventually(() => listFiles(path.join(ppu.storageRoot, 'internal')).length === files.length, 60_000, 'all files copied once there is room');
      await ppu.grimseld!.proc.said(/room again in grimseld's state_dir/, 20_000);
      const said = ppu.grimseld!.proc.output().split('\n').filter((l) => l.includes('DISK_OVERFLOW'));
      assert.equal(said.length, 1, `DISK_OVERFLOW said once for the episode:\n${said.join('\n')}`);
      await eventually(async () => !/waiting to be handed over/.test(await ppuctlStatus(ppu.bus.address)), 20_000, 'ppuctl status no longer shows files waiting');
    } finally {
      await ppu.stop();
    }
  });
});

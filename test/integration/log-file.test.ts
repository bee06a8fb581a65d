// A log file that can no longer be written while the daemons run (its disk full) never ends them: they go on,
// their lines in the journal (stderr), and say so there once (S4).
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';
import { eventually, listFiles, writeImage } from '../fixtures/files.js';

const DISK = 256 * 1024;

describe('daemons whose log file can no longer be written (S4)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let logDir: string;

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-logfull' });
    logDir = mountTmpfs(path.join(ppu.work, 'log'), DISK);
    // Small files: rotations happen while the disk is full too.
    ppu.opts.furkad = { logfile: path.join(logDir, 'furkad.log'), logfile_max_size: 4096, logfile_max_number: 100 };
    ppu.opts.grimseld = { logfile: path.join(logDir, 'grimseld.log'), logfile_max_size: 4096, logfile_max_number: 100 };
    await ppu.start();
  });
  after(async () => ppu?.stop());

  it('furkad and grimseld go on when the disk of their log files fills: lines go to the journal, said once', async () => {
    try {
      writeFileSync(path.join(logDir, 'filler'), Buffer.alloc(DISK));
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    // Each shift start is a line of each daemon.
    for (let i = 0; i < 20; i++) await ppu.startShift(700 + i, 700 + i);
    const notice = (daemon: string): RegExp => new RegExp(`logging to the journal \\(stderr\\) instead until ${daemon} restarts`, 'g');
    await ppu.furkad!.proc.said(notice('furkad'), 20_000);
    await ppu.grimseld!.proc.said(notice('grimseld'), 20_000);
    // Still serving: a shift is taken, its lines are in the journal, and its files are delivered and copied.
    await ppu.startShift(790, 791);
    writeImage(ppu.detectorRamdisks['1MF']!, 'after-full.cbf', 10_000);
    await eventually(() => listFiles(ppu.storageRoot).some((f) => f.endsWith('790_791/after-full.cbf')), 30_000, 'the file copied');
    for (const d of [ppu.furkad!, ppu.grimseld!]) {
      const out = d.proc.output();
      assert.match(out.slice(out.search(/logging to the journal/)), /"uid":790/);
      assert.equal(out.match(/logging to the journal/g)?.length, 1, 'said once');
      assert.doesNotMatch(out, /^\s+at /m, 'no stack trace');
    }
  });
});

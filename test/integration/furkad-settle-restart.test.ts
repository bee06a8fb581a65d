// furkad stopped or killed while files settle (settle_ms, F2): a copy a first run made of a file still being
// written is never delivered after the restart, whatever its writer did meanwhile; a file the second run took off
// the detector (its source removed) is never lost, placed after the restart.
import { strict as assert } from 'node:assert';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles, sha256File, writeImage } from '../fixtures/files.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('furkad restarted while files settle (settle_ms, F2)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let det: string;
  const usr = (): string => path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
  const internal = (): string => path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000');
  /** Files below furkad's staging (any of its directories) with this base name. */
  const inStaging = (name: string): string[] => listFiles(path.join(ppu.ppuRamdisk, '1mf', '.furkad-staging')).filter((f) => path.basename(f) === name);
  /** A file written after the restart, delivered and copied: the restarted furkad has sorted out its staging by then. */
  const afterRestart = async (rel: string): Promise<void> => {
    const f = writeImage(det, rel, 5_000);
    await eventually(() => existsSync(path.join(internal(), f.rel)), 30_000, `${f.rel} copied`);
  };

  before(async () => {
    // furkad's defaults (settle_ms = 2000), as the tester ran it.
    ppu = await new Ppu({ prefix: 'ppu-settle-restart', writerRenames: false }).start();
    det = ppu.detectorRamdisks['1MF']!;
  });
  after(async () => {
    await ppu?.stop();
  });

  it('SIGKILL: a copy of a file still settling is dropped at the next start when its writer deleted it or renamed it away meanwhile', async () => {
    // Found by a tester: both were placed as "taken but not placed" leftovers, the half temp file beside the whole one.
    writeFileSync(path.join(det, 'aborted_0001.cbf'), randomBytes(50_000));
    const whole = randomBytes(100_000);
    writeFileSync(path.join(det, '.img_5.cbf.tmp'), whole.subarray(0, 50_000));
    await eventually(() => inStaging('aborted_0001.cbf').length > 0 && inStaging('.img_5.cbf.tmp').length > 0, 20_000, 'both copied by a first run, settling');
    await ppu.killFurkad();
    unlinkSync(path.join(det, 'aborted_0001.cbf'));
    appendFileSync(path.join(det, '.img_5.cbf.tmp'), whole.subarray(50_000));
    renameSync(path.join(det, '.img_5.cbf.tmp'), path.join(det, 'img_5.cbf'));
    await ppu.startFurkad();
    await eventually(() => existsSync(path.join(internal(), 'img_5.cbf')), 30_000, 'the whole img_5.cbf copied');
    assert.equal(sha256File(readFileSync(path.join(internal(), 'img_5.cbf'))), sha256File(whole));
    await afterRestart('later/after_kill.cbf');
    assert.deepEqual(listFiles(usr()).filter((f) => !f.startsWith('later/')), ['img_5.cbf'], 'neither the aborted file nor the half temp file placed');
    assert.deepEqual(listFiles(internal()).filter((f) => !f.startsWith('later/')), ['img_5.cbf'], 'nor copied');
    assert.deepEqual([...inStaging('aborted_0001.cbf'), ...inStaging('.img_5.cbf.tmp')], [], 'their copies dropped from staging');
    await ppu.furkad!.proc.said(/"files":\[[^\]\n]*"aborted_0001\.cbf"[^\n]*copies of files still settling that this furkad does not know dropped/, 5_000);
  });

  it('SIGTERM (systemctl restart) while a writer still writes a temp file and renames it after the stop: only the whole file is delivered', async () => {
    // The stop waits settle_ms + 2 s at most for files still settling; this one keeps changing all that time.
    const tmp = path.join(det, 'b', '.img_00179.cbf.tmp');
    const chunks: Buffer[] = [];
    const chunk = (): void => {
      const b = randomBytes(64 * 1024);
      chunks.push(b);
      appendFileSync(tmp, b);
    };
    mkdirSync(path.dirname(tmp), { recursive: true });
    chunk();
    await eventually(() => inStaging('.img_00179.cbf.tmp').length > 0, 20_000, 'the temp file copied by a first run, settling');
    let writing = true;
    const writer = (async () => {
      while (writing) {
        chunk();
        await sleep(200);
      }
    })();
    const stopped = await ppu.furkad!.proc.stop(30_000, 'leader');
    writing = false;
    await writer;
    assert.equal(stopped, 0, 'a clean stop');
    assert.ok(existsSync(tmp), 'the temp file never taken while it changed');
    renameSync(tmp, path.join(det, 'b', 'img_00179.cbf'));
    await ppu.startFurkad();
    await eventually(() => existsSync(path.join(internal(), 'b', 'img_00179.cbf')), 30_000, 'the whole file copied');
    assert.equal(sha256File(readFileSync(path.join(internal(), 'b', 'img_00179.cbf'))), sha256File(Buffer.concat(chunks)));
    await afterRestart('later/after_term.cbf');
    assert.deepEqual(listFiles(path.join(usr(), 'b')), ['img_00179.cbf'], 'no partial temp file placed');
    assert.deepEqual(listFiles(path.join(internal(), 'b')), ['img_00179.cbf'], 'nor copied');
    assert.deepEqual(inStaging('.img_00179.cbf.tmp'), [], 'its copy dropped from staging');
  });

  it('SIGKILL after the second run removed a source, before furkad placed the file: it is placed after the restart, whole, once', async () => {
    // rsync as furkad runs it, except that a removing run, once the flag file exists, keeps its output from furkad
    // and kills furkad when it is done: the daemon has removed the source, furkad never learned of it.
    const flag = path.join(ppu.work, 'kill-after-take');
    const wrapper = path.join(ppu.work, 'killing-rsync');
    writeFileSync(wrapper, `#!/bin/sh\ncase " $* " in *" --remove-source-files "*) [ -e '${flag}' ] && { rsync "$@" >/dev/null 2>&1; rm -f '${flag}'; kill -9 $PPID; exit 0; };; esac\nexec rsync "$@"\n`);
    chmodSync(wrapper, 0o755);
    await ppu.restartFurkadWith({ rsync_path: wrapper });
    try {
      writeFileSync(flag, '');
      const f = writeImage(det, 'taken/img_0001.cbf', 80_000);
      const killed = ppu.furkad!.proc.exited;
      await killed;
      assert.ok(!existsSync(flag), 'furkad killed by the removing run');
      assert.ok(!existsSync(path.join(det, f.rel)), 'the source removed by the daemon');
      assert.ok(!existsSync(path.join(usr(), f.rel)), 'not placed before the kill');
      await ppu.killFurkad();
      await ppu.startFurkad();
      await eventually(() => existsSync(path.join(internal(), f.rel)), 30_000, 'the taken file placed and copied after the restart');
      assert.equal(sha256File(readFileSync(path.join(internal(), f.rel))), f.sha256, 'whole');
      assert.equal(statSync(path.join(usr(), f.rel)).uid, 1000, 'owned by the shift');
      await afterRestart('later/after_take.cbf');
      assert.deepEqual(listFiles(path.join(usr(), 'taken')), ['img_0001.cbf'], 'placed once');
    } finally {
      rmSync(flag, { force: true });
      await ppu.restartFurkadWith({ rsync_path: 'rsync' });
    }
  });
});

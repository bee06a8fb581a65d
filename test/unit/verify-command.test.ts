// `ppuctl verify` on trees a live storage and its users make (I4): a path given as a link is followed, a tree
// deeper than PATH_MAX is reported, not the end of the run.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { verifyCommand } from '../../src/ppuctl/verify-command.js';

type Out = typeof process.stdout & { text: () => string };

/** A stream that keeps what is written to it, in place of stdout or stderr. */
function sink(): Out {
  const chunks: string[] = [];
  const w = new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }) as unknown as Out;
  w.text = () => chunks.join('');
  return w;
}

describe('ppuctl verify on odd trees (I4)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'verify-')); });
  // rm(1): a tree deeper than PATH_MAX is beyond fs.rmSync's paths.
  afterEach(() => execFileSync('rm', ['-rf', dir]));

  it('follows a path named as a link (/data -> /export/data), and no link below it', async () => {
    mkdirSync(path.join(dir, 'export/data/run'), { recursive: true });
    writeFileSync(path.join(dir, 'export/data/run/a.cbf'), 'x');
    symlinkSync(path.join(dir, 'export/data/run/a.cbf'), path.join(dir, 'export/data/run/link.cbf'));
    symlinkSync(path.join(dir, 'export/data'), path.join(dir, 'data'));
    const out = sink();
    const code = await verifyCommand([path.join(dir, 'data')], true, out, sink() as unknown as typeof process.stderr);
    const report = JSON.parse(out.text()) as { unrecorded: string[]; skipped: number };
    assert.deepEqual(report.unrecorded.map((f) => path.basename(f)), ['a.cbf'], 'the file below the link was looked at');
    assert.equal(report.skipped, 1, 'the link below it was not followed');
    assert.equal(code, 0);
  });

  it('reports a tree deeper than PATH_MAX as unreadable and goes on to the end, with a report', async () => {
    writeFileSync(path.join(dir, 'a.cbf'), 'x');
    // 25 directories of 200 characters: over 4096 bytes of path, made one step at a time.
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      for (let i = 0; i < 25; i++) {
        const name = `${String(i).padStart(3, '0')}${'d'.repeat(197)}`;
        mkdirSync(name);
        process.chdir(name);
      }
      writeFileSync('deep.cbf', 'x');
    } finally {
      process.chdir(cwd);
    }
    const out = sink();
    const code = await verifyCommand([dir], true, out, sink() as unknown as typeof process.stderr);
    const report = JSON.parse(out.text()) as { unrecorded: string[]; unreadable: Array<{ error: string }> };
    assert.equal(code, 1, 'something could not be checked');
    assert.ok(report.unreadable.some((u) => /ENAMETOOLONG/.test(u.error)), JSON.stringify(report.unreadable));
    assert.ok(report.unrecorded.some((f) => path.basename(f) === 'a.cbf'), 'the rest of the tree was checked');
  });
});

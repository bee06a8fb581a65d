// The one walk of furkad's own directories (files-below.ts): staging, settling and probe copies, keeping places.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { filesBelow } from '../../src/furkad/files-below.js';

describe('filesBelow: the regular files below one of furkad\'s directories', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'below-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('names every regular file at any depth by its path below, and nothing else (links, FIFOs, empty directories)', async () => {
    const top = path.join(dir, 'staging');
    mkdirSync(path.join(top, 'run 1/deep/er'), { recursive: true });
    mkdirSync(path.join(top, 'empty'));
    writeFileSync(path.join(top, 'a.cbf'), 'a');
    writeFileSync(path.join(top, 'run 1/deep/er/b.cbf'), 'b');
    symlinkSync('/etc/passwd', path.join(top, 'run 1/link.cbf'));
    execFileSync('mkfifo', [path.join(top, 'run 1/fifo')]);
    assert.deepEqual((await filesBelow(top)).sort(), ['a.cbf', 'run 1/deep/er/b.cbf']);
  });

  it('never walks through a link given as the directory: a user\'s link in place of furkad\'s directory holds nothing', async () => {
    mkdirSync(path.join(dir, 'elsewhere'));
    writeFileSync(path.join(dir, 'elsewhere/secret'), 's');
    symlinkSync(path.join(dir, 'elsewhere'), path.join(dir, 'staging'));
    assert.deepEqual(await filesBelow(path.join(dir, 'staging')), []);
  });

  it('takes a missing directory as none, or as the error it is when it must exist', async () => {
    assert.deepEqual(await filesBelow(path.join(dir, 'none')), []);
    await assert.rejects(filesBelow(path.join(dir, 'none'), { missing: 'throw' }), /ENOENT/);
  });

  it('counts only the files `keep` keeps', async () => {
    writeFileSync(path.join(dir, 'a.cbf'), 'a');
    writeFileSync(path.join(dir, '.a.cbf.XyZ12'), 't');
    assert.deepEqual(await filesBelow(dir, { keep: async (_full, name) => !name.startsWith('.') }), ['a.cbf']);
  });
});

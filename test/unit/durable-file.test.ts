// State files written whole or not at all (common/durable-file.ts), also in a directory someone else may write in.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDurably, writeDurablyAsync } from '../../src/common/durable-file.js';

describe('durable state files', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('replaces a file with the new text and leaves no side file', async () => {
    const file = path.join(dir, 'state.json');
    writeDurably(file, 'old\n');
    await writeDurablyAsync(file, 'new\n', { mode: 0o600 });
    assert.equal(fs.readFileSync(file, 'utf8'), 'new\n');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(dir), ['state.json']);
  });

  it('gives the file the mtime asked for before it has its name (a kept running shift: its time since the boot, F6)', () => {
    const file = path.join(dir, 'running-shift.json');
    writeDurably(file, '{}\n', 0o644, new Date(4_321_000)); // set on the side file, which the rename gives its name
    assert.equal(fs.statSync(file).mtimeMs, 4_321_000);
    assert.deepEqual(fs.readdirSync(dir), ['running-shift.json']);
  });

  it('never writes through a link planted under the side file\'s name', async () => {
    const file = path.join(dir, 'mark');
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'precious\n');
    fs.symlinkSync(victim, `${file}.new`);
    await writeDurablyAsync(file, 'mark\n', { suffix: '.new' });
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious\n', 'the link\'s target untouched');
    assert.equal(fs.readFileSync(file, 'utf8'), 'mark\n');
    assert.ok(!fs.lstatSync(file).isSymbolicLink());
  });

  it('keeps the old file, and no side file, when the check before the rename fails', async () => {
    const file = path.join(dir, 'mark');
    fs.writeFileSync(file, 'old\n');
    await assert.rejects(writeDurablyAsync(file, 'new\n', { beforeRename: async () => { throw new Error('disk went'); } }), /disk went/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'old\n');
    assert.deepEqual(fs.readdirSync(dir), ['mark']);
  });
});

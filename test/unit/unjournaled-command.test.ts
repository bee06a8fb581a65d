// The command grimseld's start names for delivered files its journal lost (G12, S4; unjournaled.ts): run by a real
// shell and sed, it puts the './' right after the ramdisk directory of every listed path, whatever characters the
// ramdisk directory, the list and the FIFO path hold.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { handOverCommand } from '../../src/grimseld/unjournaled.js';

describe('the hand-over command for files the journal lost (G12, S4)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'unjournaled-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const root of ['/ramdisk', "/ram disk/it's|a&b.*[x]^$\\q"]) {
    it(`marks each listed path right after ${JSON.stringify(root)} and nowhere else`, () => {
      const list = path.join(dir, "not in 'journal'.txt");
      const out = path.join(dir, 'fifo $x');
      const files = [`${root}/1mf/1000_1000/a.cbf`, `${root}/1mf/1000_1000/sub${root}/b.cbf`];
      writeFileSync(list, `${files.join('\n')}\n`);
      execFileSync('sh', ['-c', handOverCommand(root, list, out)]);
      assert.deepEqual(readFileSync(out, 'utf8').split('\n').filter(Boolean), files.map((f) => `${root}/./${f.slice(root.length + 1)}`));
    });
  }

  it('is the plain recipe README shows for a plain ramdisk directory', () => {
    assert.equal(handOverCommand('/ramdisk', '/var/lib/grimsel/not-in-journal.txt', '/run/grimseld/files'),
      "sed 's|^/ramdisk/|/ramdisk/./|' /var/lib/grimsel/not-in-journal.txt > /run/grimseld/files");
  });
});

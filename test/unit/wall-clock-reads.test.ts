// Every read of the wall clock in the daemons is one where a time of day or a file's time is meant (S5).
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '../../../src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []);
}

describe('wall-clock reads (S5)', () => {
  it('measure no elapsed time: each Date.now() and new Date() in src/ says "wall clock" on its line or just above (elapsed time: monotonicMs())', () => {
    // A step of the detector's clock by the time sync (S5) held the ramdisk busy and a link(2) name back for
    // the hour it went back: a timer on the wall clock waits for the step. Found by a hostile tester, 2026-12.
    const unmarked: string[] = [];
    for (const file of sources(SRC)) {
      if (file.endsWith(path.join('common', 'monotonic.ts'))) continue; // says why, in words
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (!/\bDate\.now\b|new Date\(\)/.test(line)) return;
        if (!lines.slice(Math.max(0, i - 2), i + 1).some((l) => /wall clock/i.test(l))) unmarked.push(`${path.relative(SRC, file)}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(unmarked, [], 'read the wall clock without saying why; elapsed time is measured with monotonicMs() (src/common/monotonic.ts)');
  });
});

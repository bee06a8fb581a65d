// The running shift's per-detector counts kept across a crash (furkad/shift-counts.ts, F6).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { ShiftCounts } from '../../src/furkad/shift-counts.js';

describe('the running shift\'s counts kept in state_dir (F6)', () => {
  let dir: string;
  const quiet = pino({ level: 'silent' });
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shift-counts-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives a furkad going on with the shift what the one before counted, and nothing for another shift', () => {
    new ShiftCounts(dir, quiet).keep(17n, [['1MF', { files: 3, bytes: 3000 }], ['2MF', { files: 0, bytes: 0 }]]);
    const next = new ShiftCounts(dir, quiet);
    assert.deepEqual([...next.read(17n)], [['1MF', { files: 3, bytes: 3000 }], ['2MF', { files: 0, bytes: 0 }]]);
    assert.deepEqual([...next.read(18n)], [], 'another shift starts from 0');
  });

  it('writes only when a count changed', () => {
    const counts = new ShiftCounts(dir, quiet);
    const file = path.join(dir, 'running-shift-counts.json');
    counts.keep(5n, [['1MF', { files: 1, bytes: 10 }]]);
    const first = fs.statSync(file).ino;
    counts.keep(5n, [['1MF', { files: 1, bytes: 10 }]]);
    assert.equal(fs.statSync(file).ino, first, 'the same file: not written again');
    counts.keep(5n, [['1MF', { files: 2, bytes: 20 }]]);
    assert.notEqual(fs.statSync(file).ino, first);
  });

  it('reads a damaged or odd file as no counts, never as a wrong one', () => {
    const file = path.join(dir, 'running-shift-counts.json');
    for (const text of ['{"usertime":"5","detectors":{"1MF":{"files":-1,"bytes":2}}}', '{"usertime":"5",', '{"usertime":5,"detectors":{}}',
      '{"usertime":"5","detectors":{"1MF":{"files":"3","bytes":2}}}']) {
      fs.writeFileSync(file, text);
      assert.deepEqual([...new ShiftCounts(dir, quiet).read(5n)], [], text);
    }
  });
});

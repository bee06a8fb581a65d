// Append-only logs of a daemon's own records (common/append-log.ts): what each record costs, and the length kept.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RewritableLog } from '../../src/common/append-log.js';

describe('rewritable log (furkad outbox and placement records)', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'append-log-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('appends a record with one write and no look at the file: furkad writes several per file it places (#13)', () => {
    const log = new RewritableLog(path.join(dir, 'x.jsonl'), () => '');
    log.append('{"a":1}\n');
    // The module object the compiled code calls through (a namespace import's is read-only).
    const mod = require('node:fs') as { fstatSync: typeof fs.fstatSync };
    const real = mod.fstatSync;
    let stats = 0;
    mod.fstatSync = ((...args: Parameters<typeof real>) => { stats++; return real(...args); }) as typeof real;
    try {
      for (let i = 0; i < 100; i++) {
        log.append(`{"i":${i}}\n`);
        assert.ok(log.size > 0);
      }
    } finally {
      mod.fstatSync = real;
      log.close();
    }
    assert.equal(stats, 0);
  });

  it('knows its length across appends and a rewrite, and takes it from the file when opened', () => {
    const file = path.join(dir, 'x.jsonl');
    let live = '';
    const log = new RewritableLog(file, () => live);
    const check = (): void => assert.equal(log.size, fs.statSync(file).size);
    check();
    log.append('{"a":1}\n{"b":"ü"}\n');
    check();
    live = '{"kept":true}\n';
    log.rewrite();
    check();
    log.append('{"c":3}\n');
    check();
    assert.equal(fs.readFileSync(file, 'utf8'), '{"kept":true}\n{"c":3}\n');
    log.close();
    // Appended to by another open (a restart): the length is the file's, not what this one wrote.
    fs.appendFileSync(file, '{"d":4}\n');
    const again = new RewritableLog(file, () => live);
    assert.equal(again.size, fs.statSync(file).size);
    again.append('{"e":5}\n');
    assert.equal(again.size, fs.statSync(file).size);
    again.close();
  });
});

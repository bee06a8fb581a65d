// furkad's hand-over outbox: what was noted and never acknowledged comes back after a restart.
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Outbox } from '../../src/furkad/outbox.js';

describe('hand-over outbox (F6, G12)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('returns unacknowledged notes after a restart, with their shift, and new ids never collide', () => {
    const a = Outbox.open(dir);
    const one = a.outbox.note(10n, 500, 501, ['/r/./1mf/u/a.cbf']);
    const two = a.outbox.note(11n, 600, 601, ['/r/./1mf/v/b.cbf', '/r/./1mf/v/c.cbf']);
    a.outbox.ack([one]);
    a.outbox.close();
    const b = Outbox.open(dir);
    assert.deepEqual(b.unacked, [{ id: two, usertime: 11n, uid: 600, gid: 601, paths: ['/r/./1mf/v/b.cbf', '/r/./1mf/v/c.cbf'] }]);
    assert.ok(b.outbox.note(12n, 1, 1, ['/x']) > two);
    b.outbox.close();
  });

  it('ignores a torn last line and cuts it off', () => {
    const a = Outbox.open(dir);
    a.outbox.note(10n, 1, 1, ['/r/./a']);
    a.outbox.close();
    appendFileSync(path.join(dir, 'outbox.jsonl'), '{"t":"d","id":9,"u":"1');
    const b = Outbox.open(dir);
    assert.equal(b.unacked.length, 1);
    b.outbox.close();
    assert.ok(readFileSync(path.join(dir, 'outbox.jsonl'), 'utf8').endsWith('\n'));
  });
});

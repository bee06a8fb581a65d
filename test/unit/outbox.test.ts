// furkad's hand-over outbox: what was noted and never acknowledged comes back after a restart.
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Outbox, placedFiles } from '../../src/furkad/outbox.js';

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
    assert.deepEqual(b.unacked, [{ id: two, usertime: 11n, uid: 600, gid: 601, paths: ['/r/./1mf/v/b.cbf', '/r/./1mf/v/c.cbf'], placed: false }]);
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

  it('hands over the names files were placed under: a numbered name written down, or found beside the noted one (F2, G12)', () => {
    const ram = path.join(dir, 'ramdisk', 'u');
    mkdirSync(ram, { recursive: true });
    for (const f of ['a.img', 'a.img.~1~', 'b.img', 'c.img', 'c.img.~1~']) writeFileSync(path.join(ram, f), f);
    const marked = (f: string): string => `${dir}/ramdisk/./u/${f}`;
    const a = Outbox.open(dir);
    const one = a.outbox.note(10n, 500, 501, [marked('a.img'), marked('b.img')]);
    a.outbox.placed(one, 10n, 500, 501, [marked('a.img.~1~'), marked('b.img')]);
    // Killed after placing c.img.~1~ and before writing that down: the note still says c.img.
    const two = a.outbox.note(10n, 500, 501, [marked('c.img')]);
    a.outbox.close();
    const { outbox, unacked } = Outbox.open(dir);
    outbox.close();
    const byId = new Map(unacked.map((u) => [u.id, u]));
    assert.deepEqual(placedFiles(byId.get(one)!), [marked('a.img.~1~'), marked('b.img')], 'as placed: not a.img, which holds another file');
    assert.deepEqual(placedFiles(byId.get(two)!), [marked('c.img'), marked('c.img.~1~')], 'the numbered one is not left behind');
  });
});

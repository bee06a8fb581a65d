// furkad's hand-over outbox: what was noted and never acknowledged comes back after a restart.
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Outbox, placedFiles } from '../../src/furkad/outbox.js';
import type { DeliveredFile } from '../../src/dbus/intake-interface.js';

const SUM_A = `xxh128:${'a'.repeat(32)}`;
const SUM_B = `xxh128:${'b'.repeat(32)}`;
const bare = (p: string): DeliveredFile => [p, '', ''];

describe('hand-over outbox (F6, G12)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('returns unacknowledged notes after a restart, with their shift, checksums and detector, and new ids never collide (I1)', () => {
    const a = Outbox.open(dir);
    const one = a.outbox.note(10n, 500, 501, [['/r/./1mf/u/a.cbf', SUM_A, '1MF']]);
    const two = a.outbox.note(11n, 600, 601, [['/r/./1mf/v/b.cbf', SUM_B, '1MF'], ['/r/./1mf/v/c.cbf', '', '1MF']]);
    a.outbox.ack([one]);
    a.outbox.close();
    const b = Outbox.open(dir);
    assert.deepEqual(b.unacked, [{ id: two, usertime: 11n, uid: 600, gid: 601, files: [['/r/./1mf/v/b.cbf', SUM_B, '1MF'], ['/r/./1mf/v/c.cbf', '', '1MF']], placed: false }]);
    assert.ok(b.outbox.note(12n, 1, 1, [bare('/x')]) > two);
    b.outbox.close();
  });

  it('rewritten from the open notes once grown (as a full state_dir does), keeps exactly those (F10, G12)', () => {
    const a = Outbox.open(dir);
    const open = a.outbox.note(10n, 500, 501, [['/r/./1mf/u/a.cbf', SUM_A, '1MF']]);
    a.outbox.placed(open, 10n, 500, 501, [['/r/./1mf/u/a.cbf.~1~', SUM_A, '1MF']]);
    for (let i = 0; i < 4000; i++) a.outbox.ack([a.outbox.note(11n, 600, 601, [[`/r/./1mf/v/${'x'.repeat(200)}${i}.cbf`, SUM_B, '1MF']])]);
    a.outbox.close();
    assert.ok(readFileSync(path.join(dir, 'outbox.jsonl'), 'utf8').length < 600_000, 'rewritten to the open note once past 1 MB');
    const b = Outbox.open(dir);
    assert.deepEqual(b.unacked, [{ id: open, usertime: 10n, uid: 500, gid: 501, files: [['/r/./1mf/u/a.cbf.~1~', SUM_A, '1MF']], placed: true }]);
    b.outbox.close();
  });

  it('with more than 1 MB of notes open (a backlog grimseld has not acknowledged), acknowledges one by one without rewriting the file each time', () => {
    // Found by a long-run tester: 19 000 open notes made every acknowledgement rewrite the whole file (~7 per 10 s).
    const a = Outbox.open(dir);
    const ids = Array.from({ length: 12_000 }, (_, i) => a.outbox.note(11n, 600, 601, [[`/r/./1mf/v/${'x'.repeat(60)}${i}.cbf`, SUM_B, '1MF']]));
    const file = path.join(dir, 'outbox.jsonl');
    assert.ok(statSync(file).size > 1 << 20, 'a backlog past 1 MB');
    let rewrites = 0;
    let ino = statSync(file).ino;
    for (const id of ids.slice(0, 300)) {
      a.outbox.ack([id]);
      if (statSync(file).ino !== ino) rewrites++;
      ino = statSync(file).ino;
    }
    a.outbox.close();
    assert.ok(rewrites <= 1, `the file rewritten ${rewrites} times for 300 acknowledgements`);
    const b = Outbox.open(dir);
    assert.deepEqual(b.unacked.map((n) => n.id), ids.slice(300), 'exactly the notes still open');
    b.outbox.close();
  });

  it('reads a note written before checksums were kept as files without them (I1)', () => {
    writeFileSync(path.join(dir, 'outbox.jsonl'), '{"t":"d","id":4,"u":"10","uid":500,"gid":501,"paths":["/r/./1mf/u/a.cbf","/r/./1mf/u/b.cbf"]}\n');
    const { outbox, unacked } = Outbox.open(dir);
    outbox.close();
    assert.deepEqual(unacked, [{ id: 4, usertime: 10n, uid: 500, gid: 501, files: [['/r/./1mf/u/a.cbf', '', ''], ['/r/./1mf/u/b.cbf', '', '']], placed: false }]);
  });

  it('ignores a torn last line and cuts it off', () => {
    const a = Outbox.open(dir);
    a.outbox.note(10n, 1, 1, [bare('/r/./a')]);
    a.outbox.close();
    appendFileSync(path.join(dir, 'outbox.jsonl'), '{"t":"d","id":9,"u":"1');
    const b = Outbox.open(dir);
    assert.equal(b.unacked.length, 1);
    b.outbox.close();
    assert.ok(readFileSync(path.join(dir, 'outbox.jsonl'), 'utf8').endsWith('\n'));
  });

  // A power cut of the PPU can leave the last note torn, followed by NUL bytes (blocks allocated, never written).
  // It stood for files furkad may have placed: dropped, but returned for the caller to say (with the paths it
  // still holds), never dropped unsaid; so are damaged lines (F2, G12).
  it('returns the text of a torn last note (NUL bytes left out) and counts damaged lines, for furkad to say (F2, G12)', () => {
    const a = Outbox.open(dir);
    a.outbox.note(10n, 1, 1, [bare('/r/./a')]);
    a.outbox.close();
    assert.equal(a.torn, '');
    assert.equal(a.damaged, 0);
    appendFileSync(path.join(dir, 'outbox.jsonl'), Buffer.concat([Buffer.from('not json\n{"t":"d","id":9,"u":"1","paths":["/r/./1mf/u/b.c'), Buffer.alloc(300)]));
    const b = Outbox.open(dir);
    assert.equal(b.unacked.length, 1);
    assert.equal(b.torn, '{"t":"d","id":9,"u":"1","paths":["/r/./1mf/u/b.c');
    assert.equal(b.damaged, 1);
    b.outbox.close();
  });

  it('hands over the names files were placed under: a numbered name written down, or found beside the noted one (F2, G12)', () => {
    const ram = path.join(dir, 'ramdisk', 'u');
    mkdirSync(ram, { recursive: true });
    for (const f of ['a.img', 'a.img.~1~', 'b.img', 'c.img', 'c.img.~1~']) writeFileSync(path.join(ram, f), f);
    const marked = (f: string): string => `${dir}/ramdisk/./u/${f}`;
    const a = Outbox.open(dir);
    const one = a.outbox.note(10n, 500, 501, [[marked('a.img'), SUM_A, '1MF'], [marked('b.img'), SUM_B, '1MF']]);
    a.outbox.placed(one, 10n, 500, 501, [[marked('a.img.~1~'), SUM_A, '1MF'], [marked('b.img'), SUM_B, '1MF']]);
    // Killed after placing c.img.~1~ and before writing that down: the note still says c.img.
    const two = a.outbox.note(10n, 500, 501, [[marked('c.img'), SUM_A, '1MF']]);
    a.outbox.close();
    const { outbox, unacked } = Outbox.open(dir);
    outbox.close();
    const byId = new Map(unacked.map((u) => [u.id, u]));
    assert.deepEqual(placedFiles(byId.get(one)!), [[marked('a.img.~1~'), SUM_A, '1MF'], [marked('b.img'), SUM_B, '1MF']],
      'as placed: not a.img, which holds another file; each with its checksum');
    assert.deepEqual(placedFiles(byId.get(two)!), [[marked('c.img'), '', '1MF'], [marked('c.img.~1~'), '', '1MF']],
      'the numbered one is not left behind; which of the two the checksum is of is not known, so neither gets it');
  });

  it('hands over a file placed into a numbered directory beside a file holding its directory\'s name, found after a kill (F2, G3, G12)', () => {
    const ram = path.join(dir, 'ramdisk', 'u');
    mkdirSync(path.join(ram, 'Y.~1~'), { recursive: true });
    writeFileSync(path.join(ram, 'Y'), 'the file Y');
    writeFileSync(path.join(ram, 'Y.~1~', 'g.img'), 'g');
    const marked = (f: string): string => `${dir}/ramdisk/./u/${f}`;
    const a = Outbox.open(dir);
    // Killed after placing Y.~1~/g.img and before writing that down: the note still says Y/g.img.
    a.outbox.note(10n, 500, 501, [[marked('Y/g.img'), SUM_A, '1MF']]);
    a.outbox.close();
    const { outbox, unacked } = Outbox.open(dir);
    outbox.close();
    assert.deepEqual(placedFiles(unacked[0]!), [[marked('Y.~1~/g.img'), '', '1MF']]);
  });
});

// furkad's record of agent files placed but not yet acknowledged: it survives a restart, so a file announced
// again is acknowledged, not placed twice (A4).
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentPlaced } from '../../src/furkad/agent-placed.js';
import { ShiftDir } from '../../src/furkad/shift-dir.js';

describe('agent files placed, not yet acknowledged (A4)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'agent-placed-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('remembers placed ids per detector across a restart until their acknowledgement was answered', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', [{ id: '1:10:5', rel: 'a.cbf' }, { id: '2:20:6', rel: 'run/b.cbf' }]);
    a.placed('2MF', [{ id: '1:10:5', rel: 'a.cbf' }]);
    a.answered('1MF', ['1:10:5']);
    a.close();
    const b = AgentPlaced.open(dir);
    assert.equal(b.has('1MF', '1:10:5', 'a.cbf'), false, 'answered');
    assert.equal(b.has('1MF', '2:20:6', 'run/b.cbf'), true);
    assert.equal(b.has('2MF', '1:10:5', 'a.cbf'), true, 'the same id on another detector is another file');
    assert.deepEqual(b.placements('1MF'), [{ id: '2:20:6', rel: 'run/b.cbf' }]);
    b.close();
  });

  // A power cut or reboot of the PPU takes its ramdisk (a tmpfs) and every file placed there; a placement record
  // that outlived it on /var (written back before the cut) must not make furkad acknowledge the file to the agent
  // as placed: the agent would delete the only copy left, the one on the detector (A4, F2, G12).
  it('drops placements written in an earlier boot of the PPU, so the agent sends those files again (A4, F2, G12)', () => {
    const a = AgentPlaced.open(dir, 'boot-1');
    a.placed('1MF', [{ id: '1:10:5', rel: 'a.cbf', sum: 'ab'.repeat(16) }]);
    a.intend('1MF', '3:30:7', '/ram/1mf/10_10', 'c.cbf');
    a.owe('1MF', { usertime: '1700000000000000', uid: 10, gid: 10, usrdir: '10_10', target: '/ram/./1mf', configuredTarget: '/ram/./1mf' }, ['5:50:9']);
    a.close();
    const same = AgentPlaced.open(dir, 'boot-1');
    assert.equal(same.has('1MF', '1:10:5', 'a.cbf'), true, 'a furkad restarted in the same boot keeps its placements');
    assert.equal(same.droppedAtBoot.size, 0);
    same.close();
    const b = AgentPlaced.open(dir, 'boot-2');
    assert.equal(b.has('1MF', '1:10:5', 'a.cbf'), false, 'its file went with the PPU ramdisk: not acknowledged as placed');
    assert.deepEqual([...b.droppedAtBoot], [['1MF', 1]]);
    // Intents are checked against the ramdisk anyway; owed files stay their ended shift's.
    assert.deepEqual(b.intent('1MF', '3:30:7', 'c.cbf'), { dir: '/ram/1mf/10_10', rel: 'c.cbf' });
    assert.deepEqual(b.owedFiles('1MF').map((o) => o.id), ['5:50:9']);
    b.placed('1MF', [{ id: '2:20:6', rel: 'b.cbf' }]);
    b.close();
    const c = AgentPlaced.open(dir, 'boot-2');
    assert.equal(c.has('1MF', '1:10:5', 'a.cbf'), false, 'still dropped at the next start of the same boot');
    assert.equal(c.has('1MF', '2:20:6', 'b.cbf'), true, "this boot's placement kept");
    assert.equal(c.droppedAtBoot.size, 0, 'said once, at the start that found the new boot');
    c.rename('gone', 'gone-too'); // rewrites the file from what is open
    c.close();
    const d = AgentPlaced.open(dir, 'boot-2');
    assert.equal(d.has('1MF', '2:20:6', 'b.cbf'), true, 'a rewritten file keeps its boot');
    assert.equal(d.droppedAtBoot.size, 0);
    d.close();
  });

  it('keeps the placements of a file written before boots were noted (an older furkad), and notes the boot from then on', () => {
    writeFileSync(path.join(dir, 'agent-placed.jsonl'), `${JSON.stringify({ t: 'p', d: '1MF', id: '1:10:5', rel: 'a.cbf' })}\n`);
    const a = AgentPlaced.open(dir, 'boot-1');
    assert.equal(a.has('1MF', '1:10:5', 'a.cbf'), true, 'no boot known: kept, as before');
    a.close();
    const b = AgentPlaced.open(dir, 'boot-2');
    assert.equal(b.has('1MF', '1:10:5', 'a.cbf'), false);
    b.close();
  });

  it('rewritten from what is still open (a grown file, as a full state_dir does), replays to the same records (A4, F10)', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', [{ id: '1:10:5', rel: 'a.cbf', sum: 'ab'.repeat(16) }, { id: '2:20:6', rel: 'run/b.cbf' }]);
    a.intend('1MF', '3:30:7', '/ram/1mf/10_10', 'c.cbf', 'cd'.repeat(16));
    a.setAside('2MF', [{ id: '4:40:8', rel: 'd.cbf', usertime: '1700000000000000' }]);
    // Enough answered placements to pass the size at which the file is rewritten from what is open.
    const many = Array.from({ length: 6000 }, (_, i) => ({ id: `9:${i}:1`, rel: `many/${'x'.repeat(120)}${i}.cbf` }));
    a.placed('1MF', many);
    a.answered('1MF', many.map((f) => f.id), many.map((f) => f.rel));
    a.close();
    assert.ok(statSync(path.join(dir, 'agent-placed.jsonl')).size < 4096, 'rewritten to what is open');
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.placements('1MF'), [{ id: '1:10:5', rel: 'a.cbf', sum: 'ab'.repeat(16) }, { id: '2:20:6', rel: 'run/b.cbf' }]);
    assert.equal(b.sumOf('1MF', '1:10:5', 'a.cbf'), 'ab'.repeat(16));
    assert.deepEqual(b.intent('1MF', '3:30:7', 'c.cbf'), { dir: '/ram/1mf/10_10', rel: 'c.cbf', sum: 'cd'.repeat(16) });
    assert.deepEqual(b.setAsideFiles('2MF'), [{ id: '4:40:8', rel: 'd.cbf', usertime: '1700000000000000' }]);
    b.close();
  });

  it('with more than 1 MB of placements open (acknowledgements owed by an agent away), answers them one by one without rewriting the file each time (A4)', () => {
    const a = AgentPlaced.open(dir);
    const many = Array.from({ length: 12_000 }, (_, i) => ({ id: `9:${i}:1`, rel: `many/${'x'.repeat(60)}${i}.cbf` }));
    a.placed('1MF', many);
    const file = path.join(dir, 'agent-placed.jsonl');
    assert.ok(statSync(file).size > 1 << 20, 'a backlog past 1 MB');
    let rewrites = 0;
    let ino = statSync(file).ino;
    for (const f of many.slice(0, 300)) {
      a.answered('1MF', [f.id], [f.rel]);
      if (statSync(file).ino !== ino) rewrites++;
      ino = statSync(file).ino;
    }
    a.close();
    assert.ok(rewrites <= 1, `the file rewritten ${rewrites} times for 300 answers`);
    const b = AgentPlaced.open(dir);
    assert.equal(b.placements('1MF').length, many.length - 300, 'exactly the placements still open');
    assert.equal(b.has('1MF', many[0]!.id, many[0]!.rel), false);
    assert.equal(b.has('1MF', many[300]!.id, many[300]!.rel), true);
    b.close();
  });

  it('tells a file placed under one name from the same file announced under another (renamed or linked since)', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', [{ id: '3:10:5', rel: 'run/img.tmp' }]);
    assert.equal(a.has('1MF', '3:10:5', 'run/img.tmp'), true);
    assert.equal(a.has('1MF', '3:10:5', 'run/img.cbf'), false, 'the final name was not placed');
    a.close();
    // A line of a furkad that did not note the name: the id counts as placed under any name, as it did then.
    appendFileSync(path.join(dir, 'agent-placed.jsonl'), '{"t":"p","d":"1MF","id":"4:10:5"}\n');
    const b = AgentPlaced.open(dir);
    assert.equal(b.has('1MF', '3:10:5', 'run/img.tmp'), true, 'the name is remembered across a restart');
    assert.equal(b.has('1MF', '3:10:5', 'run/img.cbf'), false);
    assert.equal(b.has('1MF', '4:10:5', 'anything.cbf'), true);
    // Placed again under the new name before the answer for the old one came: that answer leaves it alone.
    b.placed('1MF', [{ id: '3:10:5', rel: 'run/img.cbf' }]);
    b.answered('1MF', ['3:10:5'], ['run/img.tmp']);
    assert.equal(b.has('1MF', '3:10:5', 'run/img.cbf'), true, 'still waiting for its own answer');
    b.close();
    const c = AgentPlaced.open(dir);
    assert.equal(c.has('1MF', '3:10:5', 'run/img.cbf'), true, 'also after a restart');
    c.answered('1MF', ['3:10:5'], ['run/img.cbf']);
    assert.equal(c.has('1MF', '3:10:5', 'run/img.cbf'), false);
    // An intent for the other name dropped (not found placed after a restart): the placement stays.
    c.placed('1MF', [{ id: '5:1:1', rel: 'a.cbf' }]);
    c.intend('1MF', '5:1:1', '/ramdisk/1mf/1_1', 'b.cbf');
    c.dropIntent('1MF', '5:1:1', 'b.cbf');
    c.close();
    const d = AgentPlaced.open(dir);
    assert.equal(d.has('1MF', '3:10:5', 'run/img.cbf'), false, 'answered, after a restart');
    assert.equal(d.has('1MF', '5:1:1', 'a.cbf'), true, 'a dropped intent ends only the intent');
    assert.equal(d.intent('1MF', '5:1:1', 'b.cbf'), undefined);
    d.close();
  });

  it('skips a torn or damaged line and empties the file once everything is answered and it grew large', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', [{ id: '9:9:9', rel: 'x' }]);
    a.close();
    appendFileSync(path.join(dir, 'agent-placed.jsonl'), 'not json\n{"t":"p","d":"1MF","id":"7');
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.placements('1MF'), [{ id: '9:9:9', rel: 'x' }]);
    const ids = Array.from({ length: 30_000 }, (_, i) => `${i}:1:1`);
    b.placed('1MF', ids.map((id) => ({ id, rel: `f${id}` })));
    b.answered('1MF', [...ids, '9:9:9']);
    // Nothing but the line naming the PPU's boot is left.
    assert.deepEqual(readFileSync(path.join(dir, 'agent-placed.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { t: string }).t), ['b']);
    b.close();
  });
  it('remembers where a file was about to be placed until it is noted placed or found not to be (killed in between)', () => {
    const a = AgentPlaced.open(dir);
    a.intend('1MF', '7:100:9', '/ramdisk/1mf/620_621', 'run/x.cbf');
    a.intend('1MF', '7:100:9:1', '/ramdisk/1mf/620_621', 'run/x2.cbf', 'ab'.repeat(16));
    a.intend('1MF', '8:100:9', '/ramdisk/1mf/620_621', 'run/y.cbf');
    a.intend('1MF', '9:100:9', '/ramdisk/1mf/620_621', 'run/z.cbf');
    a.placed('1MF', [{ id: '8:100:9', rel: 'run/y.cbf', sum: 'cd'.repeat(16) }]);
    a.dropIntent('1MF', '9:100:9', 'run/z.cbf');
    a.close(); // SIGKILL after x's link, before placed()
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.intent('1MF', '7:100:9', 'run/x.cbf'), { dir: '/ramdisk/1mf/620_621', rel: 'run/x.cbf' });
    assert.equal(b.intent('1MF', '7:100:9', 'run/other-name.cbf'), undefined, 'an intent is for one name');
    assert.deepEqual(b.intent('1MF', '7:100:9:1', 'run/x2.cbf'), { dir: '/ramdisk/1mf/620_621', rel: 'run/x2.cbf', sum: 'ab'.repeat(16) },
      'with the checksum of what was to be placed: another version of the same size and mtime is not it');
    assert.equal(b.intent('1MF', '8:100:9', 'run/y.cbf'), undefined, 'placed: no longer an intent');
    assert.equal(b.has('1MF', '8:100:9', 'run/y.cbf'), true);
    assert.equal(b.sumOf('1MF', '8:100:9', 'run/y.cbf'), 'cd'.repeat(16), 'what was placed, sent with the acknowledgement again');
    assert.equal(b.intent('1MF', '9:100:9', 'run/z.cbf'), undefined, 'dropped');
    b.close();
  });

  it('keeps both names of a hard-linked file apart: placements, intents and set-asides, across a restart (A4)', () => {
    const a = AgentPlaced.open(dir);
    a.intend('1MF', '6:10:5', '/ramdisk/1mf/1_1', 'a.cbf');
    a.intend('1MF', '6:10:5', '/ramdisk/1mf/1_1', 'b.cbf');
    a.placed('1MF', [{ id: '6:10:5', rel: 'a.cbf' }]);
    a.close(); // killed before b was noted placed
    const b = AgentPlaced.open(dir);
    assert.equal(b.has('1MF', '6:10:5', 'a.cbf'), true);
    assert.deepEqual(b.intent('1MF', '6:10:5', 'b.cbf'), { dir: '/ramdisk/1mf/1_1', rel: 'b.cbf' }, "a's placement does not end b's intent");
    b.placed('1MF', [{ id: '6:10:5', rel: 'b.cbf' }]);
    b.answered('1MF', ['6:10:5'], ['a.cbf']);
    b.setAside('1MF', [{ id: '7:10:5', rel: 'c.cbf', usertime: '9' }, { id: '7:10:5', rel: 'd.cbf', usertime: '9', sum: 'ef'.repeat(16) }]);
    b.dropSetAside('1MF', [{ id: '7:10:5', rel: 'c.cbf' }]);
    b.close();
    const c = AgentPlaced.open(dir);
    assert.equal(c.has('1MF', '6:10:5', 'a.cbf'), false, 'answered');
    assert.equal(c.has('1MF', '6:10:5', 'b.cbf'), true, 'still waiting for its own answer');
    assert.deepEqual(c.placements('1MF'), [{ id: '6:10:5', rel: 'b.cbf' }]);
    assert.deepEqual(c.setAsideFiles('1MF'), [{ id: '7:10:5', rel: 'd.cbf', usertime: '9', sum: 'ef'.repeat(16) }], 'with the checksum of what was placed');
    // An answer by id alone (the agent no longer lists it) ends every placement of it.
    c.answered('1MF', ['6:10:5']);
    assert.equal(c.has('1MF', '6:10:5', 'b.cbf'), false);
    c.close();
  });

  it('finds the other names a file is placed, or about to be placed, under: the name it had before a rename, across a restart (A4)', () => {
    const a = AgentPlaced.open(dir);
    const sum = 'ab'.repeat(16);
    a.placed('1MF', [{ id: '8:10:5', rel: 'run/f.img', sum }, { id: '9:10:5', rel: 'run/g.img' }]);
    a.placed('2MF', [{ id: '8:10:5', rel: 'other.img' }]);
    a.intend('1MF', '8:10:5', '/ramdisk/1mf/1_1', 'run/h.img', sum);
    assert.deepEqual(a.otherNames('1MF', '8:10:5', 'run_bad/f.img'), {
      placed: [{ id: '8:10:5', rel: 'run/f.img', sum }], meant: [{ dir: '/ramdisk/1mf/1_1', rel: 'run/h.img', sum }],
    });
    assert.deepEqual(a.otherNames('1MF', '8:10:5', 'run/f.img').placed, [], 'not its own name');
    a.close();
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.otherNames('1MF', '8:10:5', 'run_bad/f.img').placed, [{ id: '8:10:5', rel: 'run/f.img', sum }], 'after a restart');
    b.placed('1MF', [{ id: '8:10:5', rel: 'run_bad/f.img', sum }]);
    b.answered('1MF', ['8:10:5'], ['run/f.img']);
    b.dropIntent('1MF', '8:10:5', 'run/h.img');
    assert.deepEqual(b.otherNames('1MF', '8:10:5', 'run_bad/f.img'), { placed: [], meant: [] }, 'answered');
    assert.deepEqual(b.otherNames('1MF', '8:10:5', 'run/f.img').placed, [{ id: '8:10:5', rel: 'run_bad/f.img', sum }]);
    b.close();
  });

  it('remembers files set aside for an ended shift across a restart, until they are placed (A5, F6)', () => {
    const a = AgentPlaced.open(dir);
    a.intend('1MF', '7:100:9', '/ramdisk/1mf/620_621', 'run/x.cbf');
    a.intend('1MF', '7:100:9:1', '/ramdisk/1mf/620_621', 'run/x2.cbf', 'ab'.repeat(16));
    a.intend('1MF', '8:100:9', '/ramdisk/1mf/620_621', 'run/y.cbf');
    a.setAside('1MF', [{ id: '7:100:9', rel: 'run/x.cbf', usertime: '620' }, { id: '8:100:9', rel: 'run/y.cbf', usertime: '620' }]);
    a.placed('1MF', [{ id: '8:100:9', rel: 'run/y.cbf', sum: 'cd'.repeat(16) }]); // y placed for its shift later on
    assert.equal(a.intent('1MF', '7:100:9', 'run/x.cbf'), undefined, 'set aside: no longer where it was meant to go');
    a.close();
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.setAsideFiles('1MF'), [{ id: '7:100:9', rel: 'run/x.cbf', usertime: '620' }]);
    assert.deepEqual(b.setAsideFiles('2MF'), []);
    assert.equal(b.intent('1MF', '7:100:9', 'run/x.cbf'), undefined);
    b.placed('1MF', [{ id: '7:100:9', rel: 'run/x.cbf' }]);
    b.close();
    const c = AgentPlaced.open(dir);
    assert.deepEqual(c.setAsideFiles('1MF'), [], 'placed: nothing is set aside any more');
    c.close();
  });

  it('remembers files owed to an ended shift across a restart and a rewrite, until set aside, placed or dropped (A5)', () => {
    const shift = { usertime: '1700000000000000', uid: 500, gid: 501, usrdir: '500_501', target: '/ram/./1mf', configuredTarget: '/ram/./1mf' };
    const a = AgentPlaced.open(dir);
    a.owe('1MF', shift, ['1:1:1', '2:2:2', '3:3:3', '4:4:4']);
    a.setAside('1MF', [{ id: '1:1:1', rel: 'run/a.cbf', usertime: shift.usertime }]); // fetched and set aside for it
    a.placed('1MF', [{ id: '2:2:2', rel: 'run/b.cbf' }]);
    a.dropOwed('1MF', ['3:3:3']); // gone from the detector
    assert.deepEqual(a.owedFiles('1MF'), [{ id: '4:4:4', shift }]);
    a.close();
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.owedFiles('1MF'), [{ id: '4:4:4', shift }]);
    assert.deepEqual(b.owedFiles('2MF'), [], 'per detector');
    // Rewritten from what is open (the file grew large): still owed, with its shift.
    const many = Array.from({ length: 6000 }, (_, i) => ({ id: `9:${i}:1`, rel: `many/${'x'.repeat(120)}${i}.cbf` }));
    b.placed('1MF', many);
    b.answered('1MF', many.map((f) => f.id), many.map((f) => f.rel));
    b.close();
    assert.ok(statSync(path.join(dir, 'agent-placed.jsonl')).size < 4096, 'rewritten to what is open');
    const c = AgentPlaced.open(dir);
    assert.deepEqual(c.owedFiles('1MF'), [{ id: '4:4:4', shift }]);
    c.close();
  });

  it('finds a placed file by size and mtime under its name or a numbered one, never through a link', () => {
    const u = path.join(dir, 'u');
    mkdirSync(path.join(u, 'run'), { recursive: true });
    const put = (name: string, size: number, mtime: number): void => {
      writeFileSync(path.join(u, 'run', name), Buffer.alloc(size));
      utimesSync(path.join(u, 'run', name), mtime, mtime);
    };
    put('x.cbf', 10, 1000);
    put('x.cbf.~1~', 20, 2000.5);
    assert.equal(ShiftDir.holds(u, 'run/x.cbf', 10, 1_000_000), true);
    assert.equal(ShiftDir.holds(u, 'run/x.cbf', 20, 2_000_500), true, 'placed beside another file as NAME.~1~');
    assert.equal(ShiftDir.holds(u, 'run/x.cbf', 30, 1_000_000), false);
    assert.equal(ShiftDir.holds(u, 'run/y.cbf', 10, 1_000_000), false);
    mkdirSync(path.join(dir, 'elsewhere'));
    writeFileSync(path.join(dir, 'elsewhere', 'x.cbf'), Buffer.alloc(10));
    utimesSync(path.join(dir, 'elsewhere', 'x.cbf'), 1000, 1000);
    symlinkSync(path.join(dir, 'elsewhere'), path.join(u, 'linked'));
    assert.equal(ShiftDir.holds(u, 'linked/x.cbf', 10, 1_000_000), false, 'a link on the way is not followed');
  });
});

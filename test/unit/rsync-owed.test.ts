// Files an rsync detector's runs knew of and left on the detector, owed to the shift that ended meanwhile (rsync-owed.ts,
// A5, F6). The real daemons' side: test/integration/furkad-owed.test.ts.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { RsyncOwed, rsyncOwedFile } from '../../src/furkad/rsync-owed.js';
import { flushedCopy } from '../../src/furkad/json-state.js';
import type { OwedShift } from '../../src/furkad/transport.js';

const quiet = pino({ level: 'silent' });
const shift = (usertime: bigint, uid: number): OwedShift => ({ usertime, uid, gid: uid, usrdir: `${uid}_${uid}`, target: '/ppu/./1mf', configuredTarget: '/ppu/./1mf' });

describe('files an rsync run knew of before a shift change (A5)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'owed-'));
  });
  // A copy still being flushed in the background (json-state.ts) may add a file while the directory goes: removed
  // again once the event loop has let that write go on.
  afterEach(async () => {
    for (let i = 0; ; i++) {
      try {
        return rmSync(dir, { recursive: true, force: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || i === 100) throw e;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  });

  it("owes what was known and not taken to the ending shift, not a later one, and not to the shift it is taken in", () => {
    const o = new RsyncOwed('1MF', quiet);
    const first = shift(100n, 500);
    o.learned('data', ['run/a.cbf', 'run/b.cbf', 'run/c.cbf']);
    o.taken('data', ['run/c.cbf']);
    assert.equal(o.owe(first), 2);
    assert.equal(o.owedTo('data', 'run/a.cbf', 200n), first);
    assert.equal(o.owedTo('data', 'run/c.cbf', 200n), undefined, 'taken in its own shift');
    assert.equal(o.owedTo('data', 'run/a.cbf', 100n), undefined, "its own shift's runs place it as theirs");
    // The next change owes newly known files to its own ending shift; the earlier ones stay the first shift's.
    o.learned('data', ['run/a.cbf', 'run/d.cbf']);
    assert.equal(o.owe(shift(200n, 600)), 1);
    assert.equal(o.owedTo('data', 'run/a.cbf', 300n)?.uid, 500);
    assert.equal(o.owedTo('data', 'run/d.cbf', 300n)?.uid, 600);
    // The same path below the module, whatever source a shift names.
    assert.equal(o.owedTo('', 'data/run/a.cbf', 300n)?.uid, 500);
    assert.deepEqual([...o.owedBelow('data', 300n)].map(([s, rels]) => [s.uid, rels]), [[500, ['run/a.cbf', 'run/b.cbf']], [600, ['run/d.cbf']]]);
    assert.deepEqual([...o.owedBelow('data', 100n)].map(([s, rels]) => [s.uid, rels]), [[600, ['run/d.cbf']]], "none of the current shift's own");
  });

  it('forgets what a full listing no longer names (deleted on the detector), and what was set aside', () => {
    const o = new RsyncOwed('1MF', quiet);
    o.learned('data', ['a', 'b', 'c']);
    o.owe(shift(100n, 500));
    o.listed('data', ['a', 'c'], () => false);
    o.listed('other', [], () => false);
    // Taken into staging by the run, not set aside yet: its source is gone from the detector, but it is still owed.
    o.listed('data', ['c'], (rel) => rel === 'a');
    o.taken('data', ['c']);
    assert.deepEqual(['a', 'b', 'c'].map((r) => o.owedTo('data', r, 200n)?.uid), [500, undefined, undefined]);
  });

  it('keeps what is owed in state_dir from owe() on: a furkad started later sets it aside for the same shift', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.learned('data', ['a', 'b']);
    o.owe(shift(100n, 500));
    const again = new RsyncOwed('1MF', quiet, file);
    assert.deepEqual(again.owedTo('data', 'a', 200n), shift(100n, 500));
    again.taken('data', ['a']);
    again.save();
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('data', 'a', 200n), undefined, 'set aside: owed no more');
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('data', 'b', 200n)?.uid, 500);
    assert.match(readFileSync(file, 'utf8'), /"usertime":"100"/);
  });

  it('keeps what is owed through a power cut that leaves the file empty: taken from its copy flushed to disk, and said (A5)', async () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.learned('data', ['a', 'b']);
    o.owe(shift(100n, 500));
    await o.flushed();
    assert.match(readFileSync(flushedCopy(file), 'utf8'), /"usertime":"100"/);
    // The file itself is rewritten after nearly every run, in place and not flushed: XFS (CentOS 7's default) leaves
    // such a file empty after a power cut, and a torn one is no better.
    for (const left of ['', '{"detector":"1MF","shi']) {
      writeFileSync(file, left);
      const warnings: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => { warnings.push(line); } });
      assert.equal(new RsyncOwed('1MF', log, file).owedTo('data', 'b', 200n)?.uid, 500, `owed to the ended shift, not the next user's (file left ${JSON.stringify(left)})`);
      const said = warnings.filter((w) => /took the copy last flushed to disk/.test(w));
      assert.equal(said.length, 1, warnings.join());
      assert.match(said[0]!, /cannot read the files left on the detector and those owed to ended shifts /);
      assert.match(said[0]!, /rsync-owed-1MF\.json\.flushed/);
    }
    // A file removed on purpose (state cleared by hand) is not brought back from its copy.
    rmSync(file);
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('data', 'b', 200n), undefined);
  });

  it("keeps what is known and not owed yet across a kill: a furkad going on with that shift owes it at the next change, a run first or not (A5)", () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.runsIn(100n);
    o.learned('data', ['run/a.cbf', 'run/b.cbf']);
    o.save();
    // Killed here. Started again, going on with shift 100, a StartShift comes before any run.
    const again = new RsyncOwed('1MF', quiet, file);
    assert.equal(again.owe(shift(100n, 500)), 2);
    assert.equal(again.owedTo('data', 'run/a.cbf', 200n)?.uid, 500);
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('data', 'run/b.cbf', 200n)?.uid, 500, 'owed from then on, also after a further restart');
    // Or its first run comes first: it lists the detector, which no longer has one of them (renamed or deleted there).
    rmSync(file);
    o.learned('data', ['run/c.cbf']);
    o.save();
    const ran = new RsyncOwed('1MF', quiet, file);
    ran.runsIn(100n);
    ran.listed('data', ['run/a.cbf', 'run/c.cbf'], () => false);
    assert.equal(ran.owe(shift(100n, 500)), 2);
    assert.deepEqual(['run/a.cbf', 'run/b.cbf', 'run/c.cbf'].map((r) => ran.owedTo('data', r, 200n)?.uid), [500, undefined, 500]);
  });

  it('drops what an earlier furkad knew in another shift than the one this furkad runs (a clean stop before: the default shift, F6)', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.runsIn(100n);
    o.learned('data', ['a', 'b']);
    o.save();
    // A StartShift before the first run of a furkad that started the default shift 150.
    const next = new RsyncOwed('1MF', quiet, file);
    assert.equal(next.owe(shift(150n, 700)), 0);
    assert.equal(next.owedTo('data', 'a', 200n), undefined);
    // Or its first run in it: the same, and written so: a furkad after it going on with 100 (a stale file) takes none either.
    o.learned('data', ['c']);
    o.save();
    const run = new RsyncOwed('1MF', quiet, file);
    run.runsIn(150n);
    run.save();
    assert.equal(new RsyncOwed('1MF', quiet, file).owe(shift(100n, 500)), 0);
  });

  it('writes the known files only when they changed, not after every run that lists the same ones', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.runsIn(100n);
    o.learned('data', ['a', 'b']);
    o.save();
    rmSync(file);
    o.runsIn(100n);
    o.learned('data', ['a', 'b']);
    o.listed('data', ['a', 'b'], () => false);
    o.save();
    assert.equal(existsSync(file), false, 'nothing changed: not written');
    o.taken('data', ['a']);
    o.save();
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).known, ['data/b']);
  });

  it('takes nothing from a damaged file', () => {
    const file = rsyncOwedFile(dir, '1MF');
    writeFileSync(file, JSON.stringify({ shifts: [{ usertime: 'x', uid: 1 }], owed: [['a', 'x'], 'b'] }));
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('', 'a', 1n), undefined);
    writeFileSync(file, '{');
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('', 'a', 1n), undefined);
    writeFileSync(file, JSON.stringify({ knownIn: '1x', known: ['a'] }));
    assert.equal(new RsyncOwed('1MF', quiet, file).owe(shift(1n, 500)), 0);
    writeFileSync(file, JSON.stringify({ knownIn: '1', known: [3, 'b'] }));
    const o = new RsyncOwed('1MF', quiet, file);
    assert.equal(o.owe(shift(1n, 500)), 1);
    assert.equal(o.owedTo('', 'b', 2n)?.uid, 500);
  });
  it('gives a file written under an owed name after that shift ended to the shift it is taken in, whatever the detector\'s clock, also after a restart (A5)', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    // Listed before the change with the detector's clock far ahead of the PPU's (mtimes after the change, PPU time).
    const listed = { 'run/a.cbf': { size: 1000, mtimeS: 90 }, 'run/b.cbf': { size: 1000, mtimeS: 91 }, 'run/c.cbf': { size: 1000, mtimeS: 92 } };
    o.learned('data', ['run/a.cbf', 'run/b.cbf', 'run/c.cbf'], (rel) => listed[rel as keyof typeof listed]);
    o.owe(shift(100n, 500));
    // Listed again after the change (still left on the detector), rewritten meanwhile: what was listed before counts.
    o.learned('data', ['run/c.cbf'], () => ({ size: 1000, mtimeS: 40 }));
    const again = new RsyncOwed('1MF', quiet, file); // a furkad started since
    assert.equal(again.owedTo('data', 'run/a.cbf', 200n, { size: 1000, mtimeMs: 90_999.5 })?.uid, 500, 'the file listed before the change (its mtime in whole seconds): the ended shift\'s');
    // Written after the change with the detector's clock behind (mtime before the change, PPU time), same size.
    assert.equal(again.owedTo('data', 'run/b.cbf', 200n, { size: 1000, mtimeMs: 40_000 }), undefined, 'another mtime: a new file under that name, not the ended shift\'s');
    assert.equal(again.owedTo('data', 'run/b.cbf', 200n, { size: 1000, mtimeMs: 91_000 }), undefined, 'and owed no more');
    assert.equal(again.owedTo('data', 'run/c.cbf', 200n, { size: 999, mtimeMs: 92_000 }), undefined, 'another size: not the ended shift\'s');
    assert.equal(o.owedTo('data', 'run/c.cbf', 200n, { size: 1000, mtimeMs: 40_000 }), undefined, 'a listing after the change changes nothing');
    assert.deepEqual([o.listens('data', 'run/a.cbf'), o.listens('data', 'run/x.cbf')], [false, true], 'not listed again once owed');
    assert.equal(o.owedTo('data', 'run/a.cbf', 200n)?.uid, 500, 'gone from staging: still owed');
  });

  it('keeps what was listed of the files left on the detector for a furkad killed and started again, owed at a StartShift before its first run (A5)', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.runsIn(100n);
    o.learned('data', ['run/a.cbf', 'run/b.cbf'], () => ({ size: 1000, mtimeS: 90 }));
    o.save();
    const again = new RsyncOwed('1MF', quiet, file); // killed, started again with shift 100; StartShift at once
    assert.equal(again.owe(shift(100n, 500)), 2);
    assert.equal(again.owedTo('data', 'run/a.cbf', 200n, { size: 1000, mtimeMs: 90_500 })?.uid, 500, 'the file listed: the ended shift\'s, its mtime after the change');
    assert.equal(again.owedTo('data', 'run/b.cbf', 200n, { size: 1000, mtimeMs: 40_000 }), undefined, 'another written since: not');
  });

  it('judges a file owed by an earlier furkad, which kept no listing, by its mtime against when the shift ended (A5)', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const s = { ...shift(100n, 500), usertime: '100', endedMs: 50_000 };
    writeFileSync(file, JSON.stringify({ detector: '1MF', shifts: [s], owed: [['data/run/a.cbf', '100'], ['data/run/b.cbf', '100']] }));
    const o = new RsyncOwed('1MF', quiet, file);
    assert.equal(o.owedTo('data', 'run/a.cbf', 200n, { size: 1, mtimeMs: 49_990 })?.uid, 500, 'last written before the change');
    assert.equal(o.owedTo('data', 'run/b.cbf', 200n, { size: 1, mtimeMs: 50_010 }), undefined, 'written after it');
  });

  it('compares the exact whole second of the staged mtime: one within 100 ns of the next second is still the file listed (A5)', () => {
    const o = new RsyncOwed('1MF', quiet);
    o.learned('data', ['run/a.cbf'], () => ({ size: 1000, mtimeS: 1_796_370_000 }));
    o.owe(shift(100n, 500));
    // mtime 1796370000.999999999 s: as a double in ms it is 1796370001000, the next second.
    assert.equal(o.owedTo('data', 'run/a.cbf', 200n, { size: 1000, mtimeMs: 1_796_370_001_000, mtimeS: 1_796_370_000 })?.uid, 500);
  });

  it('owes a file with no listing (the run that was to list it failed) by its name to the ended shift, whatever its mtime says against the PPU clock (A5)', () => {
    const file = rsyncOwedFile(dir, '1MF');
    const o = new RsyncOwed('1MF', quiet, file);
    o.learned('data', ['run/a.cbf']);
    o.owe(shift(100n, 500));
    // The detector's clock an hour ahead of the PPU's: no clock decides it.
    const ahead = { size: 1000, mtimeMs: Date.now() + 3_600_000 };
    assert.equal(o.owedTo('data', 'run/a.cbf', 200n, ahead)?.uid, 500);
    assert.equal(new RsyncOwed('1MF', quiet, file).owedTo('data', 'run/a.cbf', 200n, ahead)?.uid, 500, 'also for a furkad started since');
  });

  it('owes 20 000 files quickly (A5)', () => {
    // Tens of thousands owed behind a full ramdisk: looked up at every run, so never once per file over all of them.
    const many = new RsyncOwed('2MF', quiet);
    const rels = Array.from({ length: 20_000 }, (_, i) => `run/f${i}.cbf`);
    many.learned('data', rels);
    many.owe(shift(100n, 500));
    assert.deepEqual([...many.owedBelow('data', 200n).values()].map((r) => r.length), [20_000]);
  });
});

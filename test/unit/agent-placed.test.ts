// furkad's record of agent files placed but not yet acknowledged: it survives a restart, so a file announced
// again is acknowledged, not placed twice (A4).
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentPlaced } from '../../src/furkad/agent-placed.js';

describe('agent files placed, not yet acknowledged (A4)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'agent-placed-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('remembers placed ids per detector across a restart until their acknowledgement was answered', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', ['1:10:5', '2:20:6']);
    a.placed('2MF', ['1:10:5']);
    a.settled('1MF', ['1:10:5']);
    a.close();
    const b = AgentPlaced.open(dir);
    assert.equal(b.has('1MF', '1:10:5'), false, 'settled');
    assert.equal(b.has('1MF', '2:20:6'), true);
    assert.equal(b.has('2MF', '1:10:5'), true, 'the same id on another detector is another file');
    assert.deepEqual(b.unsettled('1MF'), ['2:20:6']);
    b.close();
  });

  it('skips a torn or damaged line and empties the file once everything is settled and it grew large', () => {
    const a = AgentPlaced.open(dir);
    a.placed('1MF', ['9:9:9']);
    a.close();
    appendFileSync(path.join(dir, 'agent-placed.jsonl'), 'not json\n{"t":"p","d":"1MF","id":"7');
    const b = AgentPlaced.open(dir);
    assert.deepEqual(b.unsettled('1MF'), ['9:9:9']);
    const ids = Array.from({ length: 30_000 }, (_, i) => `${i}:1:1`);
    b.placed('1MF', ids);
    b.settled('1MF', [...ids, '9:9:9']);
    assert.equal(statSync(path.join(dir, 'agent-placed.jsonl')).size, 0);
    b.close();
  });
});

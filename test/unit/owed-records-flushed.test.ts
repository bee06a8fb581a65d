// The records of files on the detector owed to an ended shift outlive a power cut of the PPU (A5, F6): they are
// flushed to disk once written, and a rewrite of agent-placed.jsonl while some are owed is flushed before and after
// its rename. The other records describe files on the PPU ramdisk (a tmpfs, gone with the power too) and are not
// flushed: furkad places files at hundreds a second. What reaches the disk is read from the system calls (strace).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const MODULE = path.resolve(__dirname, '../../src/furkad/agent-placed.js');

/** Runs `steps` (JavaScript with `a`, an AgentPlaced in `dir`) under strace; the calls of each step, by its name. */
function traced(dir: string, steps: Record<string, string>): Map<string, string[]> {
  const script = path.join(dir, 'steps.js');
  writeFileSync(script, [
    `const { AgentPlaced } = require(${JSON.stringify(MODULE)});`,
    `const shift = { usertime: '100', uid: 500, gid: 500, usrdir: '500_500', target: '/ppu/./1mf', configuredTarget: '/ppu/./1mf' };`,
    `const a = AgentPlaced.open(${JSON.stringify(path.join(dir, 'state'))});`,
    ...Object.entries(steps).map(([name, js]) => `process.stdout.write('STEP ${name}\\n'); ${js}`),
    `process.stdout.write('STEP end\\n'); a.close();`,
  ].join('\n'));
  const out = path.join(dir, 'strace.out');
  execFileSync('strace', ['-qq', '-f', '-y', '-s', '60', '-e', 'trace=write,pwrite64,fsync,fdatasync,rename', '-o', out, process.execPath, script], { stdio: 'ignore' });
  const calls = new Map<string, string[]>();
  let step = 'open';
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /STEP (\w+)/.exec(line);
    if (m) step = m[1]!;
    else if (line.includes('agent-placed') || /fsync\(\d+<[^>]*\/state>\)/.test(line)) calls.set(step, [...(calls.get(step) ?? []), line.replace(/^\d+ +/, '')]);
  }
  return calls;
}

const flushes = (calls: string[] | undefined): string[] => (calls ?? []).filter((c) => /^f(data)?sync\(/.test(c));

describe('records of files owed to ended shifts reach the disk (A5, F6)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'owed-flushed-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('flushes the owed records once written, and a rewrite while files are owed before and after its rename; placements alone are not flushed', () => {
    const calls = traced(dir, {
      placements: `a.placed('1MF', [{ id: '1:10:5', rel: 'a.cbf' }, { id: '1:11:5', rel: 'b.cbf' }]); a.answered('1MF', ['1:10:5']); a.rename('1MF', '1MF2');`,
      owe: `a.owe('1MF2', shift, ['2:20:6', '2:21:6']);`,
      rewrite: `a.rename('1MF2', 'EIGER');`,
    });
    assert.deepEqual(flushes(calls.get('placements')), [], 'placements, answers and a rewrite of them: not flushed');
    assert.ok(calls.get('placements')!.some((c) => c.startsWith('rename(')), 'the step did rewrite the file');
    const owe = calls.get('owe')!;
    const written = owe.findIndex((c) => /^write\(\d+<[^>]*agent-placed\.jsonl>, .*\\"t\\":\\"os\\"/.test(c));
    const flushed = owe.findIndex((c) => /^fdatasync\(\d+<[^>]*agent-placed\.jsonl>\)/.test(c));
    assert.ok(written >= 0 && flushed > written, `the owed records written, then flushed:\n${owe.join('\n')}`);
    const rewrite = calls.get('rewrite')!;
    const order = ['fsync\\(\\d+<[^>]*agent-placed\\.jsonl\\.new>\\)', 'rename\\(', 'fsync\\(\\d+<[^>]*/state>\\)'].map((re) => rewrite.findIndex((c) => new RegExp(`^${re}`).test(c)));
    assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), `new file flushed, renamed, its directory flushed:\n${rewrite.join('\n')}`);
  });
});

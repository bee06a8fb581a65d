// furkad over furka-agent: a run directory renamed on the detector while it is being transferred (a user renaming
// scan_001 to scan_001_bad). A file placed under its old name is not placed again under its new one, which the
// agent announces with the same id: each file is placed once, and every source is deleted (A4, F1).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { AgentClient } from '../fixtures/agent.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';

const FILES = 200;
const SIZE = 40_000;
/** Runs tried until one is caught with files placed and not yet acknowledged (each try is one run directory). */
const TRIES = 12;

describe('furkad over furka-agent: a run directory renamed while it is transferred (A4, F1)', function () {
  this.timeout(300_000);
  let ppu: Ppu;
  let observer: AgentClient | undefined;
  before(async () => {
    ppu = await new Ppu({ prefix: 'ppu-agent-rename', transport: 'agent' }).start();
  });
  afterEach(() => observer?.close());
  after(async () => ppu?.stop());

  const shifts = () => path.join(ppu.ppuRamdisk, '1mf');
  const stored = () => path.join(ppu.storageRoot, 'internal', '1mf');
  /** Files of `run` (SHIFT/RUN/NAME below `root`): by name, where they are. */
  const copiesOf = (root: string, run: string): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    for (const f of listFiles(root)) {
      const [, dir, name] = f.split('/');
      if (name === undefined || (dir !== run && dir !== `${run}_bad`)) continue;
      out.set(name, [...(out.get(name) ?? []), f]);
    }
    return out;
  };

  /** Waits until `count` gives the same value three looks in a row (a process stopped, what it sent handled). */
  const settled = async (count: () => number): Promise<void> => {
    let last = -1;
    let same = 0;
    await eventually(() => {
      const now = count();
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= 3;
    }, 20_000, 'the detector to settle');
  };

  /**
   * A run directory appears whole on the detector; once furkad has placed some of it, furkad is stopped (SIGSTOP)
   * with files placed whose acknowledgement it has not sent, the directory is renamed, and the agent announces
   * them under the new name; then furkad goes on. `restart`: furkad is killed instead, and started again after
   * the rename; or the agent is killed before the rename and started again after it. Without a moment caught so
   * (all acknowledged already), the run completes and another is tried.
   */
  async function renameWhilePlaced(opts: { uid: number; restart?: 'furkad' | 'agent'; rewrite: boolean }): Promise<{ run: string; files: WrittenFile[]; pending: string[]; rewritten?: Buffer }> {
    await ppu.startShift(opts.uid, opts.uid + 1);
    const detector = ppu.detectorRamdisks['1MF']!;
    for (let attempt = 1; attempt <= TRIES; attempt++) {
      const run = `scan_${opts.uid}_${attempt}`;
      const build = path.join(ppu.work, 'build', run);
      const files = Array.from({ length: FILES }, (_, i) => writeImage(build, `f${String(i).padStart(3, '0')}.img`, SIZE));
      renameSync(build, path.join(detector, run));
      await eventually(() => (copiesOf(shifts(), run).size >= 20), 60_000, `furkad to place the first files of ${run}`);
      const furkad = ppu.furkad!.proc.child.pid!;
      process.kill(furkad, 'SIGSTOP');
      let pending: string[] = [];
      let rewritten: Buffer | undefined;
      let stopped = true;
      try {
        // Acknowledgements already on their way are answered (their sources deleted); furkad sends no more.
        await settled(() => listFiles(path.join(detector, run)).length);
        const sources = new Set(listFiles(path.join(detector, run)));
        pending = [...copiesOf(shifts(), run).keys()].filter((name) => sources.has(name));
        // Two at least: one of them may be rewritten, which is then delivered a second time, as a new file.
        if (pending.length >= 2) {
          if (opts.restart === 'furkad') {
            await ppu.killFurkad();
            stopped = false;
          }
          if (opts.restart === 'agent') await ppu.killAgent('1MF');
          else observer = new AgentClient(ppu.agents['1MF']!);
          renameSync(path.join(detector, run), path.join(detector, `${run}_bad`));
          if (opts.rewrite) rewritten = rewriteKeepingId(path.join(detector, `${run}_bad`, pending[0]!));
          if (opts.restart === 'agent') {
            await ppu.startAgent('1MF');
            observer = new AgentClient(ppu.agents['1MF']!);
          }
          // Only watching: furkad holds the source (A4).
          const events = observer!.events('/', undefined, { observe: true });
          // The agent has read the rename (its answer to the old names' acknowledgements says they moved).
          await events.waitFor((ev) => pending.every((name) => ev.some((e) => e.t === 'file' && e.path === `${run}_bad/${name}`)),
            'the agent to announce the placed files under their new names', 20_000);
        }
      } finally {
        if (stopped) process.kill(furkad, 'SIGCONT');
      }
      if (opts.restart === 'furkad' && !ppu.furkad) await ppu.startFurkad();
      if (pending.length >= 2) return { run, files, pending, ...(rewritten ? { rewritten } : {}) };
      await eventually(() => listFiles(detector).length === 0, 60_000, `${run} delivered`);
    }
    throw new Error(`no run of ${TRIES} was caught with two files placed and not yet acknowledged`);
  }

  /** Writes other bytes into `file` in place, then gives it back its mtime: inode, size and mtime, the agent's id, stay. */
  function rewriteKeepingId(file: string): Buffer {
    const before = statSync(file, { bigint: true });
    const times = `${file}.times`;
    mkdirSync(path.dirname(times), { recursive: true });
    execFileSync('touch', ['-r', file, times]);
    const data = randomBytes(Number(before.size));
    const fd = openSync(file, 'r+');
    try {
      writeSync(fd, data, 0, data.length, 0);
    } finally {
      closeSync(fd);
    }
    execFileSync('touch', ['-m', '-r', times, file]);
    execFileSync('rm', ['-f', times]);
    const after = statSync(file, { bigint: true });
    assert.deepEqual([after.ino, after.size, after.mtimeNs], [before.ino, before.size, before.mtimeNs], 'the same id at the agent');
    return data;
  }

  /** Every file of the run once on the PPU and on the storage, with its bytes; nothing left on the detector. */
  async function placedOnce(run: string, files: WrittenFile[], rewritten?: { name: string; data: Buffer }): Promise<void> {
    await eventually(() => listFiles(ppu.detectorRamdisks['1MF']!).length === 0, 60_000, 'every source deleted once placed');
    await ppu.quiescent(1000, 60_000);
    for (const root of [shifts(), stored()]) {
      const copies = copiesOf(root, run);
      const twice = [...copies].filter(([name, at]) => at.length !== (name === rewritten?.name ? 2 : 1)).map(([, at]) => at.join(' + '));
      assert.deepEqual(twice, [], `each file of the run once in ${root}`);
      for (const f of files) {
        const name = path.basename(f.rel);
        const at = copies.get(name) ?? [];
        assert.ok(at.length > 0, `${name} in ${root}`);
        const sums = at.map((c) => sha256File(readFileSync(path.join(root, c)))).sort();
        const expected = name === rewritten?.name ? [f.sha256, sha256File(rewritten.data)].sort() : [f.sha256];
        assert.deepEqual(sums, expected, `${name}: its bytes${name === rewritten?.name ? ', and those it was rewritten with' : ''}`);
      }
    }
  }

  it('places each file of a directory renamed mid-transfer once, under the name it had when placed; one rewritten after the rename is delivered as new (A4, F1)', async () => {
    const { run, files, pending, rewritten } = await renameWhilePlaced({ uid: 810, rewrite: true });
    await placedOnce(run, files, { name: pending[0]!, data: rewritten! });
    // The rewritten file: its first bytes under the old name (placed before the rename), its new ones under the new.
    const shift = path.join(shifts(), '810_811');
    assert.equal(sha256File(readFileSync(path.join(shift, `${run}_bad`, pending[0]!))), sha256File(rewritten!));
    assert.equal(sha256File(readFileSync(path.join(shift, run, pending[0]!))), files.find((f) => path.basename(f.rel) === pending[0])!.sha256);
    await ppu.furkad!.proc.said(/renamed on the detector after it was placed is not placed again/);
  });

  it('places each file once when furkad is killed with files placed and not acknowledged, and started again after the rename (A4, F6)', async () => {
    const { run, files } = await renameWhilePlaced({ uid: 820, restart: 'furkad', rewrite: false });
    await placedOnce(run, files);
    await ppu.furkad!.proc.said(/renamed on the detector after it was placed is not placed again/);
  });

  it('places each file once when the agent is killed with files placed and not acknowledged, and started again after the rename (A4)', async () => {
    const { run, files } = await renameWhilePlaced({ uid: 830, restart: 'agent', rewrite: false });
    await placedOnce(run, files);
  });
});

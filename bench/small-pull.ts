// The small-file pull over furka-agent alone, repeated on one PPU: files/s and CPU per file of furkad and the
// agent, for before/after comparisons of per-file work (BENCHMARKS.md, session 25). grimseld is stopped
// (SIGSTOP) while furkad pulls, as in the throughput suite's "pull alone", and let go between rounds.
// `node dist/bench/small-pull.js [files] [rounds]`; PPU_CPU_PROF=DIR profiles both daemons (test/fixtures/ppu.ts).
import * as path from 'node:path';
import { licensedPpu } from './licensed-ppu.js';
import { countFinal, moveInto, whenComplete, writeSet } from './file-sets.js';
import { usage } from './proc-usage.js';
import { round } from './latency.js';

const TIMEOUT_MS = 600_000;

/** Resolves once `dir` holds no complete file (the agent deleted every acknowledged source). */
async function whenEmpty(dir: string): Promise<void> {
  const end = performance.now() + TIMEOUT_MS;
  while (countFinal(dir) > 0) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${dir} to be emptied`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const files = Number(process.argv[2] ?? 10_000);
  const rounds = Number(process.argv[3] ?? 3);
  const ppu = await licensedPpu({ prefix: 'bench-pull', ramdiskBytes: 4 * 2 ** 30, detectorRamdiskBytes: 4 * 2 ** 30, transport: 'agent' }).start();
  const shiftDir = path.join(ppu.ppuRamdisk, '1mf', '1000_1000');
  const internal = path.join(ppu.storageRoot, 'internal', '1mf', '1000_1000');
  try {
    const furkad = ppu.furkad!.proc.child.pid!;
    const agent = ppu.agents['1MF']!.proc.child.pid!;
    const grimseld = ppu.grimseld!.proc.child.pid!;
    for (let r = 1; r <= rounds; r++) {
      const set = `set-${r}`;
      const staged = path.join(ppu.detectorsRoot, 'stage', set);
      writeSet(staged, files, 100_000);
      const before = { furkad: usage(furkad).cpuS, agent: usage(agent).cpuS };
      process.kill(grimseld, 'SIGSTOP');
      console.error(`pulling round ${r}: furkad ${furkad}, agent ${agent}`);
      let t0: number;
      let t1: number;
      try {
        t0 = moveInto(staged, path.join(ppu.detectorRamdisks['1MF']!, set));
        t1 = await whenComplete(path.join(shiftDir, set), files, TIMEOUT_MS, 'furkad to pull the set');
        // Acknowledged and deleted on the detector too: the agent's part of each file is over.
        await whenEmpty(path.join(ppu.detectorRamdisks['1MF']!, set));
      } finally {
        process.kill(grimseld, 'SIGCONT');
      }
      const after = { furkad: usage(furkad).cpuS, agent: usage(agent).cpuS };
      const msPerFile = (k: 'furkad' | 'agent'): number => round((after[k] - before[k]) * 1000 / files);
      console.log(JSON.stringify({ round: r, filesPerS: round(files / ((t1 - t0) / 1000)), cpuMsPerFile: { furkad: msPerFile('furkad'), agent: msPerFile('agent') } }));
      await whenComplete(path.join(internal, set), files, TIMEOUT_MS, 'grimseld to catch up');
    }
  } finally {
    await ppu.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

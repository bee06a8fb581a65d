// The cost of checking every copy (I2): grimseld copying a bulk and a small-file set to one storage with
// `verify_copies = yes` (the default: each copy read back) and with `no` (the source hashed as it is read
// instead), the same sets, the two runs' order alternating between rounds. Files are handed over as furkad
// hands them, on the bus with their checksums (bench/grimseld-feed.ts): delivered files, as on a beamline.
// (An operator's file through the FIFO has no checksum until its first read, which then hashes the source
// and, with yes, reads the copy back as well: docs/integrity.md.)
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { licensedPpu } from './licensed-ppu.js';
import { whenComplete, writeSet } from './file-sets.js';
import { feedDelivered } from './grimseld-feed.js';
import { checksumOfFile, tagged } from '../src/common/checksum.js';
import { median, ratio } from './stats.js';
import { MB, round } from './latency.js';
import { COPY_PARALLELISM } from './suite-throughput.js';
import type { Mode } from './modes.js';

const TIMEOUT_MS = 600_000;

interface Rates {
  bulkMBps: number;
  smallFilesPerS: number;
}

export interface VerifyRound {
  yes: Rates;
  no: Rates;
}

export interface VerifyResult {
  bulk: { files: number; fileMB: number };
  small: { files: number; fileKB: number };
  copyParallelism: number;
  rounds: VerifyRound[];
  median: VerifyRound;
  /**
   * verify_copies = yes over no, the median of each round's ratio (the two runs of a round follow each other,
   * so a machine that gets busier or quieter between rounds moves both): the target is >= 0.9.
   */
  ratios: { bulk: number; small: number };
}

/** grimseld alone copying both sets from its ramdisk to one storage, with verify_copies as given. */
async function copyRates(mode: Mode, verify: boolean, bulkCount: number): Promise<Rates> {
  const ppu = licensedPpu({
    prefix: `bench-verify-${verify ? 'yes' : 'no'}`, ramdiskBytes: mode.ramdiskBytes,
    grimseld: { verify_copies: verify ? 'yes' : 'no' },
  });
  ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target: path.join(ppu.storageRoot, 'internal'), n_copy_processes: COPY_PARALLELISM } };
  await ppu.start();
  try {
    const internal = path.join(ppu.storageRoot, 'internal');
    const bulk = writeSet(path.join(ppu.ppuRamdisk, 'bulk'), bulkCount, 6 * MB);
    const small = writeSet(path.join(ppu.ppuRamdisk, 'small'), mode.smallFiles, 100_000);
    execFileSync('sync');
    const b0 = await feedDelivered(ppu, 'bulk', bulk.names, tagged(await checksumOfFile(path.join(ppu.ppuRamdisk, 'bulk', bulk.names[0]!))));
    const b1 = await whenComplete(path.join(internal, 'bulk'), bulkCount, TIMEOUT_MS, `grimseld (verify_copies = ${verify}) to copy the bulk set`);
    execFileSync('sync');
    const s0 = await feedDelivered(ppu, 'small', small.names, tagged(await checksumOfFile(path.join(ppu.ppuRamdisk, 'small', small.names[0]!))));
    const s1 = await whenComplete(path.join(internal, 'small'), mode.smallFiles, TIMEOUT_MS, `grimseld (verify_copies = ${verify}) to copy the small set`);
    return { bulkMBps: round(bulk.bytes / MB / ((b1 - b0) / 1000)), smallFilesPerS: round(mode.smallFiles / ((s1 - s0) / 1000)) };
  } finally {
    await ppu.stop();
  }
}

export async function verifySuite(mode: Mode): Promise<VerifyResult> {
  const bulkCount = Math.max(1, Math.round(mode.bulkBytes / (6 * MB)));
  const rounds: VerifyRound[] = [];
  for (let r = 0; r < Math.max(4, mode.repeats); r++) {
    // Which goes first alternates, so that neither always meets a warmer (or busier) machine.
    const first = r % 2 === 0;
    const a = await copyRates(mode, first, bulkCount);
    const b = await copyRates(mode, !first, bulkCount);
    rounds.push(first ? { yes: a, no: b } : { yes: b, no: a });
    console.error(`  round ${r + 1}: ${JSON.stringify(rounds[r])}`);
  }
  const m = (v: 'yes' | 'no', k: keyof Rates): number => median(rounds.map((x) => x[v][k]));
  const med: VerifyRound = {
    yes: { bulkMBps: m('yes', 'bulkMBps'), smallFilesPerS: m('yes', 'smallFilesPerS') },
    no: { bulkMBps: m('no', 'bulkMBps'), smallFilesPerS: m('no', 'smallFilesPerS') },
  };
  return {
    bulk: { files: bulkCount, fileMB: 6 }, small: { files: mode.smallFiles, fileKB: 100 }, copyParallelism: COPY_PARALLELISM, rounds, median: med,
    ratios: {
      bulk: median(rounds.map((x) => ratio(x.yes.bulkMBps, x.no.bulkMBps))),
      small: median(rounds.map((x) => ratio(x.yes.smallFilesPerS, x.no.smallFilesPerS))),
    },
  };
}

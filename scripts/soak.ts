// `npm run soak`: the reliability soak (test/soak/soak.ts) from the command line: restarts as they happen,
// then the table and the verdict; exit 0 on a pass, 1 on any loss, duplicate, leftover, count or a resume over the limit.
import { parseArgs } from 'node:util';
import { formatReport, runSoak, SOAK_DEFAULTS } from '../test/soak/soak.js';

const USAGE = `usage: npm run soak -- [--kills N] [--seed N] [--rate HZ] [--keep]
  --kills N   restarts, the four daemons in turn (default ${SOAK_DEFAULTS.kills})
  --seed N    seed of the random moments, sizes and order (default ${SOAK_DEFAULTS.seed})
  --rate HZ   files per second per detector (default ${SOAK_DEFAULTS.rateHz})
  --keep      keep the work directory (logs, storages) also when the soak passes
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string' },
      seed: { type: 'string' },
      rate: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const num = (name: string, v: string | undefined, dflt: number, min: number): number => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(n) || n < min) {
      process.stderr.write(`soak: --${name} must be a number >= ${min}, got '${v}'\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const kills = Math.round(num('kills', values.kills, SOAK_DEFAULTS.kills, 1));
  const seed = Math.round(num('seed', values.seed, SOAK_DEFAULTS.seed, 0));
  const rateHz = num('rate', values.rate, SOAK_DEFAULTS.rateHz, 0.1);
  if (process.getuid?.() !== 0) {
    process.stderr.write('soak: run as root: furkad sets file ownership for the shift\n');
    return 2;
  }
  const report = await runSoak({ kills, seed, rateHz, keepFiles: values.keep === true, log: (l) => process.stdout.write(`${l}\n`) });
  process.stdout.write(`\n${formatReport(report)}\n`);
  return report.failures.length === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e: Error & { work?: string }) => {
  process.stderr.write(`soak: ${e.stack ?? String(e)}\n${e.work ? `work directory kept: ${e.work}\n` : ''}`);
  process.exit(1);
});

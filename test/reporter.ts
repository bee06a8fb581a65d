// Mocha's spec reporter plus a closing line CI can read ("<tier>: N passed, N failed, N skipped"),
// also appended to $TEST_SUMMARY_FILE so scripts/test.sh can add the tiers up.
import { appendFileSync } from 'node:fs';
import Mocha from 'mocha';

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SummaryReporter extends Spec {
  constructor(runner: Mocha.Runner, options: Mocha.MochaOptions) {
    super(runner, options);
    const tier = process.env['TEST_TIER'] ?? 'tests';
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      // Run after Spec's epilogue so this is the last line.
      process.nextTick(() => {
        process.stdout.write(`${tier}: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
        const file = process.env['TEST_SUMMARY_FILE'];
        if (file) appendFileSync(file, `${JSON.stringify({ tier, passed: s.passes, failed: s.failures, skipped: s.pending })}\n`);
      });
    });
  }
}

export = SummaryReporter;

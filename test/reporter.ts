// Mocha's spec reporter plus a closing line CI can read ("<tier>: N passed, N failed, N skipped"),
// also appended to $TEST_SUMMARY_FILE so scripts/test.sh can add the tiers up.
import { appendFileSync } from 'node:fs';
import Mocha from 'mocha';

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END, EVENT_TEST_FAIL } = Mocha.Runner.constants;

class SummaryReporter extends Spec {
  constructor(runner: Mocha.Runner, options: Mocha.MochaOptions) {
    super(runner, options);
    const tier = process.env['TEST_TIER'] ?? 'tests';
    // What failed, named again at the very end of a CI log: only its tail may be kept.
    const failures: string[] = [];
    runner.on(EVENT_TEST_FAIL, (test: Mocha.Test, err: Error) => {
      const first = String(err?.message ?? err).split('\n')[0]!.slice(0, 300);
      failures.push(`${test.fullTitle()}: ${first}`);
    });
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      // Run after Spec's epilogue so this is the last line.
      process.nextTick(() => {
        process.stdout.write(`${tier}: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
        const file = process.env['TEST_SUMMARY_FILE'];
        if (file) appendFileSync(file, `${JSON.stringify({ tier, passed: s.passes, failed: s.failures, skipped: s.pending, failures })}\n`);
      });
    });
  }
}

export = SummaryReporter;

// `npm run demo` with options it does not know: bad usage said in one line and the usage, exit 2, never a stack
// trace (found by tester fx1: `npm run demo -- --bogus` printed ERR_PARSE_ARGS_UNKNOWN_OPTION's stack).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const DEMO = path.resolve(__dirname, '../../scripts/demo.js');

describe('demo arguments', () => {
  for (const [args, reason] of [[['--bogus'], "Unknown option '--bogus'"], [['stray'], "Unexpected argument 'stray'"],
    [['--rate'], "Option '--rate <value>' argument missing"]] as const) {
    it(`${args.join(' ')}: the reason and the usage line, exit 2`, () => {
      const r = spawnSync(process.execPath, [DEMO, ...args], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.ok(r.stderr.startsWith(`demo: ${reason}`), r.stderr);
      assert.match(r.stderr, /\nusage: npm run demo -- \[--rate HZ\]/);
      assert.doesNotMatch(r.stderr, /^\s+at |ERR_PARSE_ARGS/m, 'no stack trace');
      assert.equal(r.stdout, '');
    });
  }
});

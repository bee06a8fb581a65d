// Log lines and the journal (S4): under systemd, with stdout the journal's stream, each line carries its
// priority, so `journalctl -p err` finds the errors (found by a hostile tester: every line was stored as info).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const LOGGER = path.resolve(__dirname, '../../src/common/logger.js');

/** What a daemon's logger writes to its stdout (a pipe here), told that stdout is (or is not) the journal's stream. */
function logged(asJournal: boolean): string[] {
  const script = `
    const { fstatSync } = require('node:fs');
    const st = fstatSync(1);
    if (${asJournal}) process.env.JOURNAL_STREAM = st.dev + ':' + st.ino;
    else process.env.JOURNAL_STREAM = '1:2';  // another stream: stdout redirected elsewhere
    const log = require(${JSON.stringify(LOGGER)}).createLogger('t');
    log.fatal('f'); log.error('e'); log.warn('w'); log.info('i'); log.debug('d');
    setTimeout(() => {}, 100);`;
  return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'debug' } }).trim().split('\n');
}

describe('log lines in the journal (S4)', () => {
  it('prefix each line with its syslog priority when stdout is the journal', () => {
    assert.deepEqual(logged(true).map((l) => l.slice(0, 3)), ['<2>', '<3>', '<4>', '<6>', '<7>']);
    assert.equal(JSON.parse(logged(true)[1]!.slice(3)).msg, 'e', 'the rest of the line is the JSON as before');
  });

  it('write plain JSON lines anywhere else (a terminal, a pipe, a file)', () => {
    assert.deepEqual(logged(false).map((l) => (JSON.parse(l) as { msg: string }).msg), ['f', 'e', 'w', 'i', 'd']);
  });
});

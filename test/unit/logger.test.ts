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

  it('write a configuration error to the journal as errors, one per line, and plainly elsewhere (S3, S4)', () => {
    const CONFIG = path.resolve(__dirname, '../../src/common/config-file.js');
    const failed = (asJournal: boolean): string[] => {
      const script = `
        const { fstatSync } = require('node:fs');
        const st = fstatSync(2);
        process.env.JOURNAL_STREAM = ${asJournal} ? st.dev + ':' + st.ino : '1:2';
        const { configOrExit, ConfigError } = require(${JSON.stringify(CONFIG)});
        configOrExit('furkad', () => { throw new ConfigError('/etc/ppu/furkad.conf', ['section [detector.1MF], key \\'remoteIp\\': unknown key']); });`;
      try {
        execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (e) {
        const err = e as { status: number; stderr: string };
        assert.equal(err.status, 78);
        return err.stderr.trim().split('\n');
      }
      throw new Error('no exit 78');
    };
    assert.deepEqual(failed(true), ['<3>furkad: /etc/ppu/furkad.conf: invalid configuration:', "<3>  section [detector.1MF], key 'remoteIp': unknown key"]);
    assert.deepEqual(failed(false), ['furkad: /etc/ppu/furkad.conf: invalid configuration:', "  section [detector.1MF], key 'remoteIp': unknown key"]);
  });
});

// Log lines and the journal (S4): under systemd, with stdout the journal's stream, each line carries its
// priority, so `journalctl -p err` finds the errors (found by a hostile tester: every line was stored as info).
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { RotatingLog } from '../../src/common/log-rotation.js';
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

describe('log file (S4)', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(tmpdir(), 'logfile-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('goes on with the numbering of its own files only, and keeps the newest logfile_max_number, those of earlier runs too', async () => {
    for (const n of [1, 2, 3]) writeFileSync(path.join(dir, `furkad.log.${n}`), 'x'.repeat(100));
    writeFileSync(path.join(dir, 'grimseld.log.9'), 'another daemon in the same directory\n');
    const log = new RotatingLog({ logfile: path.join(dir, 'furkad.log'), logfile_max_size: 100, logfile_max_number: 2 });
    assert.equal(log.current, path.join(dir, 'furkad.log.4'), 'furkad.log.3 is full: the next one, not grimseld.log.9 + 1');
    assert.ok(log.write(`${'y'.repeat(120)}\n`));
    await log.idle();
    log.close();
    assert.deepEqual(readdirSync(dir).sort(), ['furkad.log.4', 'furkad.log.5', 'grimseld.log.9']);
  });

  it('writes every line in order across its rotations, none split between two files', async () => {
    const log = new RotatingLog({ logfile: path.join(dir, 'grimseld.log'), logfile_max_size: 100, logfile_max_number: 3 });
    for (let i = 0; i < 50; i++) log.write(`line ${String(i).padStart(2, '0')} ${'x'.repeat(20)}\n`);
    await log.idle();
    log.close();
    const files = readdirSync(dir).sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
    assert.equal(files.length, 3, files.join(' '));
    const lines = files.flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean));
    assert.ok(lines.every((l) => /^line \d\d x{20}$/.test(l)), 'whole lines only');
    assert.deepEqual(lines.map((l) => Number(l.slice(5, 7))), lines.map((_, i) => 50 - lines.length + i), 'the newest, in order');
  });

  it('that cannot be written any more never ends the daemon: its lines go to stderr, said there once (S3, S4)', () => {
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    symlinkSync('/dev/full', path.join(dir, 'furkad.log.1'));
    const script = `
      const log = require(${JSON.stringify(LOGGER)}).createLogger('furkad', { logfile: ${JSON.stringify(path.join(dir, 'furkad.log'))} });
      log.info('first'); log.warn('second');
      setTimeout(() => { log.info('third'); process.stdout.write('still running\\n'); }, 50);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, JOURNAL_STREAM: '' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'still running\n');
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number });
    assert.equal(lines.length, 4, r.stderr);
    assert.match(lines[0]!.msg, /^logfile .*furkad\.log: cannot write .*furkad\.log\.1 \(ENOSPC: no space left on device, write\): logging to the journal \(stderr\) instead until furkad restarts$/);
    assert.equal(lines[0]!.level, 40);
    assert.deepEqual(lines.slice(1).map((l) => l.msg), ['first', 'second', 'third']);
  });
});

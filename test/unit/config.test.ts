// S3: INI configs validated against one JSON Schema per daemon; errors name file, section, key, problem.
import { strict as assert } from 'node:assert';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, parseConfig } from '../../src/common/config-file.js';
import { checkFurkadConfig, checkFurkadTargets, checkKeyFiles, loadFurkadConfig, usrdirNote, validateFurkadConfig, type FurkadConfig } from '../../src/furkad/config.js';
import { keyFileOutcome } from '../../src/furkad/ppu-side.js';
import { authAdvice, rsyncLogin } from '../../src/furkad/rsync-auth.js';
import { grimseldValidator, parseGrimseldConfigObject, type GrimseldConfig } from '../../src/grimseld/config.js';

const ETC = path.resolve(__dirname, '../../../etc/ppu');

function furkad(text: string): FurkadConfig {
  return checkFurkadConfig('/etc/ppu/furkad.conf', parseConfig('/etc/ppu/furkad.conf', text, validateFurkadConfig));
}
function grimseld(text: string): GrimseldConfig {
  return parseGrimseldConfigObject('/etc/ppu/grimseld.conf', parseConfig('/etc/ppu/grimseld.conf', text, grimseldValidator()));
}
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.match(e.message, /^\/etc\/ppu\/(furkad|grimseld)\.conf: /, 'message starts with the file');
    return e.problems;
  }
  assert.fail('configuration was accepted');
}

const DET = '[detector.1MF]\nremoteIP = 10.10.10.11\ntarget = /ramdisk/./1mf\n';

describe('furkad.conf schema (S3)', () => {
  it('accepts the shipped example and fills in the documented defaults', () => {
    const c = furkad(readFileSync(path.join(ETC, 'furkad.conf'), 'utf8'));
    const d = c.detector['1MF']!;
    assert.equal(d.transport, 'agent', 'the shipped example streams from furka-agent');
    assert.equal(d.port, 49372);
    assert.equal(d.module, 'ramdisk');
    assert.equal(d.source, '/');
    assert.equal(d.minpause, 0);
    assert.equal(d.interrun_pause, 0);
    assert.equal(d.remove_source, true);
    assert.equal(c.usrdir, '$UID_$GID');
    assert.equal(c.licensekey, '/var/lib/furka/license.key');
  });

  it('reads the S3 example with inline comments, numbers and several detectors', () => {
    const c = furkad(`uid = 500\ngid = 500\nusrdir = $UID_$GID\n${DET}port = 49371 ; rsync daemon port\nmodule = ramdisk ; module\nminpause = 20\ninterrun_pause = 500\nremove_source = no\n` +
      '[detector.2MF]\nremoteIP = 10.10.10.12\ntarget = /ramdisk/2mf\n');
    assert.equal(c.uid, 500);
    assert.equal(c.detector['1MF']!.interrun_pause, 500);
    assert.equal(c.detector['1MF']!.remove_source, false);
    assert.equal(c.detector['1MF']!.module, 'ramdisk');
    assert.deepEqual(Object.keys(c.detector), ['1MF', '2MF']);
  });

  // Before, each of these passed the check and the start, and the detector stayed `retrying` for ever ("Invalid URL").
  it("refuses a remoteIP that is neither an address nor a host name, naming the key (S3, F10)", () => {
    const det = (ip: string, transport = 'rsync'): string => `[detector.1MF]\ntransport = ${transport}\nremoteIP = ${ip}\ntarget = /ramdisk/./1mf\n`;
    assert.deepEqual(problems(() => furkad(det('[::1]', 'agent'))),
      ["section [detector.1MF], key 'remoteIP': '[::1]': write an IPv6 address without brackets (::1); the port goes in key 'port'"]);
    assert.match(problems(() => furkad(det('[fd00::11]')))[0]!, /key 'remoteIP': '\[fd00::11\]': write an IPv6 address without brackets \(fd00::11\)/);
    assert.match(problems(() => furkad(det('10.10.10.11:49372')))[0]!, /key 'remoteIP': '10\.10\.10\.11:49372' is neither an IP address nor a host name/);
    assert.match(problems(() => furkad(det('rsync://det1')))[0]!, /key 'remoteIP': 'rsync:\/\/det1' is neither/);
    assert.match(problems(() => furkad(det('10.10.10.256')))[0]!, /key 'remoteIP': '10\.10\.10\.256' is not an IPv4 address/);
    assert.match(problems(() => furkad(det('fe80::1%eth0', 'agent')))[0]!, /key 'remoteIP': 'fe80::1%eth0': an IPv6 address with a zone \(%eth0\) cannot be used with transport = agent/);
    for (const ok of ['10.10.10.11', '::1', 'fd00::11', 'det1', 'det-1.beamline.example', 'det_1.local.', '::ffff:10.0.0.1']) {
      assert.equal(furkad(det(ok, 'agent')).detector['1MF']!.remoteIP, ok);
    }
  });

  it("notes a usrdir that is the same for every shift, where the next shift's user reaches the last one's files (F4; hostile tester h12)", () => {
    const det = '[detector.1MF]\nremoteIP = 127.0.0.1\ntarget = /ramdisk/./1mf\n';
    assert.equal(usrdirNote(furkad(det)), undefined, 'the default, $UID_$GID');
    assert.equal(usrdirNote(furkad(`usrdir = users/$GID\n${det}`)), undefined);
    assert.equal(usrdirNote(furkad(`usrdir = \n${det}`)), undefined, 'empty: documented on its own');
    assert.match(usrdirNote(furkad(`usrdir = shared\n${det}`))!, /^usrdir 'shared' is the same directory for every shift: each new shift's user is given it/);
    assert.match(usrdirNote(furkad(`usrdir = u_$uid\n${det}`))!, /\(\$UID and \$GID are expanded in capitals only\)/);
  });

  it('says a top-level key written below a section header goes before the first section (hostile tester h12)', () => {
    assert.deepEqual(problems(() => furkad('[detector.1MF]\nremoteIP = 127.0.0.1\ntarget = /ramdisk/./1mf\nusrdir = x$UID\n')),
      ["section [detector.1MF], key 'usrdir': not a key of a section: 'usrdir' is a top-level key, so it goes before the first [section]"]);
    assert.match(problems(() => furkad('[detector.1MF]\nremoteIP = 127.0.0.1\ntarget = /ramdisk/./1mf\nusrdri = x\n'))[0]!, /key 'usrdri': unknown key/);
  });

  it('names an unknown top-level key', () => {
    assert.deepEqual(problems(() => furkad(`usrdirr = x\n${DET}`)),
      ["top level (before any section), key 'usrdirr': unknown key (if this is not a typo, it is not supported here)"]);
  });

  it('names an unknown key inside a detector section', () => {
    assert.deepEqual(problems(() => furkad(`${DET}remoteIp = 1.2.3.4\n`)),
      ["section [detector.1MF], key 'remoteIp': unknown key (if this is not a typo, it is not supported here)"]);
  });

  it('refuses at the check what furkad would refuse at its start: a root shift without allow_root_shift (S3)', () => {
    assert.deepEqual(problems(() => furkad(`uid = 0\n${DET}`)),
      ["top level (before any section), key 'uid': 0 makes the shift furkad starts at each start root's, refused unless allow_root_shift = yes"]);
    assert.match(problems(() => furkad(`gid = 0\n${DET}`))[0]!, /key 'gid'/);
    assert.equal(furkad(`uid = 0\ngid = 0\nallow_root_shift = yes\n${DET}`).uid, 0);
  });

  it("refuses a target replicated from '/' (its './' right after '/', or '/' itself): StartShift would be confined to nothing (S2, F6)", () => {
    for (const t of ['/./ramdisk/1mf', '//./ramdisk/1mf', '/.//x', '/.', '/./', '/', '//']) {
      assert.deepEqual(problems(() => furkad(`[detector.1MF]\nremoteIP = 10.10.10.11\ntarget = ${t}\n`)),
        [`section [detector.1MF], key 'target': '${t}' is replicated from / (the part before its './', or without one its parent), ` +
          "and StartShift targets are confined to that directory: an operator could have root place this detector's files anywhere " +
          "(/etc); put the './' after a directory other than / (e.g. /ramdisk/./1mf)"], t);
    }
    for (const t of ['/ramdisk', '/ramdisk/1mf', '/ramdisk/.', '/ramdisk/./1mf', '/x/./.']) {
      assert.equal(furkad(`[detector.1MF]\nremoteIP = 10.10.10.11\ntarget = ${t}\n`).detector['1MF']!.target, t);
    }
  });

  it("refuses at start a target whose directory before './' is a link to '/' (S2, F6)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'conf-targets-'));
    try {
      symlinkSync('/', path.join(dir, 'toroot'));
      mkdirSync(path.join(dir, 'ramdisk'));
      const c = furkad(`[detector.1MF]\nremoteIP = a\ntarget = ${dir}/toroot/./1mf\n[detector.2MF]\nremoteIP = b\ntarget = ${dir}/ramdisk/./2mf\n`);
      assert.deepEqual(problems(() => checkFurkadTargets('/etc/ppu/furkad.conf', c)),
        [`section [detector.1MF], key 'target': '${dir}/toroot/./1mf' is replicated from ${dir}/toroot, which leads to / (a symbolic link), ` +
          "and StartShift targets are confined to that directory: an operator could have root place this detector's files anywhere (/etc); " +
          "name the real directory, with the './' after a directory other than /"]);
      delete c.detector['1MF'];
      assert.doesNotThrow(() => checkFurkadTargets('/etc/ppu/furkad.conf', c));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a control character in a path: files below it would never be copied (F1, G2)', () => {
    assert.match(problems(() => furkad('[detector.1MF]\nremoteIP = 10.10.10.11\ntarget = /ramdisk/./1mf\u0001x\n'))[0]!,
      /section \[detector\.1MF\], key 'target': must be an absolute path without '\.\.' or control characters/);
  });

  it('names an unknown section as written, not by the object ini nested it in', () => {
    assert.match(problems(() => furkad(`${DET}[detectors.X]\nremoteIP = a\n`))[0]!, /^section \[detectors\.X\]: unknown section/);
    // A grimseld section in furkad.conf: the one the administrator wrote, each of them, and a plain one as it is.
    assert.deepEqual(problems(() => furkad(`${DET}[storage.extra]\ntype = OPTIONAL\n[storage.more]\n[extra]\nx = 1\n`)).map((p) => p.split(':')[0]),
      ['section [extra]', 'section [storage.extra]', 'section [storage.more]']);
  });

  it('names a wrong type with the value the file had', () => {
    assert.deepEqual(problems(() => furkad(`${DET}minpause = ten\n`)),
      ["section [detector.1MF], key 'minpause': must be integer, got 'ten'"]);
  });

  it('names a boolean that is not yes or no', () => {
    assert.deepEqual(problems(() => furkad(`${DET}remove_source = maybe\n`)),
      ["section [detector.1MF], key 'remove_source': must be yes or no, got 'maybe'"]);
  });

  it("takes an rsync detector's login (rsync_user, rsync_password_file), refuses it for the agent and an unusable password file by name (F1, S6)", () => {
    const d = furkad(`${DET}rsync_user = beamline_7\nrsync_password_file = /etc/ppu/det1.key\n`).detector['1MF']!;
    assert.deepEqual([d.rsync_user, d.rsync_password_file], ['beamline_7', '/etc/ppu/det1.key']);
    assert.match(problems(() => furkad(`${DET}rsync_user = me@host\n`))[0]!, /section \[detector\.1MF\], key 'rsync_user': /);
    assert.deepEqual(problems(() => furkad(`${DET}transport = agent\nrsync_user = furkad\nrsync_password_file = /k\n`)), [
      "section [detector.1MF], key 'rsync_user': is for transport = rsync; with transport = agent leave it out",
      "section [detector.1MF], key 'rsync_password_file': is for transport = rsync; with transport = agent leave it out",
    ]);
    // On the machine (--check, and each run): a file named must exist; one others can read is refused.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rsync-login-'));
    try {
      const open = path.join(dir, 'open.key');
      writeFileSync(open, 'a1b2c3d4e5f60718293a4b5c6d7e8f90', { mode: 0o644 });
      chmodSync(open, 0o644);
      const conf = (file: string): FurkadConfig => furkad(`${DET}rsync_password_file = ${file}\n`);
      const check = (file: string): string[] => problems(() => checkKeyFiles('/etc/ppu/furkad.conf', conf(file)));
      assert.match(check(path.join(dir, 'none.key'))[0]!, /^section \[detector\.1MF\], key 'rsync_password_file': \S+none\.key does not exist; copy the detector server's key \(\/etc\/ppu\/furka-agent\.key there\)/);
      assert.match(check(open)[0]!, /^section \[detector\.1MF\], key 'rsync_password_file': \S+open\.key is open to group or others \(mode 0644\)/);
      // A run: the Detectors reason names the config key, and the file is the PPU's side, not the detector's (F10).
      const run = (() => { try { rsyncLogin({ rsync_password_file: open }); return undefined; } catch (e) { return keyFileOutcome('rsync_password_file', e); } })();
      assert.match(run!.message, /^rsync_password_file: \S+open\.key is open to group or others/);
      assert.equal(run!.ppu, open);
      assert.deepEqual(keyFileOutcome('agent_key_file', new Error('connect ECONNREFUSED')), { message: 'connect ECONNREFUSED' });
      chmodSync(open, 0o600);
      checkKeyFiles('/etc/ppu/furkad.conf', conf(open));
      assert.deepEqual(rsyncLogin({ rsync_password_file: open }), { user: 'furkad', password: 'a1b2c3d4e5f60718293a4b5c6d7e8f90', file: open, missing: false });
      // The daemon's refusal, explained: whose password, from which file, and where it must come from.
      const refused = '@ERROR: auth failed on module ramdisk\nrsync error: error starting client-server protocol (code 5) at main.c(1954)\n';
      assert.match(authAdvice(refused, { user: 'furkad', password: '', file: '/etc/ppu/furka-agent.key', missing: true })!,
        /asks for a password for module ramdisk and refused furkad's: furkad had no password to give: \/etc\/ppu\/furka-agent\.key \(rsync_password_file\) does not exist; copy the detector server's key/);
      assert.match(authAdvice(refused, rsyncLogin({ rsync_password_file: open }))!, /the password in \S+open\.key \(rsync_password_file\) is not the daemon's for user 'furkad'/);
      assert.equal(authAdvice('@ERROR: Unknown module ramdisk\n', rsyncLogin({ rsync_password_file: open })), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes settle_ms (default 2000, the safe one; 0 without remove_source) and refuses it with remove_source = no, naming both keys (F2)', () => {
    assert.equal(furkad(DET).detector['1MF']!.settle_ms, 2000);
    assert.equal(furkad(`${DET}remove_source = no\n`).detector['1MF']!.settle_ms, 0, 'nothing is removed, nothing waits');
    assert.equal(furkad(`${DET}settle_ms = 0\n`).detector['1MF']!.settle_ms, 0, 'a renaming writer trades the wait back');
    assert.equal(furkad(`${DET}settle_ms = 1500\n`).detector['1MF']!.settle_ms, 1500);
    assert.deepEqual(problems(() => furkad(`${DET}settle_ms = 500\nremove_source = no\n`)),
      ["section [detector.1MF], key 'settle_ms': needs remove_source = yes (files are settled in staging before their " +
       'source is removed), got settle_ms = 500 with remove_source = no']);
  });

  it('takes transport = agent with its own defaults (port 49372, minpause 0, nothing to settle) and refuses rsync-only keys by name (A1, A3)', () => {
    const agent = furkad(`${DET}transport = agent\n`).detector['1MF']!;
    assert.deepEqual([agent.transport, agent.port, agent.minpause, agent.settle_ms, agent.remove_source], ['agent', 49372, 0, 0, true]);
    const rsync = furkad(DET).detector['1MF']!;
    assert.deepEqual([rsync.transport, rsync.port, rsync.minpause, rsync.settle_ms], ['rsync', 49371, 10, 2000]);
    assert.equal(furkad(`${DET}transport = agent\nport = 5000\nminpause = 3\n`).detector['1MF']!.port, 5000);
    assert.deepEqual(problems(() => furkad(`${DET}transport = agent\nsettle_ms = 100\nexclude = .*.tmp\nremove_source = no\n`)), [
      "section [detector.1MF], key 'settle_ms': is for transport = rsync; with transport = agent leave it out",
      "section [detector.1MF], key 'exclude': is for transport = rsync; with transport = agent set 'exclude' in the agent's furka-agent.conf",
      "section [detector.1MF], key 'remove_source': transport = agent always removes a source once placed (the agent deletes it on acknowledgement); leave it out or use transport = rsync",
    ]);
    assert.match(problems(() => furkad(`${DET}transport = ftp\n`))[0]!, /key 'transport': must be one of rsync, agent, got 'ftp'/);
    // The agent's key (A1): the shared default path for agent, and refused by name for rsync.
    assert.equal(agent.agent_key_file, '/etc/ppu/furka-agent.key');
    assert.equal(furkad(`${DET}transport = agent\nagent_key_file = /etc/ppu/det1.key\n`).detector['1MF']!.agent_key_file, '/etc/ppu/det1.key');
    assert.deepEqual(problems(() => furkad(`${DET}agent_key_file = /etc/ppu/det1.key\n`)), [
      "section [detector.1MF], key 'agent_key_file': is for transport = agent; with transport = rsync the detector server's key goes in rsync_password_file",
    ]);
  });

  it("refuses '..' in a detector's target and source, which would leave the configured trees", () => {
    assert.deepEqual(problems(() => furkad('[detector.1MF]\nremoteIP = h\ntarget = /ramdisk/../etc/./x\nsource = run/../../other\n')), [
      "section [detector.1MF], key 'source': must be a path without '..' or control characters, got 'run/../../other'",
      "section [detector.1MF], key 'target': must be an absolute path without '..' or control characters (the real path of every directory below it is checked), got '/ramdisk/../etc/./x'",
    ]);
    assert.equal(furkad('[detector.1MF]\nremoteIP = h\ntarget = /ramdisk/./1mf..x\nsource = /run..1\n').detector['1MF']!.source, '/run..1');
  });

  it("refuses '*', '?' and '[' in an rsync detector's source, which the rsync daemon would expand as a pattern (F1, S3)", () => {
    for (const [source, c] of [['/run?', '?'], ['/images/*', '*'], ['/x[1]', '[']]) {
      assert.deepEqual(problems(() => furkad(`[detector.1MF]\nremoteIP = h\ntarget = /ramdisk/./1mf\nsource = ${source}\n`)), [
        `section [detector.1MF], key 'source': '${source}' holds '${c}', which the detector's rsync daemon expands as a pattern ` +
        "('*', '?' and '[' are refused): it would pull every directory that matches, and fail each run; rename the directory on the " +
        'detector server, or use transport = agent']);
    }
    assert.equal(furkad('[detector.1MF]\nremoteIP = h\ntarget = /ramdisk/./1mf\nsource = /run]1\\x\n').detector['1MF']!.source, '/run]1\\x');
    assert.equal(furkad('[detector.1MF]\ntransport = agent\nremoteIP = h\ntarget = /ramdisk/./1mf\nsource = /run?\n').detector['1MF']!.source, '/run?',
      'the agent takes the directory as it is named');
  });

  it('refuses a file that is not UTF-8, naming each line, instead of reading a Latin-1 byte as U+FFFD (S3)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'conf-latin1-'));
    try {
      const file = path.join(dir, 'furkad.conf');
      writeFileSync(file, Buffer.concat([Buffer.from('# Pr\xfcfstand\n[detector.1MF]\nremoteIP = h\nsource = /Bilder', 'latin1'), Buffer.from([0xc4]),
        Buffer.from('\ntarget = /ramdisk/./1mf\n')]));
      assert.throws(() => loadFurkadConfig(file), (e: unknown) => e instanceof ConfigError &&
        JSON.stringify(e.problems) === JSON.stringify(['line 1: not valid UTF-8 (the byte 0xfc); save the file as UTF-8',
          'line 4: not valid UTF-8 (the byte 0xc4); save the file as UTF-8']));
      writeFileSync(file, '# Prüfstand\n[detector.1MF]\nremoteIP = h\nsource = /Bilder\u00c4\ntarget = /ramdisk/./1mf\n');
      assert.equal(loadFurkadConfig(file).detector['1MF']!.source, '/Bilder\u00c4', 'the same in UTF-8 is read');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a relative target and an out-of-range port, reporting both at once', () => {
    const p = problems(() => furkad('[detector.1MF]\nremoteIP = a\ntarget = ramdisk\nport = 70000\n'));
    assert.equal(p.length, 2);
    assert.ok(p.includes("section [detector.1MF], key 'target': must be an absolute path without '..' or control characters (the real path of every directory below it is checked), got 'ramdisk'"));
    assert.ok(p.some((l) => l.startsWith("section [detector.1MF], key 'port': must be <= 65535")));
  });

  it('refuses a missing required key and a file without detectors', () => {
    assert.deepEqual(problems(() => furkad('[detector.1MF]\ntarget = /r\n')),
      ["section [detector.1MF], key 'remoteIP': missing, it is required"]);
    assert.deepEqual(problems(() => furkad('uid = 1\n')), ['no [detector.ID] section: at least one is required']);
  });

  it("refuses a usrdir that would leave the target ('..' or absolute)", () => {
    assert.match(problems(() => furkad(`usrdir = ../$UID\n${DET}`))[0]!, /key 'usrdir': must be a relative path without '\.\.'/);
    assert.match(problems(() => furkad(`usrdir = /abs\n${DET}`))[0]!, /key 'usrdir'/);
    assert.equal(furkad(`usrdir =\n${DET}`).usrdir, '', 'empty usrdir means none');
    // With none, two detectors' targets may not lie one in the other (threat model); with one they may.
    const nested = `[detector.1MF]\nremoteIP = a\ntarget = /ramdisk/./\n[detector.2MF]\nremoteIP = b\ntarget = /ramdisk/./2mf\n`;
    assert.match(problems(() => furkad(`usrdir =\n${nested}`))[0]!, /^section \[detector\.2MF\], key 'target': '\/ramdisk\/\.\/2mf' and \[detector\.1MF\]'s '\/ramdisk\/\.\/' lie one in the other/);
    assert.equal(furkad(`usrdir = $UID\n${nested}`).usrdir, '$UID');
    assert.equal(furkad(`usrdir = users/$UID..x\n${DET}`).usrdir, 'users/$UID..x', "'..' inside a name is fine");
  });
});

describe('what ini would merge or drop, refused by name (S3)', () => {
  const INT = '[storage.internal]\ntype = INTERNAL\ntarget = /data\n';

  it('refuses a pause beyond what a timer can wait, instead of firing after 1 ms', () => {
    const p = problems(() => furkad(`${DET}minpause = 99999999999\ninterrun_pause = 3600001\n`));
    assert.deepEqual(p, ["section [detector.1MF], key 'minpause': must be <= 3600000, got '99999999999'",
      "section [detector.1MF], key 'interrun_pause': must be <= 3600000, got '3600001'"]);
    assert.deepEqual(problems(() => furkad(`rsync_timeout_s = 3601\n${DET}`)),
      ["top level (before any section), key 'rsync_timeout_s': must be <= 3600, got '3601'"]);
    assert.equal(furkad(`${DET}minpause = 3600000\n`).detector['1MF']!.minpause, 3600000);
  });

  it('refuses a key given twice, at the top level and in a section, naming both lines', () => {
    assert.deepEqual(problems(() => furkad(`uid = 500\nuid = 501\n${DET}minpause = 10\n; a comment\nminpause = 20\n`)), [
      "top level (before any section), key 'uid': given twice, at lines 1 and 2 (only one value can count; remove the other)",
      "section [detector.1MF], key 'minpause': given twice, at lines 6 and 8 (only one value can count; remove the other)"]);
  });

  it('refuses a section opened twice, which ini merges (a storage, a detector)', () => {
    assert.deepEqual(problems(() => grimseld(`${INT}[storage.x]\ntype = OPTIONAL\n\n[storage.internal]\nmountpoint = /data\n`)),
      ['section [storage.internal]: opened twice, at lines 1 and 7 (the two would be merged into one; write each section once, with its own ID)']);
    assert.deepEqual(problems(() => furkad(`${DET}[detector.1MF]\nminpause = 5\n`)),
      ['section [detector.1MF]: opened twice, at lines 1 and 4 (the two would be merged into one; write each section once, with its own ID)']);
  });

  it('refuses two of grimseld\'s listeners on one port where their addresses meet, and lets them share it on different ones', () => {
    assert.deepEqual(problems(() => grimseld(`status_port = 47000\nmessage_port = 47000\n${INT}`)),
      ["top level (before any section), key 'message_port': port 47000 is already status_port's on that address; each needs a port of its own"]);
    assert.deepEqual(problems(() => grimseld(`metrics_address = 0.0.0.0\nmetrics_port = 47199\n${INT}`)),
      ["top level (before any section), key 'metrics_port': port 47199 is already status_port's on that address; each needs a port of its own"]);
    grimseld(`status_port = 47000\nmessage_port = 47000\nmessage_address = 10.0.0.1\n${INT}`);
    grimseld(`status_port = 0\nmessage_port = 0\n${INT}`);
  });

  it('names a section whose ID is no word as written, not as the pieces ini splits it into', () => {
    assert.deepEqual(problems(() => grimseld(`${INT}\n[storage.i/../x]\ntype = OPTIONAL\ntarget = /d2\n`)),
      ["section [storage.i/../x] (line 5): the ID 'i/../x' may hold only letters, digits, '_' and '-'"]);
    assert.deepEqual(problems(() => furkad(`${DET}[detector.a.b]\nremoteIP = 1.2.3.4\ntarget = /r\n`)),
      ["section [detector.a.b] (line 4): the ID 'a.b' may hold only letters, digits, '_' and '-'"]);
  });

  it("refuses a '#' or ';' inside a value, which ini would take for a comment and cut the value at, and reads the escaped or quoted one whole", () => {
    assert.deepEqual(problems(() => grimseld(`[storage.internal]\ntype = INTERNAL\ntarget = /data/run#1\n`)),
      ["section [storage.internal], key 'target' (line 3): '#' starts a comment, so the value would be read as '/data/run'; " +
        "if it belongs to the value, write it as '\\#' or quote the whole value; before a comment, put a space"]);
    assert.match(problems(() => furkad(`${DET}source = /d;x\n`))[0]!, /key 'source' \(line 4\): ';' starts a comment, so the value would be read as '\/d'/);
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data/run\\#1\n').storage['internal']!.target, '/data/run#1');
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = "/data/run;1"\n').storage['internal']!.target, '/data/run;1');
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data ; the internal disk\n').storage['internal']!.target, '/data');
  });

  it("refuses '__proto__' as a key or a section instead of dropping it", () => {
    assert.deepEqual(problems(() => furkad(`__proto__ = 1\n${DET}`)),
      ["top level (before any section), key '__proto__' (line 1): the name '__proto__' is reserved and cannot be used"]);
    assert.deepEqual(problems(() => grimseld(`${INT}[storage.__proto__]\ntype = OPTIONAL\ntarget = /d2\n`)),
      ["section [storage.__proto__] (line 4): the name '__proto__' is reserved and cannot be used"]);
  });
});

describe('grimseld.conf schema (S3, G1)', () => {
  const INT = '[storage.internal]\ntype = INTERNAL\ntarget = /data\n';

  it('accepts the shipped example with the documented defaults', () => {
    const c = grimseld(readFileSync(path.join(ETC, 'grimseld.conf'), 'utf8'));
    assert.equal(c.status_port, 47199);
    assert.equal(c.message_port, 47198);
    assert.equal(c.create_links, true);
    assert.equal(c.fillstate_limit, 80);
    assert.equal(c.history_max_entries, 50);
    assert.equal(c.fifo, '/run/grimseld/files');
    assert.equal(c.storage['internal']!.n_copy_processes, 8);
  });

  it('reads yes/no booleans', () => {
    const c = grimseld(`create_links = no\npreserve_uid = no\npreserve_gid = yes\n${INT}`);
    assert.deepEqual([c.create_links, c.preserve_uid, c.preserve_gid], [false, false, true]);
  });

  it('checks every copy by default: verify_copies = yes (shipped commented out), no to skip the read-back, anything else named (I2)', () => {
    assert.equal(grimseld(readFileSync(path.join(ETC, 'grimseld.conf'), 'utf8')).verify_copies, true);
    assert.match(readFileSync(path.join(ETC, 'grimseld.conf'), 'utf8'), /^#verify_copies = yes$/m);
    assert.equal(grimseld(`verify_copies = no\n${INT}`).verify_copies, false);
    const said = problems(() => grimseld(`verify_copies = maybe\n${INT}`));
    assert.equal(said.length, 1);
    assert.match(said[0]!, /key 'verify_copies': must be yes or no, got 'maybe'/);
  });

  it('refuses an unknown storage type, naming the allowed ones', () => {
    assert.deepEqual(problems(() => grimseld('[storage.x]\ntype = USB\ntarget = /d\n')),
      ["section [storage.x], key 'type': must be one of INTERNAL, EXTERNAL, OPTIONAL, got 'USB'"]);
  });

  it('requires exactly one INTERNAL and at most one EXTERNAL storage (G1)', () => {
    assert.match(problems(() => grimseld('[storage.a]\ntype = OPTIONAL\ntarget = /a\n'))[0]!, /exactly one storage must be INTERNAL, found 0/);
    assert.match(problems(() => grimseld(`${INT}[storage.b]\ntype = INTERNAL\ntarget = /b\n`))[0]!, /exactly one storage must be INTERNAL, found 2/);
    assert.match(problems(() => grimseld(`${INT}[storage.e1]\ntype = EXTERNAL\ntarget = /e1\n[storage.e2]\ntype = EXTERNAL\ntarget = /e2\n`))[0]!,
      /at most one storage may be EXTERNAL, found \[storage\.e1\], \[storage\.e2\]/);
  });

  it("refuses a storage target with '..', which would make every copy look unsafe (G3)", () => {
    assert.deepEqual(problems(() => grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data/link/../x\n')),
      ["section [storage.internal], key 'target': must be an absolute path without '..' or control characters (the real path of every directory below it is checked), got '/data/link/../x'"]);
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data/..x/y\n').storage['internal']!.target, '/data/..x/y');
  });

  it('refuses a ramdisk directory that is not on the watched mount, naming both keys (G5, G6)', () => {
    assert.deepEqual(problems(() => grimseld(`ramdisk_mountpoint = /tmp/x/ramdisk\n${INT}`)),
      ["top level (before any section), key 'target': the ramdisk directory must be ramdisk_mountpoint or lie below it, " +
       "got target = '/ramdisk' and ramdisk_mountpoint = '/tmp/x/ramdisk': the fill guard would watch one and clean up the other " +
       '(one of the two keys is wrong)']);
    assert.match(problems(() => grimseld(`target = /ramdisk2\n${INT}`))[0]!, /target = '\/ramdisk2' and ramdisk_mountpoint = '\/ramdisk'/,
      'a sibling with the same prefix is not below it');
    assert.equal(grimseld(`target = /ramdisk/ppu/\n${INT}`).target, '/ramdisk/ppu/', 'a directory below the mount is fine');
    assert.equal(grimseld(`ramdisk_mountpoint = /\n${INT}`).ramdisk_mountpoint, '/', 'so is a ramdisk directory on the root file system');
  });

  it('refuses a storage whose target is not its mountpoint or below it, naming both keys (G13)', () => {
    assert.deepEqual(problems(() => grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /plaindir/store\nmountpoint = /data\n')),
      ["section [storage.internal], key 'target': a storage's target must be its mountpoint or lie below it, got target = '/plaindir/store' " +
       "and mountpoint = '/data': grimseld would check that one is mounted and write to the other (one of the two keys is wrong)"]);
    assert.equal(problems(() => grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data2\nmountpoint = /data\n')).length, 1, 'a sibling with the same prefix');
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data/grimsel\nmountpoint = /data\n').storage['internal']!.mountpoint, '/data');
    assert.equal(grimseld('[storage.internal]\ntype = INTERNAL\ntarget = /data\nmountpoint = /data/\n').storage['internal']!.target, '/data', 'the mount point itself');
    // A target reached through a link to the disk's mount point (/data -> /mnt/raid0): taken as the real paths say (r5).
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mountpoint-link-'));
    try {
      mkdirSync(path.join(dir, 'mnt', 'raid0'), { recursive: true });
      symlinkSync(path.join(dir, 'mnt', 'raid0'), path.join(dir, 'data'));
      const conf = `[storage.internal]\ntype = INTERNAL\ntarget = ${dir}/data/internal\nmountpoint = ${dir}/mnt/raid0\n`;
      assert.equal(grimseld(conf).storage['internal']!.mountpoint, `${dir}/mnt/raid0`);
      assert.equal(problems(() => grimseld(conf.replace('/mnt/raid0', '/mnt/raid1'))).length, 1, 'another disk');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses storages, ramdisk and journal that share a directory tree, naming each pair (G3, G5, G12)', () => {
    const storage = (id: string, type: string, target: string) => `[storage.${id}]\ntype = ${type}\ntarget = ${target}\n`;
    const refusedWith = (text: string): string[] => problems(() => grimseld(text)).map((p) => p.replace(/: the ramdisk, each storage.*$/, ''));
    assert.deepEqual(refusedWith(storage('internal', 'INTERNAL', '/ramdisk')),
      ["section [storage.internal], key 'target': '/ramdisk' is the same directory as key 'target' ('/ramdisk')"], 'the ramdisk as a storage');
    assert.deepEqual(refusedWith(storage('internal', 'INTERNAL', '/ramdisk/copies')),
      ["section [storage.internal], key 'target': '/ramdisk/copies' lies below key 'target' ('/ramdisk')"], 'a storage inside the ramdisk');
    assert.deepEqual(refusedWith(storage('internal', 'INTERNAL', '/')),
      ["section [storage.internal], key 'target': '/' holds key 'target' ('/ramdisk')", "top level (before any section), key 'state_dir': " +
       "'/var/lib/grimsel' lies below section [storage.internal], key 'target' ('/')"], 'storage / holds everything');
    assert.deepEqual(refusedWith(`target = /ramdisk/ppu\n${storage('internal', 'INTERNAL', '/ramdisk/data')}`),
      ["section [storage.internal], key 'target': '/ramdisk/data' lies on the ramdisk, below key 'ramdisk_mountpoint' ('/ramdisk')"]);
    assert.deepEqual(refusedWith(`${storage('internal', 'INTERNAL', '/data')}${storage('x', 'OPTIONAL', '/data/')}`),
      ["section [storage.x], key 'target': '/data/' is the same directory as section [storage.internal], key 'target' ('/data')"], 'two storages, one target');
    assert.deepEqual(refusedWith(`state_dir = /ramdisk/state\n${storage('internal', 'INTERNAL', '/data')}`),
      ["top level (before any section), key 'state_dir': '/ramdisk/state' lies below key 'target' ('/ramdisk')"], 'the journal on the ramdisk');
    assert.equal(Object.keys(grimseld(`${storage('internal', 'INTERNAL', '/data')}${storage('x', 'OPTIONAL', '/data2')}`).storage).length, 2,
      'siblings that share a prefix do not overlap');
  });

  it('refuses a fill-state limit above 100 percent', () => {
    assert.match(problems(() => grimseld(`fillstate_limit = 120\n${INT}`))[0]!, /top level \(before any section\), key 'fillstate_limit': must be <= 100, got '120'/);
  });

  it('takes only IP addresses as listen addresses, naming the key: a name failed the start with exit 1 (S3, G9, G10)', () => {
    const not = (key: string, v: string) => `top level (before any section), key '${key}': '${v}' is not an IP address (the address to listen on: ` +
      "127.0.0.1, ::1, 0.0.0.0 for every IPv4 address, :: for every address, or one of this host's addresses)";
    assert.deepEqual(problems(() => grimseld(`status_address = 256.1.1.1\nmessage_address = localhost\nmetrics_address =\n${INT}`)),
      [not('status_address', '256.1.1.1'), not('message_address', 'localhost'), not('metrics_address', '')]);
    assert.deepEqual(problems(() => furkad(`metrics_address = not-an-ip\n${DET}`)), [not('metrics_address', 'not-an-ip')]);
    const c = grimseld(`status_address = ::1\nmessage_address = 0.0.0.0\nmetrics_address = 10.0.0.1\n${INT}`);
    assert.deepEqual([c.status_address, c.message_address, c.metrics_address], ['::1', '0.0.0.0', '10.0.0.1']);
    assert.equal(furkad(`metrics_address = ::\n${DET}`).metrics_address, '::');
  });

  it("takes only decimal integers in integer keys: not ini's true/false, nor 0x10, 0b11, 1e3, +5, '' (S3, G6)", () => {
    // fillstate_limit = true was read as 1 %: the fill guard linked or deleted at once.
    assert.deepEqual(problems(() => grimseld(`fillstate_limit = true\nstatus_port = 0x10\nhistory_max_entries = +5\n` +
      `temp_max_age_s = 1e3\nlogfile_max_number = 0b11\n[storage.internal]\ntype = INTERNAL\ntarget = /data\nn_copy_processes = true\n`)), [
      "top level (before any section), key 'logfile_max_number': must be integer, got '0b11'",
      "top level (before any section), key 'status_port': must be integer, got '0x10'",
      "top level (before any section), key 'history_max_entries': must be integer, got '+5'",
      "top level (before any section), key 'fillstate_limit': must be integer, got 'true'",
      "top level (before any section), key 'temp_max_age_s': must be integer, got '1e3'",
      "section [storage.internal], key 'n_copy_processes': must be integer, got 'true'",
    ]);
    assert.deepEqual(problems(() => furkad(`uid = false\ngid =\n${DET}minpause = 1.5\n`)), [
      "top level (before any section), key 'uid': must be integer, got 'false'",
      "top level (before any section), key 'gid': must be integer, got ''",
      "section [detector.1MF], key 'minpause': must be integer, got '1.5'",
    ]);
    const c = grimseld(`fillstate_limit = 007\nstatus_port = "47100"\n${INT}n_copy_processes = 12\n`);
    assert.deepEqual([c.fillstate_limit, c.status_port, c.storage['internal']!.n_copy_processes], [7, 47100, 12]);
  });
});

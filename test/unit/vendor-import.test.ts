// S3: the vendor's furka_dectris.conf / grimsel_dectris.conf converted into our INI, nothing silently lost.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, parseConfig } from '../../src/common/config-file.js';
import { validateFurkadConfig, type FurkadConfig } from '../../src/furkad/config.js';
import { grimseldValidator, parseGrimseldConfigObject, type GrimseldConfig } from '../../src/grimseld/config.js';
import { importVendorConfig, vendorKind } from '../../src/ppuctl/vendor-import.js';

const VENDOR = path.resolve(__dirname, '../../../test/fixtures/vendor');
const vendorFile = (name: string): [string, string] => [`/etc/${name}`, readFileSync(path.join(VENDOR, name), 'utf8')];
const keyLines = (text: string): number => text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#')).length;

describe('vendor config import (S3)', () => {
  it('converts a furka_dectris.conf with three detectors: every key mapped, the result valid and equal in meaning', () => {
    const [file, text] = vendorFile('furka_dectris.conf');
    const r = importVendorConfig(file, text);
    assert.deepEqual(r.problems, []);
    assert.equal(r.kind, 'furkad');
    assert.equal(r.mapped, keyLines(text) - 3, 'every line but the three detectorID lines is a key carried over');
    const c = parseConfig<FurkadConfig>('converted', r.ini, validateFurkadConfig);
    assert.deepEqual([c.uid, c.gid, c.usrdir, c.licensekey, c.logfile, c.logfile_max_number, c.logfile_max_size],
      [500, 500, '$UID_$GID', '/var/lib/furka/license.key', '/var/log/ppu/furka_dectris.log', 5, 20971520]);
    assert.deepEqual(Object.keys(c.detector), ['1MF', '2MF', '3MF']);
    assert.deepEqual(c.detector['2MF'], { ...c.detector['2MF'], remoteIP: '10.10.10.12', source: '/', target: '/ramdisk/./2mf', minpause: 20, interrun_pause: 5 });
    assert.equal(c.detector['3MF']!.source, '/images');
    assert.ok(Object.values(c.detector).every((d) => d.transport === 'rsync'), "the vendor's detector servers have the stock rsync daemon");
  });

  it('runs the checks of config check on the result, not the schema alone: uid 0, a target replicated from / (S3, S2)', () => {
    const r = importVendorConfig('/etc/furka_dectris.conf', 'uid 0\ngid 0\ndetectorID 1MF\nremoteIP 10.10.10.11\ntarget /./ramdisk/1mf\n');
    assert.equal(r.mapped, 4);
    assert.deepEqual(r.problems, ['uid', 'gid'].map((k) => `the converted file is not valid: top level (before any section), key '${k}': ` +
      "0 makes the shift furkad starts at each start root's, refused unless allow_root_shift = yes"));
    const t = importVendorConfig('/etc/furka_dectris.conf', 'uid 500\ngid 500\ndetectorID 1MF\nremoteIP 10.10.10.11\ntarget /./ramdisk/1mf\n');
    assert.equal(t.problems.length, 1);
    assert.match(t.problems[0]!, /^the converted file is not valid: section \[detector\.1MF\], key 'target': '\/\.\/ramdisk\/1mf' is replicated from \//);
    const g = importVendorConfig('/etc/grimsel_dectris.conf', 'fillstate_limit true\nstorageID internal\ntype internal\ntarget /data\n');
    assert.deepEqual(g.problems, ["the converted file is not valid: top level (before any section), key 'fillstate_limit': must be integer, got 'true'"]);
  });

  it('converts a grimsel_dectris.conf with three storages, booleans and types normalised', () => {
    const [file, text] = vendorFile('grimsel_dectris.conf');
    const r = importVendorConfig(file, text);
    assert.deepEqual(r.problems, []);
    assert.equal(r.kind, 'grimseld');
    assert.equal(r.mapped, keyLines(text) - 3);
    const c = parseGrimseldConfigObject('converted', parseConfig<GrimseldConfig>('converted', r.ini, grimseldValidator()));
    assert.deepEqual([c.create_links, c.preserve_uid, c.preserve_gid], [true, true, false]);
    assert.deepEqual([c.target, c.ramdisk_mountpoint, c.status_port, c.message_port, c.history_max_entries, c.fillstate_limit],
      ['/ramdisk', '/ramdisk', 47199, 47198, 100, 75]);
    assert.deepEqual(Object.entries(c.storage).map(([id, s]) => [id, s.type, s.target, s.mountpoint, s.n_copy_processes]), [
      ['internal', 'INTERNAL', '/data', '/data', 8],
      ['beamline', 'EXTERNAL', '/mnt/beamline/data', '/mnt/beamline', 4],
      ['usb', 'OPTIONAL', '/media/usb/data', '/media/usb', 2],
    ]);
    assert.match(r.ini, /^\[storage\.usb\]$/m);
  });

  it("carries a '#' or ';' inside a vendor value over as part of it, not as a comment that cuts the path", () => {
    const [file, text] = vendorFile('furka_dectris.conf');
    const r = importVendorConfig(file, text.replace('/ramdisk/./2mf', '/ramdisk/./2mf#run;1'));
    assert.deepEqual(r.problems, []);
    const c = parseConfig<FurkadConfig>('converted', r.ini, validateFurkadConfig);
    assert.equal(c.detector['2MF']!.target, '/ramdisk/./2mf#run;1');
  });

  it('writes the vendor logfile into /var/log/ppu, the one log directory the shipped units can write, and says so (S3, S4)', () => {
    const [file, text] = vendorFile('furka_dectris.conf');
    const r = importVendorConfig(file, text);
    assert.deepEqual(r.notes, ["line 2: logfile '/var/log/furka_dectris.log' is written as '/var/log/ppu/furka_dectris.log': the shipped furkad " +
      "unit lets it write logs only below /var/log/ppu (ProtectSystem=strict), and would not start with the vendor's path; leave logfile out to log to the journal"]);
    assert.match(r.ini, /^# changed on the way, line 2: logfile /m);
    const g = importVendorConfig('/etc/grimsel_dectris.conf', 'logfile /var/log/ppu/grimsel.log\nstorageID internal\ntype INTERNAL\ntarget /data\n');
    assert.deepEqual([g.notes, g.problems], [[], []], 'one there already stays');
    assert.match(g.ini, /^logfile = \/var\/log\/ppu\/grimsel\.log$/m);
  });

  it('takes off one pair of quotes around a value, as the vendor reads it, and says so; a quote at one end only is refused (S3)', () => {
    const text = ['usrdir "$UID_$GID"', 'detectorID "1MF"', "remoteIP '10.10.10.11'", "source '/images'", 'target /ramdisk/./1mf',
      'detectorID 2MF', 'remoteIP 10.10.10.12', 'target /ramdisk/./2mf', "source /it's", 'minpause "10'].join('\n');
    const r = importVendorConfig('/etc/furka_dectris.conf', text);
    assert.deepEqual(r.notes, [
      `line 1: the quotes around "$UID_$GID" were taken off: 'usrdir' is '$UID_$GID'`,
      `line 2: the quotes around "1MF" were taken off: 'detectorID' is '1MF'`,
      "line 3: the quotes around '10.10.10.11' were taken off: 'remoteIP' is '10.10.10.11'",
      "line 4: the quotes around '/images' were taken off: 'source' is '/images'",
    ]);
    assert.deepEqual(r.problems, [`line 10: 'minpause "10': the value has a " at one end only; write it without quotes or with a pair around it`]);
    const c = parseConfig<FurkadConfig>('converted', r.ini, validateFurkadConfig);
    assert.deepEqual([c.usrdir, c.detector['1MF']!.remoteIP, c.detector['1MF']!.source, c.detector['2MF']!.source],
      ['$UID_$GID', '10.10.10.11', '/images', "/it's"]);
  });

  it("refuses, by line, a value that is not UTF-8 and one that ' #' or ' ;' would cut, instead of changing it (S3)", () => {
    const [file, text] = vendorFile('furka_dectris.conf');
    const bytes = Buffer.from(text.replace('source /images', 'source /Bilder\u0000').replace('target /ramdisk/./2mf', 'target /ramdisk/./run #1')
      .replace('minpause 20', 'minpause 20 ; ms'), 'utf8');
    bytes[bytes.indexOf(0)] = 0xc4; // Latin-1 'Ä'
    const r = importVendorConfig(file, bytes);
    const lineOf = (s: string): number => text.split('\n').findIndex((l) => l.startsWith(s)) + 1;
    assert.deepEqual(r.problems.slice(0, 3), [
      `line ${lineOf('target /ramdisk/./2mf')}: 'target /ramdisk/./run #1': '#' after a space would end the value here (read as ` +
        "'/ramdisk/./run', dropping '#1'); whether that is a comment or part of the value is not known: remove the comment, or the space before it",
      `line ${lineOf('minpause 20')}: 'minpause 20 ; ms': ';' after a space would end the value here (read as '20', dropping '; ms'); ` +
        'whether that is a comment or part of the value is not known: remove the comment, or the space before it',
      `line ${lineOf('source /images')}: 'source /Bilder\\xc4': not valid UTF-8 (the byte 0xc4): furkad.conf is UTF-8 and cannot name it; ` +
        'if the vendor file is Latin-1 text, convert it first (iconv -f LATIN1 -t UTF-8); a directory whose name holds that byte must be renamed',
    ]);
    assert.doesNotMatch(r.ini, /\ufffd/, 'no U+FFFD in place of the byte');
    assert.doesNotMatch(r.ini, /^target = \/ramdisk\/\.\/run$/m, 'no shortened path');
    // A comment on a line of its own, or a byte that is no UTF-8 inside a comment, is no problem.
    const fine = Buffer.concat([Buffer.from('# Pr'), Buffer.from([0xfc]), Buffer.from('fstand\nuid 500 \ngid 500\ndetectorID 1MF\nremoteIP h\ntarget /ramdisk/./1mf\n')]);
    assert.deepEqual(importVendorConfig(file, fine).problems, []);
  });

  it('reports, line by line, what it cannot map, and keeps those lines as comments', () => {
    const text = [
      'remoteIP 10.0.0.1          # before any detector',
      'uid 500',
      'colour blue',
      'detectorID 1MF',
      'remoteIP 10.0.0.2',
      'target /ramdisk/./1mf',
      'gid 500',
      'minpause',
      'minpause 5',
      'minpause 7',
      'detectorID PILATUS 6M',
      'remoteIP 10.0.0.3',
      'target /ramdisk/./6m',
    ].join('\n');
    const r = importVendorConfig('/etc/furka_dectris.conf', text);
    assert.deepEqual(r.problems, [
      "line 1: 'remoteIP 10.0.0.1          # before any detector': 'remoteIP' belongs to a detector but stands before any detectorID line",
      "line 3: 'colour blue': unknown key 'colour', nothing in furkad.conf corresponds to it",
      "line 7: 'gid 500': 'gid' is a global setting but stands inside detector '1MF'; move it above the first detectorID",
      "line 8: 'minpause': 'minpause' has no value",
      "line 10: 'minpause' is set twice in detector '1MF'; the later value wins",
      "line 11: detector 'PILATUS 6M' is named 'PILATUS_6M' (section names allow only letters, digits, _ and -)",
    ]);
    assert.match(r.ini, /^# not converted \(line 3, unknown key 'colour'.*\): colour blue$/m);
    const c = parseConfig<FurkadConfig>('converted', r.ini, validateFurkadConfig);
    assert.equal(c.detector['1MF']!.minpause, 7);
    assert.equal(c.detector['PILATUS_6M']!.remoteIP, '10.0.0.3');
  });

  it('says which vendor IDs reduce to one section name, and keeps each line a later one replaced as not converted (S3)', () => {
    const text = ['detectorID 1MF.a', 'remoteIP 10.0.0.1', 'target /ramdisk/./a', 'detectorID 1MF_a', 'remoteIP 10.0.0.2',
      'target /ramdisk/./b', 'detectorID 2MF', 'remoteIP 10.0.0.3', 'target /ramdisk/./c', 'detectorID 2MF', 'minpause 5'].join('\n');
    const r = importVendorConfig('/etc/furka_dectris.conf', text);
    assert.deepEqual(r.problems, [
      "line 1: detector '1MF.a' is named '1MF_a' (section names allow only letters, digits, _ and -)",
      "line 4: detector '1MF_a' and detector '1MF.a' (line 1) are both named '1MF_a'; their keys are merged, the later value wins " +
        '(each replaced line is kept as not converted): rename one in the vendor file',
      "line 5: 'remoteIP' is set twice in detector '1MF_a' (vendor detectors '1MF.a' and '1MF_a'); the later value wins",
      "line 6: 'target' is set twice in detector '1MF_a' (vendor detectors '1MF.a' and '1MF_a'); the later value wins",
      "line 10: detector '2MF' appears twice; its keys are merged, the later value wins",
    ]);
    // The first server's address and target are not lost without a word: kept in the output, commented.
    assert.match(r.ini, /^# not converted \(line 2, replaced by line 5\): remoteIP 10\.0\.0\.1$/m);
    assert.match(r.ini, /^# not converted \(line 3, replaced by line 6\): target \/ramdisk\/\.\/a$/m);
    const c = parseConfig<FurkadConfig>('converted', r.ini, validateFurkadConfig);
    assert.equal(c.detector['1MF_a']!.remoteIP, '10.0.0.2');
    assert.equal(c.detector['2MF']!.minpause, 5);
  });

  it('rejects values that cannot be converted and reports a result the daemon would refuse', () => {
    const text = 'create_links maybe\nstorageID a\ntype SPARE\ntarget /a\nstorageID b\ntype EXTERNAL\ntarget relative/path\n';
    const r = importVendorConfig('/etc/grimsel_dectris.conf', text);
    assert.deepEqual(r.problems.slice(0, 2), [
      "line 1: 'create_links maybe': 'maybe' is not a valid value for 'create_links'",
      "line 3: 'type SPARE': 'SPARE' is not a valid value for 'type'",
    ]);
    const invalid = r.problems.slice(2).join('\n');
    assert.match(invalid, /the converted file is not valid: .*\[storage\.a\], key 'type': missing/);
    assert.match(invalid, /\[storage\.b\], key 'target': must be an absolute path/);
  });

  it('tells furka from grimsel files by their sections, else by name, else says it cannot', () => {
    assert.equal(vendorKind('/tmp/x.conf', 'storageID internal\n'), 'grimseld');
    assert.equal(vendorKind('/tmp/x.conf', 'detectorID 1MF\n'), 'furkad');
    assert.equal(vendorKind('/etc/grimsel_dectris.conf', 'target /ramdisk\n'), 'grimseld');
    assert.throws(() => vendorKind('/tmp/x.conf', 'uid 500\n'), (e: unknown) => e instanceof ConfigError && /furka or a grimsel/.test(e.message));
    const none = importVendorConfig('/etc/furka_dectris.conf', 'uid 500\n');
    assert.ok(none.problems.some((p) => /no detectorID section/.test(p)), none.problems.join('\n'));
  });
});

// furkad's use of the rsync client: arguments, output parsing and the exit-code policy (F1-F3, F10).
import { strict as assert } from 'node:assert';
import { besidesGone, classifyExit, onlyList, OutputParser, parseOutput, rsyncArgs } from '../../src/furkad/rsync.js';
import { deliverable, escapeName, NAMES_FILTER } from '../../src/furkad/rsync-names.js';

describe('rsync client run (F1-F3)', () => {
  const run = { rsync: 'rsync', host: '10.0.0.1', port: 49371, module: 'ramdisk', source: '/', dest: '/ramdisk/1mf/500_501',
    uid: 500, gid: 501, removeSource: true, exclude: [], namesFilter: '/var/lib/furka/rsync-names.filter', timeoutS: 30 };

  it('pulls the module directory into dest with ownership, times, removal and TCP_NODELAY', () => {
    const a = rsyncArgs(run);
    assert.equal(a[a.length - 2], 'rsync://10.0.0.1:49371/ramdisk/');
    assert.equal(a[a.length - 1], '/ramdisk/1mf/500_501/');
    for (const opt of ['--recursive', '--times', '--chown=500:501', '--numeric-ids', '--remove-source-files', '--sockopts=TCP_NODELAY']) {
      assert.ok(a.includes(opt), `${opt} given`);
    }
    assert.ok(!a.some((x) => /^--(links|devices|specials)$|^-[a-zA-Z]*a/.test(x)), 'no symlinks or special files (F1)');
  });

  it('logs in as the user in the URL, never with the password on the command line (F1, S6)', () => {
    const a = rsyncArgs({ ...run, user: 'furkad', password: 'secret-key-0123456789' });
    assert.equal(a[a.length - 2], 'rsync://furkad@10.0.0.1:49371/ramdisk/');
    assert.equal(rsyncArgs({ ...run, user: 'furkad', host: 'fe80::1' }).at(-2), 'rsync://furkad@[fe80::1]:49371/ramdisk/');
    assert.ok(!a.some((x) => x.includes('secret-key')), 'the password travels in the environment only');
  });

  it('joins a source below the module, keeps remove_source = no and passes excludes', () => {
    const a = rsyncArgs({ ...run, source: '/det1/', removeSource: false, host: 'fe80::1', exclude: ['*.tmp', '.*'] });
    assert.ok(a.includes('--exclude=*.tmp') && a.includes('--exclude=.*'));
    assert.equal(a[a.length - 2], 'rsync://[fe80::1]:49371/ramdisk/det1/');
    assert.ok(!a.includes('--remove-source-files'));
  });

  it('lists transferred and already-present regular files, not directories, decoding escaped names', () => {
    const out = [
      '.d..t.og... ./',
      'cd+++++++++ a/',
      '>f+++++++++ 1000 a/img_00001.cbf',
      '>f.st...... 20 a/we ird \\#134#351 \\ name.cbf',
      '.f          7 a/left-by-earlier-run.cbf',
      '>f+++++++++ 3 caf\\#303\\#251.tif',
      '>f+++++++++ 4 caf\u00c3\u00a9-printed-raw.tif',
      'skipping non-regular file "a/link"',
      '',
    ].join('\n');
    const r = parseOutput(out);
    assert.deepEqual(r.files, ['a/img_00001.cbf', 'a/we ird \\#351 \\ name.cbf', 'a/left-by-earlier-run.cbf', 'café.tif', 'café-printed-raw.tif']);
    assert.deepEqual(r.sent, ['a/img_00001.cbf', 'a/we ird \\#351 \\ name.cbf', 'café.tif', 'café-printed-raw.tif'], 'transferred in this run');
    assert.equal(r.transferred, 4);
    assert.equal(r.bytes, 1027);
  });

  it('settle mode takes a file already copied by linking that copy into staging, listing it as one of the run\'s files (F2)', () => {
    const a = rsyncArgs({ ...run, only: ['x/a.cbf'], linkDest: '/rd/1mf/.furkad-staging/.settling/1MF' });
    assert.ok(a.includes('--link-dest=/rd/1mf/.furkad-staging/.settling/1MF'));
    assert.ok(!rsyncArgs(run).some((x) => x.startsWith('--link-dest')), 'not otherwise');
    // What rsync 3.x prints for a file linked from --link-dest and for one copied from it (attributes differed).
    const r = parseOutput(['sender removed x/a.cbf', 'hf          50000 x/a.cbf', 'cf          7 x/b.cbf', ''].join('\n'));
    assert.deepEqual(r.files, ['x/a.cbf', 'x/b.cbf']);
    assert.deepEqual(r.sent, [], 'nothing sent again');
    assert.deepEqual([...r.removed], ['x/a.cbf']);
  });

  it('after the PPU ramdisk had no room, limits files to its free space and says which it leaves (F1, F10)', () => {
    const a = rsyncArgs({ ...run, maxSize: 16_000_000 });
    assert.ok(a.includes('--max-size=16000000'));
    assert.ok(a.some((x) => /^--info=.*,SKIP1$/.test(x)), 'rsync names each file over the limit');
    assert.ok(rsyncArgs({ ...run, maxSize: 0 }).includes('--max-size=1'), 'never 0 (no limit to rsync before 3.1)');
    assert.ok(!rsyncArgs(run).some((x) => x.startsWith('--max-size')), 'no limit otherwise');
    const r = parseOutput(['S/a-huge.img is over max-size', 'S/caf\\#303\\#251.img is over max-size (9 > 8)', '>f+++++++++ 6 S/b-small.img', ''].join('\n'));
    assert.deepEqual(r.overMax, ['S/a-huge.img', 'S/café.img']);
    assert.deepEqual(r.files, ['S/b-small.img']);
    // A file so named is itemized, not left over --max-size (found by a hostile tester: it stayed on the detector).
    const named = parseOutput('>f+++++++++ 777 2026/12/05-09:00:00 S/foo is over max-size\n.f          5 S/bar is over max-size (9 > 8)\n');
    assert.deepEqual([named.files, named.overMax], [['S/foo is over max-size', 'S/bar is over max-size (9 > 8)'], []]);
  });

  it('reads the size and mtime the detector has of each file listed, in UTC seconds, also of one over --max-size listed by a dry run (A5)', () => {
    assert.ok(rsyncArgs(run).includes('--out-format=%i %l %M %n'));
    const r = parseOutput(['>f+++++++++ 6 2030/01/02-03:04:05 S/2030/01/02-03:04:05 x.img', '.f          7 1970/01/01-00:00:00 S/b.img',
      'S/c.img is over max-size (9 > 8)', '>f+++++++++ 5 S/old-format.img', ''].join('\n'));
    assert.deepEqual(r.files, ['S/2030/01/02-03:04:05 x.img', 'S/b.img', 'S/old-format.img']);
    assert.deepEqual([...r.listing], [['S/2030/01/02-03:04:05 x.img', { size: 6, mtimeS: Date.UTC(2030, 0, 2, 3, 4, 5) / 1000 }], ['S/b.img', { size: 7, mtimeS: 0 }]]);
    const failed = parseOutput('>f+++++++++ 33554432 2030/01/02-03:04:05 S/a-huge.img\n', 11);
    assert.deepEqual([failed.files, [...failed.listing.keys()]], [[], ['S/a-huge.img']], 'the file a failed run was receiving: listed, not received');
  });

  it('reads the name of a file whose mtime rsync prints longer or cut short (a year of 10000, -999), knowing no mtime of it; reads years before 100 as such (A5, F1)', () => {
    // Taken for part of the name, such a file was pulled and its source removed, and it stayed in staging unplaced.
    const r = parseOutput(['>f+++++++++ 6 10000/01/01-00:00:0 run1/odd.cbf', '>f+++++++++ 7 -999/06/01-00:00:00 run1/old.cbf',
      '>f+++++++++ 8 0050/03/04-05:06:07 run1/y50.cbf', ''].join('\n'));
    assert.deepEqual(r.files, ['run1/odd.cbf', 'run1/old.cbf', 'run1/y50.cbf']);
    const y50 = new Date(0);
    y50.setUTCFullYear(50, 2, 4);
    y50.setUTCHours(5, 6, 7, 0);
    assert.deepEqual(r.listing.get('run1/y50.cbf'), { size: 8, mtimeS: y50.getTime() / 1000 }, 'the year 50, not 1950');
    assert.equal(r.listing.get('run1/odd.cbf'), undefined, 'cut short: no mtime known');
    assert.equal(r.listing.get('run1/old.cbf')?.size, 7);
  });

  it('compares copies made already without moving anything: --dry-run, a changed one listed as sent (F2, F10)', () => {
    const a = rsyncArgs({ ...run, removeSource: false, only: ['N/f1.img', 'N/f2.img'], dryRun: true });
    assert.ok(a.includes('--dry-run'));
    assert.ok(!a.includes('--remove-source-files'));
    assert.ok(!rsyncArgs(run).includes('--dry-run'), 'not otherwise');
    // What rsync prints with --dry-run -ii for a file the same as its copy, and for one whose mtime moved since.
    const r = parseOutput(['.f          1048576 N/f1.img', '>f..t...... 1048576 N/f2.img', ''].join('\n'));
    assert.deepEqual(r.files, ['N/f1.img', 'N/f2.img']);
    assert.deepEqual(r.sent, ['N/f2.img']);
  });

  it('does not count the file a failed run was receiving: it never arrived (F1, F10)', () => {
    // rsync says a file before its data comes (an --out-format without %b); exit 11: the PPU ramdisk was full.
    const out = ['>f+++++++++ 3 S/a0.img', 'sender removed S/a0.img', '>f+++++++++ 33554432 S/a-huge.img', ''].join('\n');
    const failed = parseOutput(out, 11);
    assert.deepEqual(failed.files, ['S/a0.img']);
    assert.deepEqual(failed.sent, ['S/a0.img']);
    assert.equal(failed.bytes, 3);
    const ok = parseOutput(out, 0);
    assert.deepEqual(ok.sent, ['S/a0.img', 'S/a-huge.img'], 'a run that ended well received it whole');
    assert.equal(ok.bytes, 33554435);
    const removed = parseOutput(`${out}sender removed S/a-huge.img\n`, 11);
    assert.equal(removed.bytes, 33554435, 'one its sender reported removed had arrived');
  });

  it('keeps names furkad cannot hand over out of the files, and collects the names the daemon hid (F1, F2)', () => {
    const r = parseOutput([
      '[sender] hiding file a/lat1_\\#351.img because of pattern *[\\#340-\\#357][!\\#200-\\#277]*',
      '[sender] hiding directory a/d\\#351 because of pattern *[\\#340-\\#357]',
      '[sender] hiding file a/.x.writing because of pattern .*.writing',
      '[sender] hiding file a/odd because of pattern x because of pattern *[\\#001-\\#037\x7f]*',
      '>f+++++++++ 5 a/new\\#012line.img',
      'sender removed a/new\\#012line.img',
      '>f+++++++++ 6 a/bad\\#351.img',
      '>f+++++++++ 7 a/fine.img',
      'total: matches=0  hash_hits=0  false_alarms=0 data=7',
    ].join('\n'));
    assert.deepEqual(r.files, ['a/fine.img']);
    assert.deepEqual([...r.removed], []);
    assert.deepEqual(r.strays.map((b) => b.toString('latin1')), ['a/new\nline.img', 'a/bad\xe9.img']);
    assert.deepEqual(r.hidden.map((b) => b.toString('latin1')), ['a/lat1_\xe9.img', 'a/d\xe9', 'a/.x.writing', 'a/odd because of pattern x']);
  });

  it("hands over the daemon's removals a chunk at a time, lines split across chunks included (F2)", () => {
    const batches: string[][] = [];
    const p = new OutputParser((names) => batches.push(names));
    p.push('>f+++++++++ 10 a/img_1.cbf\n>f+++++++++ 20 a/img_2.cbf\nsender rem');
    assert.deepEqual(batches, [], 'nothing removed yet: an item line alone proves nothing');
    p.push('oved a/img_1.cbf\nsender removed a/we ird \\#342\\#202\\#254.cbf\n');
    p.push('sender removed a/img_2.cbf');
    assert.deepEqual(batches, [['a/img_1.cbf', 'a/we ird €.cbf']]);
    p.end();
    assert.deepEqual(batches[1], ['a/img_2.cbf'], 'the last line without its newline');
    assert.deepEqual([...p.removed], ['a/img_1.cbf', 'a/we ird €.cbf', 'a/img_2.cbf']);
    assert.deepEqual(p.sent, ['a/img_1.cbf', 'a/img_2.cbf']);
    assert.equal(p.bytes, 30);
  });

  it("tells a source the daemon found gone when it came to remove it (renamed or deleted after it was sent) from a removal, and from a daemon that reports none (tester h10)", () => {
    const batches: string[][] = [];
    const p = new OutputParser((names) => batches.push(names));
    p.push('>f+++++++++ 10 scan_001/img_1.cbf\n>f+++++++++ 20 scan_001/img_2.cbf\nsender removed scan_001/img_1.cbf\n');
    p.push('sender file already removed: scan_001/img_2.cbf\n');
    p.end();
    assert.deepEqual(batches, [['scan_001/img_1.cbf']], 'not handed over as removed');
    assert.deepEqual([...p.removed], ['scan_001/img_1.cbf']);
    assert.deepEqual([...p.vanished], ['scan_001/img_2.cbf']);
    assert.deepEqual(p.files, ['scan_001/img_1.cbf', 'scan_001/img_2.cbf'], 'no file of its own: the line is not an item');
  });

  it('asks the daemon to report removals, and limits a run to given files through the module root with /./', () => {
    assert.ok(rsyncArgs(run).includes('--info=NONE,NAME1,REMOVE1'));
    assert.ok(rsyncArgs({ ...run, removeSource: false }).includes('--info=NONE,NAME1'), 'nothing to report without removal');
    const only = { ...run, source: '/det1/', only: ['a/img_1.cbf', 'café.tif'] };
    const a = rsyncArgs(only);
    assert.ok(a.includes('--files-from=-') && a.includes('--from0'));
    assert.equal(a[a.length - 2], 'rsync://10.0.0.1:49371/ramdisk/');
    assert.deepEqual(onlyList(only).toString('utf8').split('\0'), ['det1/./a/img_1.cbf', 'det1/./café.tif', '']);
    assert.deepEqual(onlyList({ ...only, source: '/' }).toString('utf8').split('\0'), ['a/img_1.cbf', 'café.tif', '']);
  });

  it('classifies exit codes: vanished files are fine, network trouble is retried, usage errors are fatal (F10)', () => {
    assert.equal(classifyExit(0), 'ok');
    assert.equal(classifyExit(24), 'ok');
    for (const c of [5, 10, 12, 23, 30, 35]) assert.equal(classifyExit(c), 'retry', `exit ${c}`);
    assert.equal(classifyExit(1), 'fatal');
    assert.equal(classifyExit(99), 'retry', 'unknown codes are retried, never dropped');
  });

  it('takes files a limited run was given that are gone from the detector (a directory renamed there) for vanished ones, not for a failure (F2, F10)', () => {
    const gone = 'rsync: [sender] link_stat "/scan_001/f_00.img" (in ramdisk) failed: No such file or directory (2)';
    const summary = 'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [generator=3.2.7]';
    assert.deepEqual(besidesGone(23, [gone, gone.replace('f_00', 'f_01'), summary].join('\n'), 3), { code: 24, stderr: '', gone: 2 });
    assert.deepEqual(besidesGone(23, `${gone.replace('[sender] ', '')}\n${summary}`, 2).code, 24, 'rsync 3.1 says it without [sender]');
    // Every name gone: the sender ends the connection at once (rsync 3.5), the run had nothing to do.
    const reset = 'rsync: [Receiver] read error: Connection reset by peer (104)';
    assert.deepEqual(besidesGone(23, [gone, summary, reset].join('\n'), 1), { code: 24, stderr: '', gone: 1 });
    assert.equal(besidesGone(23, [gone, summary, reset].join('\n'), 2).code, 23, 'a reset while another file was to come is a failure');
    const changed = 'ERROR: Skipping sender remove for changed file: scan_001/f_02.img';
    const mixed = besidesGone(23, [gone, changed, summary].join('\n'), 2);
    assert.deepEqual(mixed, { code: 23, stderr: `${changed}\n${summary}`, gone: 1 });
    assert.equal(classifyExit(mixed.code, mixed.stderr), 'ok', 'judged on what is left: a changed source');
    const denied = 'rsync: [sender] send_files failed to open "/a.img" (in ramdisk): Permission denied (13)';
    assert.equal(classifyExit(besidesGone(23, [gone, denied, summary].join('\n'), 2).code), 'retry', 'anything else still fails the run');
    assert.deepEqual(besidesGone(23, denied, 1), { code: 23, stderr: denied, gone: 0 });
  });
});

describe('names furkad can hand over (F1, F2, G12)', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');

  it('takes valid UTF-8 without control characters, nothing else', () => {
    for (const ok of ['a b.img', 'Ä.img', 'emoji-😀', '-x', 'c1-\u0085', 'back\\slash']) assert.ok(deliverable(Buffer.from(ok)), ok);
    for (const bad of ['lat1_\xe9.img', 'nl\nx', 'tab\tx', 'del\x7f', '\xc3', '\xe2\x82', '\xc0\xaf', '\xed\xa0\x80', '\xf4\x90\x80\x80', '\x80x']) {
      assert.ok(!deliverable(b(bad)), JSON.stringify(bad));
    }
  });

  it('shows such bytes as rsync does, \\#ooo, the rest as it is', () => {
    assert.equal(escapeName(b('lat1_\xe9.img')), 'lat1_\\#351.img');
    assert.equal(escapeName(b('new\nline')), 'new\\#012line');
    assert.equal(escapeName(b('trunc-\xe2\x82 \xc3\x84')), 'trunc-\\#342\\#202 Ä');
    assert.equal(escapeName(Buffer.from('ok 😀')), 'ok 😀');
  });

  it('writes one exclude pattern a line, none holding a newline, a NUL or a space', () => {
    const lines = NAMES_FILTER.toString('latin1').split('\n');
    assert.equal(lines.pop(), '');
    assert.ok(lines.length > 20);
    for (const l of lines) assert.ok(l !== '' && !/[\0 /]/.test(l) && !/^[;#+-]/.test(l), JSON.stringify(l));
  });
});

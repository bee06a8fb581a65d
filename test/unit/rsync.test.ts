// furkad's use of the rsync client: arguments, output parsing and the exit-code policy (F1-F3, F10).
import { strict as assert } from 'node:assert';
import { classifyExit, onlyList, OutputParser, parseOutput, rsyncArgs } from '../../src/furkad/rsync.js';

describe('rsync client run (F1-F3)', () => {
  const run = { rsync: 'rsync', host: '10.0.0.1', port: 49371, module: 'ramdisk', source: '/', dest: '/ramdisk/1mf/500_501',
    uid: 500, gid: 501, removeSource: true, exclude: [], timeoutS: 30 };

  it('pulls the module directory into dest with ownership, times, removal and TCP_NODELAY', () => {
    const a = rsyncArgs(run);
    assert.equal(a[a.length - 2], 'rsync://10.0.0.1:49371/ramdisk/');
    assert.equal(a[a.length - 1], '/ramdisk/1mf/500_501/');
    for (const opt of ['--recursive', '--times', '--chown=500:501', '--numeric-ids', '--remove-source-files', '--sockopts=TCP_NODELAY']) {
      assert.ok(a.includes(opt), `${opt} given`);
    }
    assert.ok(!a.some((x) => /^--(links|devices|specials)$|^-[a-zA-Z]*a/.test(x)), 'no symlinks or special files (F1)');
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
      '>f.st...... 20 a/we ird\\#012name.cbf',
      '.f          7 a/left-by-earlier-run.cbf',
      '>f+++++++++ 3 caf\\#303\\#251.tif',
      'skipping non-regular file "a/link"',
      '',
    ].join('\n');
    const r = parseOutput(out);
    assert.deepEqual(r.files, ['a/img_00001.cbf', 'a/we ird\nname.cbf', 'a/left-by-earlier-run.cbf', 'café.tif']);
    assert.deepEqual(r.sent, ['a/img_00001.cbf', 'a/we ird\nname.cbf', 'café.tif'], 'transferred in this run');
    assert.equal(r.transferred, 3);
    assert.equal(r.bytes, 1023);
  });

  it("hands over the daemon's removals a chunk at a time, lines split across chunks included (F2)", () => {
    const batches: string[][] = [];
    const p = new OutputParser((names) => batches.push(names));
    p.push('>f+++++++++ 10 a/img_1.cbf\n>f+++++++++ 20 a/img_2.cbf\nsender rem');
    assert.deepEqual(batches, [], 'nothing removed yet: an item line alone proves nothing');
    p.push('oved a/img_1.cbf\nsender removed a/we ird\\#012.cbf\n');
    p.push('sender removed a/img_2.cbf');
    assert.deepEqual(batches, [['a/img_1.cbf', 'a/we ird\n.cbf']]);
    p.end();
    assert.deepEqual(batches[1], ['a/img_2.cbf'], 'the last line without its newline');
    assert.deepEqual([...p.removed], ['a/img_1.cbf', 'a/we ird\n.cbf', 'a/img_2.cbf']);
    assert.deepEqual(p.sent, ['a/img_1.cbf', 'a/img_2.cbf']);
    assert.equal(p.bytes, 30);
  });

  it('asks the daemon to report removals, and limits a run to given files through the module root with /./', () => {
    assert.ok(rsyncArgs(run).includes('--info=remove1'));
    assert.ok(!rsyncArgs({ ...run, removeSource: false }).includes('--info=remove1'), 'nothing to report without removal');
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
});

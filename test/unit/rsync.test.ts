// furkad's use of the rsync client: arguments, output parsing and the exit-code policy (F1-F3, F10).
import { strict as assert } from 'node:assert';
import { classifyExit, parseOutput, rsyncArgs } from '../../src/furkad/rsync.js';

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

  it('classifies exit codes: vanished files are fine, network trouble is retried, usage errors are fatal (F10)', () => {
    assert.equal(classifyExit(0), 'ok');
    assert.equal(classifyExit(24), 'ok');
    for (const c of [5, 10, 12, 23, 30, 35]) assert.equal(classifyExit(c), 'retry', `exit ${c}`);
    assert.equal(classifyExit(1), 'fatal');
    assert.equal(classifyExit(99), 'retry', 'unknown codes are retried, never dropped');
  });
});

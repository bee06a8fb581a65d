// F4 (usrdir templating), F7 and G4 (the './' marker and what is replicated).
import { strict as assert } from 'node:assert';
import { deliveredPath, expandUsrdir, isSafeRelative, markTarget, replicatedPath, splitMarked, unmark } from '../../src/common/paths.js';

describe("'./' marker and replication (F7, G4)", () => {
  it('replicates the part after ./ below the storage target (G4 example)', () => {
    const delivered = deliveredPath('/ramdisk/./imgdir', '500_501', 'path/to/f.cbf');
    assert.equal(delivered, '/ramdisk/./imgdir/500_501/path/to/f.cbf');
    assert.equal(replicatedPath('/data', splitMarked(delivered).rel), '/data/imgdir/500_501/path/to/f.cbf');
  });

  it('behaves as if the target ended in /./ when it has no marker', () => {
    assert.equal(markTarget('/ramdisk/imgdir'), '/ramdisk/imgdir/./');
    assert.equal(markTarget('/ramdisk/imgdir/'), '/ramdisk/imgdir/./');
    const delivered = deliveredPath('/ramdisk/imgdir', '500_501', 'path/to/f.cbf');
    assert.equal(replicatedPath('/data', splitMarked(delivered).rel), '/data/500_501/path/to/f.cbf');
  });

  it('does not change where furkad writes', () => {
    assert.equal(unmark('/ramdisk/./imgdir'), '/ramdisk/imgdir');
    assert.equal(unmark(deliveredPath('/ramdisk/./imgdir', '500_501', 'a.cbf')), '/ramdisk/imgdir/500_501/a.cbf');
  });

  it('handles a target that is the marker itself or ends in /.', () => {
    assert.equal(deliveredPath('/ramdisk/.', '', 'x/a.cbf'), '/ramdisk/./x/a.cbf');
    assert.equal(deliveredPath('/./ramdisk', 'u', 'a.cbf'), '/./ramdisk/u/a.cbf');
    assert.deepEqual(splitMarked('/./ramdisk/u/a.cbf'), { root: '/', rel: 'ramdisk/u/a.cbf' });
  });

  it('leaves usrdir out when it is empty', () => {
    assert.equal(deliveredPath('/ramdisk/./1mf', '', 'a/b.cbf'), '/ramdisk/./1mf/a/b.cbf');
  });

  it('splits an operator path at its first marker; without one only the name is replicated (G8)', () => {
    assert.deepEqual(splitMarked('/some_dir/./path/to/file'), { root: '/some_dir', rel: 'path/to/file' });
    assert.deepEqual(splitMarked('/some_dir/path/to/file'), { root: '/some_dir/path/to', rel: 'file' });
  });

  it('knows which relative paths stay below their base', () => {
    assert.ok(isSafeRelative('a/b.cbf'));
    assert.ok(isSafeRelative('a..b/c'));
    assert.ok(!isSafeRelative('../etc/passwd'));
    assert.ok(!isSafeRelative('a/../../x'));
    assert.ok(!isSafeRelative('/abs'));
    assert.ok(!isSafeRelative(''));
  });
});

describe('usrdir templating (F4)', () => {
  it('expands $UID and $GID, including the default $UID_$GID', () => {
    assert.equal(expandUsrdir('$UID_$GID', 500, 501), '500_501');
    assert.equal(expandUsrdir('users/$UID/$GID', 1, 2), 'users/1/2');
    assert.equal(expandUsrdir('${UID}x${GID}', 7, 8), '7x8');
  });
  it('keeps text without variables and empty means none', () => {
    assert.equal(expandUsrdir('data', 500, 501), 'data');
    assert.equal(expandUsrdir('', 500, 501), '');
  });
});

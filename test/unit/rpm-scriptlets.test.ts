// The detector package's upgrade check of a kept rsyncd.conf (F1, S1): the awk program of rpm/ppu-movers.spec's
// %post detector, run as the scriptlet runs it, says "not chrooted" exactly when rsync would not chroot module
// ramdisk. The system tier runs the scriptlet itself on one such file.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const spec = readFileSync(path.join(__dirname, '../../../rpm/ppu-movers.spec'), 'utf8');
const program = /&& awk '([\s\S]*?)' %\{_sysconfdir\}\/ppu\/rsyncd\.conf/.exec(spec)?.[1];

describe('the detector upgrade check of a kept rsyncd.conf', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'rsyncd-check-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Whether the scriptlet warns about `conf`. */
  const warns = (conf: string): boolean => {
    assert.ok(program, 'the awk program is in %post detector');
    const file = path.join(dir, 'rsyncd.conf');
    writeFileSync(file, conf);
    try {
      execFileSync('awk', [program, file]);
      return true;
    } catch {
      return false;
    }
  };

  it('is quiet on the shipped file, on a file without the setting (rsync then chroots) and on a module that turns it on', () => {
    assert.equal(warns(readFileSync(path.join(__dirname, '../../../etc/ppu/rsyncd.conf'), 'utf8')), false);
    assert.equal(warns('[ramdisk]\npath = /ramdisk\n'), false);
    assert.equal(warns('use chroot = no\n[ramdisk]\nuse chroot = yes\n'), false);
    assert.equal(warns('# use chroot = no\n[ramdisk]\n'), false);
  });

  it("warns where module ramdisk is not chrooted, in any spelling rsync accepts", () => {
    assert.equal(warns('use chroot = no\n[ramdisk]\npath = /ramdisk\n'), true);
    assert.equal(warns('use chroot = yes\n[ramdisk]\nuse chroot = no\n'), true, "the module's own setting");
    assert.equal(warns('use chroot = yes\nuse chroot = no\n[ramdisk]\n'), true, 'the last one wins');
    assert.equal(warns('use chroot = no\n[other]\nuse chroot = yes\n[ramdisk]\n'), true, "another module's setting");
    assert.equal(warns('Use\tChroot=No\r\n[ramdisk]\r\n'), true);
    assert.equal(warns('usechroot = false\n[ramdisk]\n'), true);
    assert.equal(warns('[global]\nuse chroot = 0\n[ramdisk]\n'), true);
  });
});

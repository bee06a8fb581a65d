// The detector package's upgrade check of a kept rsyncd.conf (F1, S1): scripts/rsyncd-chroot-check.sh, which
// rpm/ppu-movers.spec's %post detector runs, says "not chrooted" exactly when rsync would not chroot module
// ramdisk. The system tier runs the scriptlet itself on one such file.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.join(__dirname, '../../..');
const CHECK = path.join(REPO, 'scripts/rsyncd-chroot-check.sh');

describe('the detector upgrade check of a kept rsyncd.conf', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'rsyncd-check-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Whether the scriptlet warns about `conf`. */
  const warns = (conf: string): boolean => {
    const file = path.join(dir, 'rsyncd.conf');
    writeFileSync(file, conf);
    try {
      execFileSync('sh', [CHECK, file]);
      return true;
    } catch {
      return false;
    }
  };

  it('is what %post detector runs, from the installed tree', () => {
    assert.match(readFileSync(path.join(REPO, 'rpm/ppu-movers.spec'), 'utf8'), /sh %\{appdir\}\/scripts\/rsyncd-chroot-check\.sh %\{_sysconfdir\}\/ppu\/rsyncd\.conf/);
  });

  it('is quiet on the shipped file, on a file without the setting (rsync then chroots) and on a module that turns it on', () => {
    assert.equal(warns(readFileSync(path.join(REPO, 'etc/ppu/rsyncd.conf'), 'utf8')), false);
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
    assert.equal(warns('use chroot = no'), true, 'a last line without its newline');
  });
});

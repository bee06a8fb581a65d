// Whether a storage's mount point has a file system of its own mounted (G13). grimseld.service's ProtectSystem=strict
// with ReadWritePaths=-/data binds /data onto itself in the unit's namespace, so the mount table lists /data also
// while the disk is not there: such a bind must not count. Real mounts (tests run as root), then the table's cases.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMountPoint, mountedAt } from '../../src/grimseld/mounts.js';
import { mountsOf } from '../../src/common/mounts.js';
import { mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

describe('a storage mount point (G13)', () => {
  let base: string;
  const binds: string[] = [];
  const bind = (from: string, to: string): void => {
    execFileSync('mount', ['--bind', from, to]);
    binds.push(to);
  };
  beforeEach(() => {
    base = mkdtempSync(path.join(os.tmpdir(), 'mount-point-'));
    mkdirSync(path.join(base, 'data'));
    mkdirSync(path.join(base, 'other'));
  });
  afterEach(() => {
    for (const b of binds.splice(0).reverse()) execFileSync('umount', [b]);
    unmountAll();
    rmSync(base, { recursive: true, force: true });
  });

  it('is not mounted while only a bind of the directory onto itself is there (systemd ReadWritePaths=)', async () => {
    const data = path.join(base, 'data');
    bind(data, data);
    assert.equal(await isMountPoint(data), false);
  });

  it('is mounted with a file system there, also under such a bind, and with a bind of another directory', async () => {
    const data = path.join(base, 'data');
    mountTmpfs(data, 1 << 20);
    assert.equal(await isMountPoint(data), true);
    bind(data, data);
    assert.equal(await isMountPoint(data), true, 'the unit started with the disk mounted');
    const other = path.join(base, 'other');
    bind(path.join(base, 'data'), other);
    assert.equal(await isMountPoint(other), true, "a bind of another directory shows that directory's files");
  });

  it('reads stacked mounts from the top down, each against what it covers', () => {
    const line = (id: number, dev: string, root: string, at: string, type = 'ext4', parent = 20): string =>
      `${id} ${parent} ${dev} ${root} ${at} rw,relatime shared:1 - ${type} /dev/x rw`;
    const table = (...lines: string[]): ReturnType<typeof mountsOf> => mountsOf(lines.join('\n'));
    const root = line(20, '253:0', '/', '/');
    assert.equal(mountedAt('/data', table(root, line(30, '253:0', '/data', '/data'))), false, 'self-bind of a root fs directory');
    assert.equal(mountedAt('/data', table(root, line(30, '8:17', '/', '/data'))), true, 'a disk');
    assert.equal(mountedAt('/data', table(root, line(30, '8:17', '/', '/data'), line(31, '8:17', '/', '/data'))), true, 'a disk under its self-bind');
    assert.equal(mountedAt('/data', table(root, line(30, '253:0', '/data', '/data'), line(31, '253:0', '/data', '/data'))), false, 'two self-binds');
    assert.equal(mountedAt('/data', table(root, line(30, '253:0', '/srv/data', '/data'))), true, 'another directory of the same file system');
    assert.equal(mountedAt('/data', table(line(20, '0:40', '/@', '/', 'btrfs'), line(30, '0:40', '/@data', '/data', 'btrfs'))), true, 'a btrfs subvolume of its own');
    assert.equal(mountedAt('/data', table(line(20, '0:40', '/@', '/', 'btrfs'), line(30, '0:40', '/@/data', '/data', 'btrfs'))), false, 'a self-bind on btrfs');
    assert.equal(mountedAt('/mnt/ext', table(root, line(25, '8:1', '/', '/mnt'), line(30, '8:1', '/ext', '/mnt/ext'))), false, 'self-bind below another mount');
    assert.equal(mountedAt('/data', table(root)), false, 'nothing there');
    // As a booted systemd showed it: a disk mounted on the host after the unit started is tucked under the unit's
    // self-bind (which then sits on it) and propagated on top of it too; listed in id order, not stacking order.
    const tucked = [line(566, '0:40', '/mnt/usb', '/mnt/usb', 'tmpfs', 568), line(568, '0:62', '/', '/mnt/usb', 'tmpfs', 20),
      line(569, '0:62', '/', '/mnt/usb', 'tmpfs', 566)];
    assert.equal(mountedAt('/mnt/usb', table(line(20, '0:40', '/', '/', 'tmpfs', 1), ...tucked)), true, 'the disk on top');
    assert.equal(mountedAt('/mnt/usb', table(line(20, '0:40', '/', '/', 'tmpfs', 1), tucked[1]!, tucked[0]!)), false,
      'the disk under the self-bind only: the directory is what the unit sees');
  });
});

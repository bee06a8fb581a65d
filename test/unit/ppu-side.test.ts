// Which side a failed rsync run's words blame (F10): the PPU's own resources, or the detector's daemon.
import { strict as assert } from 'node:assert';
import { ppuSideOfRsync } from '../../src/furkad/ppu-side.js';

describe('ppuSideOfRsync: the PPU is blamed only for what its own receiver says (F10)', () => {
  it('a detector daemon out of descriptors is the detector, with or without the [sender] of rsync 3.2 and later', () => {
    // As rsync 3.5 says it (a daemon under `prlimit --nofile=6`), and as rsync before 3.2 (CentOS 7's 3.1.2, an
    // old vendor daemon) says the same: its rsyserr lines carry no `[sender]`, only the module after the name.
    const modern = 'rsync: [sender] send_files failed to open "f1" (in data): Too many open files (24)\n' +
      'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [generator=3.5.0]\n';
    const old = 'rsync: send_files failed to open "run 1/f1" (in data): Too many open files (24)\n' +
      'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1655) [generator=3.1.2]\n';
    assert.deepEqual(ppuSideOfRsync(modern, false, '/ppu/staging'), {});
    assert.deepEqual(ppuSideOfRsync(old, false, '/ppu/staging'), {});
  });
  it("the PPU's receiver out of room or descriptors is the PPU, in either version's words", () => {
    for (const said of [
      'rsync: [receiver] mkstemp "/ppu/.rsync-temp/1MF/.f1.AbCdEf" failed: No space left on device (28)\n',
      'rsync: mkstemp "/ppu/.rsync-temp/1MF/.f1.AbCdEf" failed: No space left on device (28)\n',
      'rsync: recv_generator: mkdir "/ppu/staging/run" failed: Read-only file system (30)\n',
    ]) assert.deepEqual(ppuSideOfRsync(said, false, '/ppu/staging'), { ppu: '/ppu/staging' }, said);
    assert.deepEqual(ppuSideOfRsync('', true, '/ppu/staging'), { ppu: '/ppu/staging' }, 'no room, as furkad saw it');
  });
});

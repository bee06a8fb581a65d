// What grimseld takes at the door (G8): a checked path gives the file's real path and the part to replicate,
// and a path that names no file is refused by name before anything is stored.
import { strict as assert } from 'node:assert';
import { checkMarkedPath, RejectedPath } from '../../src/grimseld/intake.js';

describe('checked paths (G8)', () => {
  it('gives the real path and the part after ./, non-ASCII names included', () => {
    assert.deepEqual(checkMarkedPath('/ramdisk/./1mf/500_501/größe/ä😀.cbf'), { src: '/ramdisk/1mf/500_501/größe/ä😀.cbf', rel: '1mf/500_501/größe/ä😀.cbf' });
    assert.deepEqual(checkMarkedPath('/some_dir/x/f.cbf'), { src: '/some_dir/x/f.cbf', rel: 'f.cbf' });
  });

  it('refuses half a surrogate pair, which no file name holds (issue 7: paths are kept as UTF-8)', () => {
    assert.throws(() => checkMarkedPath('/ramdisk/./a\ud800b.cbf'), (e: unknown) => e instanceof RejectedPath && /not valid Unicode/.test(e.message));
    assert.throws(() => checkMarkedPath('/ramdisk/./a\udc00.cbf'), RejectedPath);
  });
});

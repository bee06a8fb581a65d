// What grimseld takes at the door (G8): a checked path gives the file's real path and the part to replicate,
// and a path that names no file is refused by name before anything is stored.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkMarkedPath, Intake, RejectedPath } from '../../src/grimseld/intake.js';
import type { Catalog } from '../../src/grimseld/catalog.js';
import type { Dispatcher } from '../../src/grimseld/dispatcher.js';
import type { ShiftBook } from '../../src/grimseld/shift-book.js';
import type { Logger } from '../../src/common/logger.js';
import type { MessageHub } from '../../src/grimseld/messages.js';

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

describe('operators\' files and a shift change (G8)', () => {
  it('puts files in the shift current when they are taken, even if it started while they were checked', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'intake-'));
    try {
      const paths = Array.from({ length: 100 }, (_, i) => path.join(dir, `f${i}.cbf`));
      paths.forEach((p) => writeFileSync(p, 'x'));
      const book = { current: { usertime: 1n } };
      const accepted: Array<{ usertime: bigint; files: number }> = [];
      const catalog = { accept: async (usertime: bigint, files: unknown[]) => { accepted.push({ usertime, files: files.length }); return []; } };
      const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const intake = new Intake(catalog as unknown as Catalog, book as unknown as ShiftBook, { submit: () => undefined } as unknown as Dispatcher,
        { publish: () => undefined } as unknown as MessageHub, quiet as unknown as Logger, () => undefined);
      const adding = intake.addMany(paths);
      book.current = { usertime: 2n }; // furkad's ShiftStarted arrives while the paths are being checked
      assert.deepEqual(await adding, []);
      assert.deepEqual(accepted, [{ usertime: 2n, files: 100 }], 'counted in the new shift, not in the one that ended');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

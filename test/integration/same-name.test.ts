// Two different files under one name: a later shift of the same uid:gid whose detector restarted its file
// numbering, or a second file under a name still on the ramdisk. Neither replaces the other, on the ramdisk
// (furkad) or on a storage (grimseld): both are kept, the later one under a numbered name, and it is said
// (F2, G3, G5, G12).
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { callMethod } from '../../src/dbus/bus.js';
import { collectMessages, messagesAfterGrimseldKilled, Ppu } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';

/** sha256 of a file, or '' when there is none. */
const shaOf = (file: string): string => (existsSync(file) ? sha256File(readFileSync(file)) : '');

describe('a different file under a name already taken is kept beside it, never over it (F2, G3, G12)', function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let ram: string;
  let store: string;
  /** [pending, copied, failed] of the internal storage per shift, newest first. */
  const internalCounts = async (): Promise<string[]> => (await ppu.queryStatus(-1))
    .filter((r) => r[3] === 'internal').map((r) => `${r[4]}/${r[5]}/${r[6]}`);

  before(async () => {
    ppu = new Ppu({ prefix: 'ppu-same-name', uid: 500, gid: 501 });
    await ppu.start();
    ram = path.join(ppu.ppuRamdisk, '1mf', '500_501', 'same');
    store = path.join(ppu.storageRoot, 'internal', '1mf', '500_501', 'same');
  });
  after(async () => {
    if (process.env['KEEP_TEST_DIRS']) console.log(ppu?.work);
    await ppu?.stop();
  });

  it('a later shift of the same uid:gid keeps the earlier copy and copies the new file as NAME.~1~, both counted, said once', async () => {
    const det = ppu.detectorRamdisks['1MF']!;
    const a = writeImage(det, 'same/x_00000.img', 5000);
    await eventually(() => shaOf(path.join(store, 'x_00000.img')) === a.sha256, 20_000, "shift A's copy");
    await ppu.startShift(500, 501);
    // G5 clears shift A's original from the ramdisk: the new file gets the plain name there, and meets A on the storage.
    await eventually(() => !existsSync(path.join(ram, 'x_00000.img')), 20_000, "shift A's original cleaned up");
    const msgs = await collectMessages(ppu);
    const b = writeImage(det, 'same/x_00000.img', 5000);
    try {
      await eventually(() => shaOf(path.join(store, 'x_00000.img.~1~')) === b.sha256, 20_000, 'the new file copied under the numbered name');
      assert.equal(shaOf(path.join(store, 'x_00000.img')), a.sha256, "shift A's copy is not replaced");
      assert.equal(shaOf(path.join(ram, 'x_00000.img')), b.sha256, 'the new original on the ramdisk');
      await eventually(async () => (await internalCounts()).slice(0, 2).join(' ') === '0/1/0 0/1/0', 10_000, 'both shifts: 1 copied');
      await eventually(() => msgs.messages.length > 0, 5000, 'a message');
      const [code, short, long] = msgs.messages[0]!;
      assert.equal(code, 'COPY_ERROR');
      assert.equal(short, `${path.join(ram, 'x_00000.img')}:${path.join(store, 'x_00000.img.~1~')}`);
      assert.match(long, /holds another file/);
      assert.equal(msgs.messages.length, 1, JSON.stringify(msgs.messages));
    } finally {
      msgs.stop();
    }

    // The numbered name is journaled: after a SIGKILL the next shift change checks the right copy before it
    // deletes the original (G5, G12), and the counts stay.
    const after = await messagesAfterGrimseldKilled(ppu);
    try {
      await eventually(async () => (await internalCounts()).slice(0, 2).join(' ') === '0/1/0 0/1/0', 20_000, 'counts after a restart');
      await ppu.startShift(500, 501);
      await eventually(() => !existsSync(path.join(ram, 'x_00000.img')), 20_000, 'the new original cleaned up after its numbered copy');
      assert.deepEqual(after.messages, [], 'no DEL_ERROR: the copy was found under its numbered name');
      assert.equal(shaOf(path.join(store, 'x_00000.img')), a.sha256);
      assert.equal(shaOf(path.join(store, 'x_00000.img.~1~')), b.sha256);
      assert.equal(shaOf(path.join(store, 'x_00000.img.~2~')), '', 'copied once');
    } finally {
      after.stop();
    }
  });

  it('furkad places a different file under a name still on the ramdisk as NAME.~1~, keeping both, and logs both names', async () => {
    const det = ppu.detectorRamdisks['1MF']!;
    const a = writeImage(det, 'same/y_00000.img', 6000);
    await eventually(() => shaOf(path.join(store, 'y_00000.img')) === a.sha256, 20_000, 'the first file copied');
    assert.equal(shaOf(path.join(ram, 'y_00000.img')), a.sha256, 'the first file is still on the ramdisk (same shift)');
    const b = writeImage(det, 'same/y_00000.img', 6000);
    await eventually(() => shaOf(path.join(store, 'y_00000.img.~1~')) === b.sha256, 20_000, 'the second file copied under the numbered name');
    assert.equal(shaOf(path.join(ram, 'y_00000.img')), a.sha256, 'the first original is not replaced on the ramdisk');
    assert.equal(shaOf(path.join(ram, 'y_00000.img.~1~')), b.sha256, 'the second original beside it');
    assert.equal(shaOf(path.join(store, 'y_00000.img')), a.sha256, 'the first copy is not replaced');
    await eventually(async () => (await internalCounts())[0] === '0/2/0', 10_000, 'this shift: 2 copied');
    await ppu.furkad!.proc.said(/same\/y_00000\.img\.~1~/); // furkad's log names the numbered name
  });

  it("AddFile of two users' files with one replicated path, both pending at once: both copied, neither replaces the other (G3, G8)", async () => {
    const grimsel = await ppu.grimsel();
    const added = ['alice', 'bob'].map((user) => {
      const file = path.join(ppu.work, user, 'shared', 'z.img');
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, `${user}'s z.img`);
      return file;
    });
    await Promise.all(added.map((f) => callMethod(grimsel, 'AddFile', f.replace('/shared/', '/./shared/'))));
    const copies = path.join(ppu.storageRoot, 'internal', 'shared');
    await eventually(() => existsSync(path.join(copies, 'z.img')) && existsSync(path.join(copies, 'z.img.~1~')), 20_000, 'both copies');
    const texts = ['z.img', 'z.img.~1~'].map((f) => readFileSync(path.join(copies, f), 'utf8')).sort();
    assert.deepEqual(texts, ["alice's z.img", "bob's z.img"]);
  });
});

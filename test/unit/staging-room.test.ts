// What furkad's log says of a detector's files waiting for room on the PPU ramdisk (staging-room.ts, room-notice.ts;
// F10, S4). Found by a long-run tester: a full ramdisk with ~50 000 files on the detector wrote 18 398 lines in a
// minute, one per file that did not fit, again for each that dropped out of a run's list and came back, and rotated
// everything before them out of the log files. The real daemons' side: test/integration/furkad-room.test.ts.
import { strict as assert } from 'node:assert';
import * as os from 'node:os';
import pino from 'pino';
import { StagingRoom } from '../../src/furkad/staging-room.js';

interface Line { msg: string; files?: string[]; file?: string; count?: number }

function logged(): { log: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Line); } });
  return { log, lines };
}

const name = (i: number): string => `run1/img_${String(i).padStart(5, '0')}.cbf`;
const FREE = 1_000_000;

describe('the log of files waiting on a detector for room on the PPU ramdisk (F10, S4)', () => {
  it('says a backlog of 50 000 files flipping in and out of the runs in a few lines, not one per file', async () => {
    const { log, lines } = logged();
    const room = new StagingRoom('1MF', log);
    // A run fails on the first file; the next runs, limited, leave on the detector the ones over the free space: each
    // run another half of them (the free space changes from run to run), and 100 new files each run.
    await room.full(os.tmpdir(), name(0), 2 * FREE);
    let total = 50_000;
    for (let run = 0; run < 10; run++) {
      const over: string[] = [];
      for (let i = 0; i < total; i++) if (i % 2 === run % 2 || i >= total - 100) over.push(name(i));
      room.ran(over, FREE);
      total += 100;
    }
    const noRoom = lines.filter((l) => /do(es)? not fit/.test(l.msg));
    assert.ok(noRoom.length <= 3, `${noRoom.length} lines of files that do not fit (the first: ${lines[0]?.msg ?? ''}), not a few`);
    assert.match(noRoom[0]!.msg, /^run1\/img_00000\.cbf \(2000000 bytes\) does not fit in the \d+ bytes free on the PPU ramdisk/);
    // What a line does not name it counts, and names the first and last of what it counts.
    const said = noRoom.slice(1);
    assert.ok(said.length > 0, 'the files a run left on the detector said');
    assert.match(said[0]!.msg, /^\d+ more files do not fit in the 1000000 bytes free on the PPU ramdisk: .*run1\/img_00002\.cbf, .*\(\d+ more not named\)$/);
    assert.ok(said.every((l) => l.msg.length < 2000), 'each line short');
    // Room again: one line, with how many were taken, not all their names.
    room.ran([], FREE);
    const back = lines.filter((l) => /has room again/.test(l.msg));
    assert.equal(back.length, 1);
    assert.match(back[0]!.msg, /: \d+ files that waited on the detector for it are taken: run1\/img_00001\.cbf, /);
    assert.ok(back[0]!.msg.length < 2000 && (back[0]!.files?.length ?? 0) <= 20, 'the room-back line short');
    assert.equal(room.note(), '');
  });

  it('names each new file when few, and says more at most once per 30 s after the first lines, counting all', async () => {
    const { log, lines } = logged();
    let now = 0;
    const room = new StagingRoom('1MF', log, () => now);
    await room.full(os.tmpdir(), name(19), FREE + 1);
    // The next run leaves the rest (20 files, the one it failed on among them): each named, the last too.
    room.ran(Array.from({ length: 21 }, (_, i) => name(19 + i)), FREE);
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.msg, `20 more files do not fit in the 1000000 bytes free on the PPU ramdisk: they stay on the detector until there is room, other files go on: ${
      Array.from({ length: 20 }, (_, i) => name(20 + i)).join(', ')}`);
    // Ten minutes of runs every second, each leaving 10 files more: a line per 30 s at most.
    let over = Array.from({ length: 21 }, (_, i) => name(19 + i));
    for (let s = 1; s <= 600; s++) {
      now = s * 1000;
      over = [...over, ...Array.from({ length: 10 }, (_, i) => name(over.length + 19 + i))];
      room.ran(over, FREE);
    }
    const noRoom = lines.filter((l) => /do(es)? not fit/.test(l.msg));
    assert.ok(noRoom.length <= 3 + 600 / 30, `${noRoom.length} lines in ten minutes`);
    assert.ok(noRoom.length >= 600 / 30, 'and the files that came on said');
    // Every file said or counted once, but those of the last 30 s, not said yet.
    const counted = noRoom.reduce((n, l) => n + (l.count ?? 1), 0);
    assert.ok(counted <= over.length && counted > over.length - 300, `${counted} counted of ${over.length}`);
    assert.match(room.note(), /^6021 files wait on the detector until the PPU ramdisk has room/);
  });
});

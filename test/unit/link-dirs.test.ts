// Which links the shift-change clean-up takes for a fill guard's (G5, G6; link-dirs.ts): only those that read
// exactly as one of its own would, so that a user's own links stay (G2).
import { strict as assert } from 'node:assert';
import { lstatSync, lutimesSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { isGuardLink, LinkSweeper, shiftSeconds, type LinkDir } from '../../src/grimseld/link-dirs.js';
import { Journal } from '../../src/grimseld/journal.js';
import { Catalog } from '../../src/grimseld/catalog.js';
import { MessageHub, type Message } from '../../src/grimseld/messages.js';
import { initProvenance } from '../../src/common/provenance.js';

const log = pino({ level: 'silent' });

/** Sets extended attribute `name` on `file` (setfattr, as an administrator would look at them with getfattr). */
function xattrSet(file: string, name: string, value: string): void {
  execFileSync('setfattr', ['-n', name, '-v', value, file]);
}

describe("the fill guards' links of ended shifts (G5)", () => {
  const d: LinkDir = { where: 'ramdisk', dir: '1mf/500_501/run1', to: '/data/1mf/500_501/run1' };

  it('takes a link to the copy of its own name, or to the numbered name its copy got beside another file', () => {
    assert.ok(isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1/x_0001.cbf'));
    assert.ok(isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1/x_0001.cbf.~2~'));
  });

  it("leaves any other link: another name's copy, another directory, a relative text, a look-alike directory", () => {
    assert.ok(!isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1/x_0002.cbf'), 'the copy of another name');
    assert.ok(!isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run2/x_0001.cbf'), 'another directory');
    assert.ok(!isGuardLink(d, 'x_0001.cbf', 'x_0001.cbf'), 'relative');
    assert.ok(!isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1x/x_0001.cbf'), 'a directory whose name starts alike');
    assert.ok(!isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1/sub/x_0001.cbf'), 'below it');
    assert.ok(!isGuardLink(d, 'x_0001.cbf', '/data/1mf/500_501/run1/x_0001.cbf.~0~'), 'not a number grimseld gives');
  });
});

describe("the sweep of an ended shift's links (G5)", () => {
  let root: string;
  let journal: Journal | undefined;
  before(initProvenance);
  beforeEach(() => { root = mkdtempSync(path.join(os.tmpdir(), 'link-sweep-')); });
  afterEach(async () => {
    await journal?.close();
    journal = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  /** A catalog with shifts `u1` (whose links are to sweep, in ramdisk/run) and `u2` (current), a sweeper, its messages. */
  async function world(u1: bigint, u2: bigint): Promise<{ catalog: Catalog; sweeper: LinkSweeper; messages: Message[]; link: (name: string, shift: bigint) => void }> {
    const ramdisk = path.join(root, 'ramdisk');
    const to = path.join(root, 'internal', 'run');
    mkdirSync(path.join(ramdisk, 'run'), { recursive: true });
    mkdirSync(to, { recursive: true });
    const opened = await Journal.open(path.join(root, 'state'));
    journal = opened.journal;
    const catalog = new Catalog(opened.journal, { storages: ['internal'], historyMaxEntries: 50, ramdiskRoot: ramdisk, hasExternal: false });
    catalog.replay(opened.records);
    await catalog.shift(u1, 500, 501);
    await catalog.noteLinkDir(u1, { where: 'ramdisk', dir: 'run', to });
    await catalog.shift(u2, 500, 501); // the same user again: the same directory
    const hub = new MessageHub(log);
    const messages: Message[] = [];
    hub.subscribe((m) => messages.push(m));
    const sweeper = new LinkSweeper(catalog, { ramdisk, internal: path.join(root, 'internal') }, hub, log, { firstMs: 1000, maxMs: 2000 }, undefined,
      [path.join(root, 'internal'), path.join(root, 'external')]);
    /** A copy of `name` recorded as shift `shift`'s (I3), and the guard's link to it on the ramdisk. */
    const link = (name: string, shift: bigint): void => {
      writeFileSync(path.join(to, name), name);
      xattrSet(path.join(to, name), 'user.ppu.checksum', `xxh128:${'0'.repeat(32)}`);
      xattrSet(path.join(to, name), 'user.ppu.shift', `${shift}:500:501`);
      symlinkSync(path.join(to, name), path.join(ramdisk, 'run', name));
    };
    return { catalog, sweeper, messages, link };
  }

  it("goes by the shift the copy records: an ended shift's link made after the next shift began goes, the current one's stays whatever the clock says", async () => {
    const now = BigInt(Date.now()) * 1000n;
    // Shift 2 started an hour ahead of the clock (set back since): every link here is older than its start.
    const u1 = now - 3_600_000_000n;
    const u2 = now + 3_600_000_000n;
    const { catalog, sweeper, link } = await world(u1, u2);
    link('old.cbf', u1); // linked late: after shift 2 had begun (grimseld learned of it later)
    link('current.cbf', u2);
    // A copy the internal guard replaced by a link to the external one (G7): its shift is read there.
    const ext = path.join(root, 'external', 'run');
    mkdirSync(ext, { recursive: true });
    for (const [name, shift] of [['g7-old.cbf', u1], ['g7-current.cbf', u2]] as const) {
      link(name, shift);
      rmSync(path.join(root, 'internal', 'run', name));
      writeFileSync(path.join(ext, name), name);
      xattrSet(path.join(ext, name), 'user.ppu.checksum', `xxh128:${'0'.repeat(32)}`);
      xattrSet(path.join(ext, name), 'user.ppu.shift', `${shift}:500:501`);
      symlinkSync(path.join(ext, name), path.join(root, 'internal', 'run', name));
    }
    sweeper.sweep(u2);
    for (const end = Date.now() + 3000; catalog.linkDirsBefore(u2).length > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
    await sweeper.stop();
    assert.deepEqual(readdirSync(path.join(root, 'ramdisk', 'run')).sort(), ['current.cbf', 'g7-current.cbf'], "the ended shift's links gone, the current one's kept");
  });

  it("where the copy records no shift, goes by the link's own mtime (its shift's start, as the guard sets it), not by the clock: the current shift's links stay after the clock was stepped back", async () => {
    const now = BigInt(Date.now()) * 1000n;
    // The current shift began an hour ahead of the clock as it reads now (stepped back since): every link made
    // since is older by its ctime than the shift's start. The shifts' starts have µs digits, as StartShift's do.
    const u1 = now - 7_200_000_123n;
    const u2 = now + 3_600_000_457n;
    const { catalog, sweeper } = await world(u1, u2);
    const run = path.join(root, 'ramdisk', 'run');
    for (const [name, shift] of [['old.cbf', u1], ['a-second-before.cbf', u2 - 1_000_000n], ['current.cbf', u2], ['current-too.cbf', u2 + 1n]] as const) {
      // A storage without extended attributes: the copy says nothing of its shift.
      writeFileSync(path.join(root, 'internal', 'run', name), name);
      symlinkSync(path.join(root, 'internal', 'run', name), path.join(run, name));
      lutimesSync(path.join(run, name), shiftSeconds(shift), shiftSeconds(shift));
    }
    // Whole seconds, rounded up: the kernel keeps them as given, on any file system that holds links.
    assert.equal(lstatSync(path.join(run, 'current.cbf'), { bigint: true }).mtimeNs, BigInt(shiftSeconds(u2)) * 1_000_000_000n);
    assert.ok(BigInt(shiftSeconds(u2)) * 1_000_000n >= u2, 'never before its shift began');
    sweeper.sweep(u2);
    for (const end = Date.now() + 3000; catalog.linkDirsBefore(u2).length > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
    await sweeper.stop();
    assert.deepEqual(readdirSync(run).sort(), ['current-too.cbf', 'current.cbf'], "the ended shifts' links gone, the current one's kept");
  });

  it('waits out its pause after a failure however often the clean-up asks (one DEL_ERROR per try)', async () => {
    const now = BigInt(Date.now()) * 1000n;
    const { sweeper, messages } = await world(now - 2_000_000n, now);
    rmSync(path.join(root, 'ramdisk'), { recursive: true, force: true }); // the root missing: each try fails
    for (let i = 0; i < 30; i++) {
      sweeper.sweep(now); // as the reclaimer's tick does while earlier files wait for copies
      await new Promise((r) => setTimeout(r, 20));
    }
    await sweeper.stop();
    assert.equal(messages.filter((m) => m.errcode === 'DEL_ERROR').length, 1, 'one try in 0.6 s, with a first pause of 1 s');
  });
});

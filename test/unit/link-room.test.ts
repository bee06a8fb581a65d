// grimseld's own directory for making fill-guard links (G6, docs/threat-model.md; link-room.ts): made root's 0700,
// taken back from a user who made its name first on a 1777 ramdisk root (reviewer r5), and emptied only of the links
// a killed grimseld left.
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LINK_ROOM, openLinkRoom } from '../../src/grimseld/link-room.js';

describe("the fill guards' link room (G6)", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'link-room-'));
    chmodSync(root, 0o1777); // a ramdisk root every user may write in
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("renames aside what a user made under its name first, makes its own, and empties it of links only", () => {
    for (const [what, make] of [
      ['a directory', () => { mkdirSync(path.join(root, LINK_ROOM), { mode: 0o700 }); chownSync(path.join(root, LINK_ROOM), 65534, 65534); }],
      ['a link', () => symlinkSync('/tmp', path.join(root, LINK_ROOM))],
      ['a file', () => writeFileSync(path.join(root, LINK_ROOM), 'x')],
    ] as const) {
      rmSync(path.join(root), { recursive: true, force: true });
      mkdirSync(root, { mode: 0o1777 });
      make();
      const said: string[] = [];
      const room = openLinkRoom(path.join(root, '.'), (was, now) => said.push(`${was} -> ${now}`));
      room.close();
      const st = statSync(path.join(root, LINK_ROOM));
      assert.deepEqual([st.isDirectory(), st.uid, st.mode & 0o777], [true, process.getuid!(), 0o700], `${what}: grimseld's own room`);
      assert.equal(said.length, 1, `${what}: said`);
      const aside = readdirSync(root).filter((n) => n.startsWith(`${LINK_ROOM}.not-grimseld.`));
      assert.equal(aside.length, 1, `${what}: kept aside, not removed`);
      assert.ok(lstatSync(path.join(root, aside[0]!)), `${what}: still there`);
    }
    // A new process's first use: links left by a killed grimseld go, anything else stays.
    const fresh = mkdtempSync(path.join(os.tmpdir(), 'link-room-'));
    try {
      mkdirSync(path.join(fresh, LINK_ROOM), { mode: 0o700 });
      symlinkSync('/data/copy', path.join(fresh, LINK_ROOM, '7.0123456789ab'));
      writeFileSync(path.join(fresh, LINK_ROOM, 'a-copy.img'), 'copied there by a path named so');
      openLinkRoom(fresh).close();
      assert.deepEqual(readdirSync(path.join(fresh, LINK_ROOM)), ['a-copy.img']);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});

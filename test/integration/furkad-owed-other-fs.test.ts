// Files owed to an ended shift (A5) when the new shift's target is on another file system: each shift's StartShift
// names its own target below the configured one's directory, here two tmpfs mounts. The drain of the first could not
// take every image (its target full); the new shift's runs take them into its own staging, on the other tmpfs, and
// they must still reach the old shift's directory, with its owner and provenance (I1, I3), once each. Before, they
// were renamed into the old target's keeping place: EXDEV, retried for ever, never delivered (found by a reviewer).
import { strict as assert } from 'node:assert';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { Ppu } from '../fixtures/ppu.js';
import { eventually, listFiles } from '../fixtures/files.js';
import { mountTmpfs } from '../fixtures/tmpfs.js';
import { MB, saidNoRoomFor, saidOwed, writeImages } from '../fixtures/full-ppu.js';
import { initProvenance, readProvenance } from '../../src/common/provenance.js';

const IMAGES = 30;

/** What happens to furkad while the old target is full and the files wait in the new target's staging (or on the detector). */
const RESTARTS = ['none', 'kill', 'stop'] as const;
const CASES = (['rsync', 'agent'] as const).flatMap((transport) => RESTARTS.map((restart) => ({ transport, restart })));

for (const { transport, restart } of CASES) describe(`furkad over ${transport}: files owed to an ended shift whose target is on another file system (A5; furkad ${restart === 'none' ? 'running on' : restart === 'kill' ? 'killed meanwhile' : 'restarted meanwhile'})`, function () {
  this.timeout(240_000);

  before(async () => {
    await initProvenance();
  });

  it("places them into the old shift's directory on its own file system, owned by its user, with their provenance, once each", async () => {
    const ppu = new Ppu({ prefix: 'ppu-owed-xdev', transport });
    const internal = path.join(ppu.storageRoot, 'internal');
    // A mountpoint that is not mounted: nothing is copied, so nothing on the first target is freed (G13).
    ppu.opts.storages = { 'storage.internal': { type: 'INTERNAL', target: internal, mountpoint: internal, n_copy_processes: 4 } };
    // Two targets below the configured target's directory (`<ppu-ramdisk>/./1mf`), each a file system of its own.
    const first = mountTmpfs(path.join(ppu.ppuRamdisk, 'a'), 20 * MB);
    const second = mountTmpfs(path.join(ppu.ppuRamdisk, 'b'), 200 * MB);
    await ppu.start();
    try {
      await ppu.startShift(500, 501, [['1MF', '', `${first}/./1mf`]]);
      const [usertime] = await ppu.furkaProperty<[bigint, number, number]>('Shift');
      const root = ppu.detectorRamdisks['1MF']!;
      const images = writeImages(ppu, IMAGES);
      await saidNoRoomFor(ppu);
      // Over rsync furkad learns of a file as a run lists it: the last one listed too before the change.
      if (transport === 'rsync') await saidNoRoomFor(ppu, path.basename(images[IMAGES - 1]!.rel));
      await ppu.startShift(600, 600, [['1MF', '', `${second}/./1mf`]]);
      await saidOwed(ppu);
      // They wait on the detector while the old target has no room even for the record of its keeping place. A furkad
      // killed meanwhile (its shift goes on) or stopped and started (the configured default shift, a third file system:
      // the work directory's) still gives them to the old shift, across file systems.
      if (restart === 'kill') {
        await ppu.killFurkad();
        await ppu.startFurkad();
      } else if (restart === 'stop') {
        assert.equal(await ppu.furkad!.proc.stop(30_000), 0, 'a clean stop');
        await ppu.startFurkad();
      }
      // Room again on the first target: INTERNAL mounted, copies made, the old shift's originals deleted (G5).
      mountTmpfs(internal, 200 * MB);
      const at = (u: string, rel: string): boolean => existsSync(path.join(internal, '1mf', u, rel));
      await eventually(() => images.every((f) => at('500_501', f.rel) || at('600_600', f.rel)), 150_000, 'every image copied to INTERNAL');
      assert.deepEqual(images.filter((f) => !at('500_501', f.rel) || at('600_600', f.rel)).map((f) => f.rel), [],
        "images known before StartShift that are not in the old shift's directory only (A5)");
      for (const f of images) {
        const copy = path.join(internal, '1mf/500_501', f.rel);
        const st = lstatSync(copy);
        assert.deepEqual([st.uid, st.gid, st.size], [500, 501, f.size], `${f.rel}: the old shift's user's, whole`);
        assert.equal(createHash('sha256').update(readFileSync(copy)).digest('hex'), f.sha256, `${f.rel}: the detector's bytes`);
        const fd = openSync(copy, 'r');
        const p = readProvenance(fd);
        closeSync(fd);
        assert.deepEqual(p?.shift, { startUs: usertime, uid: 500, gid: 501 }, `${f.rel}: provenance of the old shift (I3)`);
        assert.equal(p?.detector, '1MF');
      }
      // Once each: no numbered second copy of any.
      assert.deepEqual(listFiles(path.join(internal, '1mf')).filter((rel) => /\.~\d+~$/.test(rel)), [], 'no image placed twice');
      await eventually(() => readdirSync(path.join(root, 'run1')).length === 0, 30_000, 'every source taken off the detector (A4)');
      let rows = await ppu.queryStatus(-1);
      const copied = (uid: number): number => rows.filter((r) => r[1] === uid).reduce((n, r) => n + Number(r[5]), 0);
      await eventually(async () => {
        rows = await ppu.queryStatus(-1);
        return copied(500) + copied(600) >= IMAGES;
      }, 30_000, `grimseld to count the ${IMAGES} copies`);
      assert.deepEqual([copied(500), copied(600)], [IMAGES, 0], 'copied per shift in grimseld\'s status');
      // Nothing left in either target's staging or keeping places.
      for (const [where, what] of [[second, "the new target's staging"], [first, "the old target's keeping place"]] as const) {
        const left = (): string[] => listFiles(path.join(where, '1mf/.furkad-staging'));
        await eventually(() => left().length === 0, 30_000, `${what} empty`).catch((e: Error) => { throw new Error(`${e.message}: ${left().join(', ')}`); });
      }
    } finally {
      await ppu.stop();
    }
  });
});

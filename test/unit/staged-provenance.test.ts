// A staged file gets the owner of the shift it is placed in (F3, A5): one an earlier furkad left in staging, killed
// between the detector's removal and the placing while its shift was not resumed, was rsync's for that shift's user
// and went into the next shift's directory still theirs (found by hostile tester h11).
import { strict as assert } from 'node:assert';
import { chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { StagedProvenance } from '../../src/furkad/staged-provenance.js';
import { prepareChecksums } from '../../src/common/checksum.js';

describe('staged files and the shift they are placed in (F3, I3)', () => {
  let staging: string;
  before(prepareChecksums);
  beforeEach(() => { staging = mkdtempSync(path.join(os.tmpdir(), 'staged-')); });
  afterEach(() => rmSync(staging, { recursive: true, force: true }));

  it("gives a staged file of another shift's owner the owner of the shift it is placed in, as it takes its checksum", async () => {
    mkdirSync(path.join(staging, 'run1'));
    const file = path.join(staging, 'run1', 'img_003.cbf');
    writeFileSync(file, 'image bytes');
    chownSync(file, 500, 501); // rsync's --chown for the shift of the furkad that was killed
    const provenance = new StagedProvenance('2MF', pino({ level: 'silent' }));
    const hex = await provenance.checksumOf(staging, { usertime: 1_764_979_200_000_000n, uid: 2000, gid: 2001 }, 'run1/img_003.cbf');
    assert.match(hex ?? '', /^[0-9a-f]{32}$/);
    const st = statSync(file);
    assert.deepEqual([st.uid, st.gid], [2000, 2001], "the placing shift's owner");
  });
});

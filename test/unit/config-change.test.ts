// What a furkad started with a changed furkad.conf does with owed state of detectors it no longer serves so
// (config-change.ts, detector-places.ts; A5). The real daemons' side: test/integration/furkad-config-change.test.ts.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { RsyncOwed, rsyncOwedFile } from '../../src/furkad/rsync-owed.js';
import { flushedCopy } from '../../src/furkad/json-state.js';
import { DetectorPlaces, originOf } from '../../src/furkad/detector-places.js';
import { takeUpOwed } from '../../src/furkad/config-change.js';
import { AgentPlaced } from '../../src/furkad/agent-placed.js';
import type { DetectorConfig } from '../../src/furkad/config.js';
import type { OwedShift } from '../../src/furkad/transport.js';

const quiet = pino({ level: 'silent' });
const shift = (usertime: bigint, uid: number): OwedShift => ({ usertime, uid, gid: uid, usrdir: `${uid}_${uid}`, target: '/ppu/./1mf', configuredTarget: '/ppu/./1mf' });
const detector = (transport: 'rsync' | 'agent', port: number): DetectorConfig =>
  ({ transport, remoteIP: '10.0.0.1', port, module: 'ramdisk', source: '/', target: '/ppu/./1mf', remove_source: true } as unknown as DetectorConfig);

/** A logger that keeps what it was told at error level. */
function recording(): { log: pino.Logger; errors: string[] } {
  const errors: string[] = [];
  const log = pino({ level: 'error' }, { write: (line: string) => { errors.push(line); } });
  return { log, errors };
}

describe('owed files of a detector furkad.conf no longer serves so (A5)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'change-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** State as a furkad serving rsync detector 1MF left it: a.cbf and b.cbf owed to shift 100 (uid 500). */
  async function owedBy1MF(port: number): Promise<DetectorPlaces> {
    const o = new RsyncOwed('1MF', quiet, rsyncOwedFile(dir, '1MF'));
    // As the listing before the change had them: 10 bytes, mtime 1000 s (the detector's clock).
    o.learned('', ['run/a.cbf', 'run/b.cbf'], () => ({ size: 10, mtimeS: 1000 }));
    o.owe(shift(100n, 500));
    await o.flushed(); // that furkad's stop waited for its copy flushed to disk (json-state.ts)
    const places = DetectorPlaces.open(dir, quiet);
    places.note({ id: '1MF', transport: 'rsync', target: '/ppu/./1mf', configuredTarget: '/ppu/./1mf', origin: originOf(detector('rsync', port)) });
    return DetectorPlaces.open(dir, quiet);
  }

  it('are the renamed detector\'s when it serves the same rsync daemon and module: still the ended shift\'s', async () => {
    const places = await owedBy1MF(873);
    const agentPlaced = AgentPlaced.open(dir);
    takeUpOwed(dir, { EIGER: detector('rsync', 873) }, places, agentPlaced, quiet);
    agentPlaced.close();
    assert.ok(!existsSync(rsyncOwedFile(dir, '1MF')), 'the old file is gone (not taken again at the next start)');
    assert.ok(!existsSync(flushedCopy(rsyncOwedFile(dir, '1MF'))), 'and its copy flushed to disk');
    const eiger = new RsyncOwed('EIGER', quiet, rsyncOwedFile(dir, 'EIGER'));
    assert.equal(eiger.owedTo('', 'run/a.cbf', 200n)?.uid, 500);
    assert.equal(eiger.owedTo('', 'run/b.cbf', 200n)?.uid, 500);
  });

  it('are taken over from the copy flushed to disk where a power cut left the file empty', async () => {
    const places = await owedBy1MF(873);
    writeFileSync(rsyncOwedFile(dir, '1MF'), ''); // what XFS leaves of a file renamed into place and never flushed
    const agentPlaced = AgentPlaced.open(dir);
    takeUpOwed(dir, { EIGER: detector('rsync', 873) }, places, agentPlaced, quiet);
    agentPlaced.close();
    assert.equal(new RsyncOwed('EIGER', quiet, rsyncOwedFile(dir, 'EIGER')).owedTo('', 'run/a.cbf', 200n)?.uid, 500);
  });

  it('are told from a file written since under the same name by what was listed, not by a clock, after the rename', async () => {
    const places = await owedBy1MF(873);
    const agentPlaced = AgentPlaced.open(dir);
    takeUpOwed(dir, { EIGER: detector('rsync', 873) }, places, agentPlaced, quiet);
    agentPlaced.close();
    const eiger = new RsyncOwed('EIGER', quiet, rsyncOwedFile(dir, 'EIGER'));
    assert.equal(eiger.owedTo('', 'run/a.cbf', 200n, { size: 10, mtimeMs: 1000_400 })?.uid, 500, 'the file listed before the change');
    // Rewritten since (another size), with an mtime long before the shift ended by the PPU's clock (detector behind).
    assert.equal(eiger.owedTo('', 'run/b.cbf', 200n, { size: 11, mtimeMs: 1000_400 }), undefined, "a new file: not the ended shift's");
  });

  it('are said as an error naming the file, the count and the shift when no detector serves that daemon any more, or the transport changed', async () => {
    for (const detectors of [{ EIGER: detector('rsync', 874) }, { '1MF': detector('agent', 49372) }]) {
      const places = await owedBy1MF(873);
      const { log, errors } = recording();
      const agentPlaced = AgentPlaced.open(dir);
      takeUpOwed(dir, detectors, places, agentPlaced, log);
      agentPlaced.close();
      assert.equal(errors.length, 1, errors.join());
      assert.match(errors[0]!, /2 files on rsync detector 1MF, owed to ended shifts, cannot be taken for them/);
      assert.match(errors[0]!, /rsync-owed-1MF\.json/);
      assert.match(errors[0]!, /500:500 \(usertime 100\)/);
      assert.ok(existsSync(rsyncOwedFile(dir, '1MF')), 'kept: restoring the old section takes them');
    }
  });
});

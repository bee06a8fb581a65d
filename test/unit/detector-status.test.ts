// The detector status that crosses the bus (src/dbus/furka-interface.ts) and its named conversions: to the
// Detectors row furkad sends, back from it, and to the record ppuctl shows and prints as JSON.
import { strict as assert } from 'node:assert';
import { detectorRow, detectorStatus, type DetectorStatus } from '../../src/dbus/furka-interface.js';
import { detectorRecord, formatDetectorTable } from '../../src/ppuctl/status-table.js';

const status: DetectorStatus = { id: '1MF', state: 'transferring', lastError: '', files: 12, bytes: 3_000_000, lastRunUs: 1_234_500 };

describe('detector status on the bus (F1, F10)', () => {
  it('goes to a Detectors row (sssttt) and back unchanged', () => {
    const row = detectorRow(status);
    assert.deepEqual(row, ['1MF', 'transferring', '', 12n, 3_000_000n, 1_234_500n]);
    assert.deepEqual(detectorStatus(row), status);
  });

  it('a loop\'s own counts do not cross the bus', () => {
    assert.equal(detectorRow({ ...status, ...{ runs: 4, refused: 1 } }).length, 6);
  });

  it('ppuctl keeps the keys status --json has always had, the last run in ms', () => {
    const record = detectorRecord(detectorRow(status));
    assert.deepEqual(Object.keys(record), ['id', 'state', 'lastError', 'files', 'bytes', 'lastRunMs']);
    assert.equal(record.lastRunMs, 1234.5);
    assert.match(formatDetectorTable([record]), /1MF +\| transferring \| +12 \| +3\.0 \| +1\.23\d s \|/);
  });
});

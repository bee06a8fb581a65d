// ppuctl prints names a detector's writer or a shift's user chose: shown, never acted on by the terminal (S7).
import { strict as assert } from 'node:assert';
import { visible } from '../../src/ppuctl/terminal-text.js';
import { formatDetectorTable, formatStatusTable } from '../../src/ppuctl/status-table.js';

describe('ppuctl: text a terminal shows, never acts on (S7)', () => {
  it('shows control characters, C1 controls and bidirectional overrides as escapes; leaves other names as they are', () => {
    assert.equal(visible('x\x1b[2J\x1b[HFAKE\x1b[8m.cbf'), 'x\\x1b[2J\\x1b[HFAKE\\x1b[8m.cbf');
    assert.equal(visible('a\nb\tc\x07\x7f\x9b2J'), 'a\\x0ab\\x09c\\x07\\x7f\\x9b2J');
    assert.equal(visible('img_\u202egpj.cbf'), 'img_\\u202egpj.cbf');
    assert.equal(visible('Ä 😀 \\back "q" -x.cbf'), 'Ä 😀 \\back "q" -x.cbf');
  });

  it("prints a detector's last error naming a file with escape sequences as text: the table cannot be redrawn by it", () => {
    const out = formatDetectorTable([{ id: '1MF', state: 'retrying', lastError: "refused t/x\x1b[2J\x1b[HFAKE-STATUS-ALL-OK\x1b[8m.cbf", files: 3, bytes: 0, lastRunMs: 0 }]);
    assert.ok(!/[\x00-\x09\x0b-\x1f]/.test(out), JSON.stringify(out));
    assert.match(out, /refused t\/x\\x1b\[2J\\x1b\[HFAKE-STATUS-ALL-OK\\x1b\[8m\.cbf/);
    const status = formatStatusTable([[1_700_000_000_000_000n, 500, 501, 'ext\x1b[8m', 1n, 2n, 0n]]);
    assert.ok(!status.includes('\x1b'), 'nor a storage column');
  });
});

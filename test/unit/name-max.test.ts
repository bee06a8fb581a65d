// Names made beside long final names, and shown forms of names, stay within NAME_MAX (G3).
import { strict as assert } from 'node:assert';
import { fitName, NAME_MAX, tempPrefix } from '../../src/common/name-max.js';

describe('temp names beside a final name (G3)', () => {
  it('is .NAME + tag while that fits, and a shortened, hashed NAME beyond, never more than NAME_MAX bytes with its suffix', () => {
    assert.equal(tempPrefix('img_00001.cbf', '.grimsel-', 8), '.img_00001.cbf.grimsel-');
    for (const name of ['a'.repeat(237), 'a'.repeat(238), 'n'.repeat(255), 'ä'.repeat(127), `${'x'.repeat(200)}😀😀😀😀😀😀😀😀😀😀😀😀😀.cbf`]) {
      const p = tempPrefix(name, '.grimsel-', 8);
      assert.ok(Buffer.byteLength(p) + 8 <= NAME_MAX, `${name.length}: ${Buffer.byteLength(p)}`);
      assert.ok(p.startsWith('.') && p.endsWith('.grimsel-'));
      assert.ok(!p.includes('\ufffd'), 'cut at a character boundary');
    }
    assert.equal(tempPrefix('a'.repeat(237), '.grimsel-', 8), `.${'a'.repeat(237)}.grimsel-`, 'exactly 255 bytes: as it is');
    // Two long names with the same beginning: different prefixes (one's sweep never removes the other's temp file).
    const [a, b] = [`${'s'.repeat(250)}_1.cbf`, `${'s'.repeat(250)}_2.cbf`].map((n) => tempPrefix(n, '.grimsel-', 8));
    assert.notEqual(a, b);
    assert.ok(!a!.startsWith(b!) && !b!.startsWith(a!));
    assert.equal(tempPrefix('l'.repeat(250), '.grimsel-link-', 8).length + 8, NAME_MAX);
  });

  it('fits a shown name (\\#ooo for each byte that is not UTF-8 makes it up to four times as long) with its hash', () => {
    const shown = '\\#351'.repeat(200);
    const fit = fitName(shown, 0);
    assert.equal(Buffer.byteLength(fit), NAME_MAX);
    assert.match(fit, /~[0-9a-f]{8}$/);
    assert.notEqual(fitName(`${shown}a`, 0), fit, 'another long name, another result');
    assert.equal(fitName('short.cbf', 0), 'short.cbf');
  });
});

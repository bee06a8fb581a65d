// Temp names beside long final names stay within NAME_MAX (G3).
import { strict as assert } from 'node:assert';
import { NAME_MAX, tempPrefix } from '../../src/common/temp-name.js';

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
});

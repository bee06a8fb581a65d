// The names a file gets beside a different file of its name (F2, G3): GNU numbered-backup style.
import { strict as assert } from 'node:assert';
import { candidateNames, isNumberedName, MAX_NUMBERED, numberedName } from '../../src/common/numbered-name.js';

describe('numbered names beside a taken name (F2, G3)', () => {
  it('appends .~N~ after the whole name, extension included, so no image template or *.img glob matches it', () => {
    assert.equal(numberedName('same/x_00000.img', 1), 'same/x_00000.img.~1~');
    assert.equal(numberedName('/data/u/x_00001.cbf', 12), '/data/u/x_00001.cbf.~12~');
    assert.equal(numberedName('noext', 2), 'noext.~2~');
    assert.ok(!/\.(img|cbf|tif)$/.test(numberedName('x_00000.cbf', 3)));
  });

  it('cuts a name as long as Linux allows so that the numbered one fits too (255 bytes), in the last component only', () => {
    const long = `${'n'.repeat(251)}.cbf`;
    for (const n of [1, 12, MAX_NUMBERED]) {
      const numbered = numberedName(`/data/u/${long}`, n);
      const base = numbered.slice('/data/u/'.length);
      assert.ok(numbered.startsWith('/data/u/nnn') && base.endsWith(`.~${n}~`), numbered);
      assert.equal(Buffer.byteLength(base), 255);
      // Numbered again from that one: the same stem, another number.
      const again = numberedName(numbered, n + 1);
      assert.ok(again.endsWith(`.~${n + 1}~`) && !again.includes(`.~${n}~`) && Buffer.byteLength(again.slice('/data/u/'.length)) <= 255, again);
    }
    // Two long names with the same start: never one numbered name for both (a file there is taken for this
    // one by size and mtime where no checksum is known).
    assert.notEqual(numberedName(`${'s'.repeat(252)}_1.cbf`, 1), numberedName(`${'s'.repeat(252)}_2.cbf`, 1));
    const umlauts = numberedName('ä'.repeat(127), 1);
    assert.ok(Buffer.byteLength(umlauts) <= 255 && !umlauts.includes('\ufffd'), 'cut at a character boundary');
  });

  it('numbers an already numbered name from its stem', () => {
    assert.equal(numberedName('x.img.~1~', 2), 'x.img.~2~');
    assert.equal(numberedName('x.img.~0~', 1), 'x.img.~0~.~1~', '~0~ is never made: not numbered');
  });

  it('tries the name itself first, then .~1~, .~2~ … and never the same name twice', () => {
    const first = (file: string, n: number): string[] => {
      const out: string[] = [];
      for (const name of candidateNames(file)) {
        out.push(name);
        if (out.length === n) break;
      }
      return out;
    };
    assert.deepEqual(first('a/x.img', 4), ['a/x.img', 'a/x.img.~1~', 'a/x.img.~2~', 'a/x.img.~3~']);
    assert.deepEqual(first('a/x.img.~2~', 4), ['a/x.img.~2~', 'a/x.img.~1~', 'a/x.img.~3~', 'a/x.img.~4~']);
    assert.equal([...candidateNames('x')].length, MAX_NUMBERED + 1, 'bounded');
  });

  it('tells numbered names from image names', () => {
    assert.ok(isNumberedName('/r/./u/x.img.~3~'));
    assert.ok(!isNumberedName('/r/./u/x.img'));
    assert.ok(!isNumberedName('x.~~'));
    assert.ok(!isNumberedName('x.img~'));
  });
});

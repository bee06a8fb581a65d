// Which links the shift-change clean-up takes for a fill guard's (G5, G6; link-dirs.ts): only those that read
// exactly as one of its own would, so that a user's own links stay (G2).
import { strict as assert } from 'node:assert';
import { isGuardLink, type LinkDir } from '../../src/grimseld/link-dirs.js';

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

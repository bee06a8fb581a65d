// ppuctl add of a file grimseld's unit cannot see (G8): the answer says why, not just that it is missing.
import { strict as assert } from 'node:assert';
import { unseen } from '../../src/ppuctl/unseen-hint.js';

describe('ppuctl add: the hint for a file the grimseld unit does not see (G8)', () => {
  const there = (): boolean => true;

  it('names the unit for a file below /tmp that grimseld says does not exist', () => {
    assert.match(unseen('/tmp/x.cbf', '/tmp/x.cbf does not exist', there), /PrivateTmp=yes and ProtectHome=yes: it does not see your files below \/tmp\//);
  });

  it('names the unit for a file below /home, which ProtectHome makes a directory grimseld may not search (found by a tester)', () => {
    assert.match(unseen('/home/alice/h.txt', 'uid 1000 may not search directory /home', there), /does not see your files below \/home\//);
  });

  it('says nothing for a file elsewhere, a file the caller does not have either, or another answer', () => {
    assert.equal(unseen('/data/x.cbf', '/data/x.cbf does not exist', there), '');
    assert.equal(unseen('/tmp/x.cbf', '/tmp/x.cbf does not exist', () => false), '');
    assert.equal(unseen('/home/alice/h.txt', 'is not a regular file', there), '');
  });
});

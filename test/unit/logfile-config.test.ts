// The `logfile` key checked on the machine (S4): a private /tmp, writable under the shipped units yet removed by
// systemd at every stop, is refused, not written to and lost (found by tester fx1: logfile = /tmp/g.log).
import { strict as assert } from 'node:assert';
import { logfileNote, privateTmpProblem } from '../../src/common/logfile-config.js';

/** What /proc/self/mountinfo says in a unit with PrivateTmp=yes: /tmp and /var/tmp bind-mounted from systemd-private-…. */
const UNIT = [
  '22 1 8:1 / / ro,relatime shared:1 - xfs /dev/sda1 rw',
  '40 22 8:1 /tmp/systemd-private-0b1e7c-grimseld.service-Ab12Cd/tmp /tmp rw,relatime shared:20 - xfs /dev/sda1 rw',
  '41 22 8:1 /var/tmp/systemd-private-0b1e7c-grimseld.service-Ef34Gh/tmp /var/tmp rw,relatime shared:21 - xfs /dev/sda1 rw',
  '42 22 8:3 / /var/log/ppu rw,relatime - xfs /dev/sda3 rw',
].join('\n');

describe('logfile on the machine (S4)', () => {
  it("refuses a log file in the unit's private /tmp or /var/tmp, naming it, and only there", () => {
    assert.equal(privateTmpProblem('/tmp/g.log', '/tmp', UNIT),
      "'/tmp/g.log' lies in /tmp, which this service has to itself (PrivateTmp=yes) and systemd removes when it stops: the log would be lost with it");
    assert.match(privateTmpProblem('/var/tmp/logs/g.log', '/var/tmp/logs', UNIT) ?? '', /lies in \/var\/tmp, which this service has to itself/);
    assert.equal(privateTmpProblem('/var/log/ppu/g.log', '/var/log/ppu', UNIT), undefined);
    assert.equal(privateTmpProblem('/tmpx/g.log', '/tmpx', UNIT), undefined, 'a prefix of a name is not a parent');
    // Run by hand or by the tests: /tmp is the host's, on its own tmpfs or on /.
    const host = '22 1 8:1 / / rw - xfs /dev/sda1 rw\n23 22 0:30 / /tmp rw - tmpfs tmpfs rw';
    assert.equal(privateTmpProblem('/tmp/g.log', '/tmp', host), undefined);
    assert.equal(privateTmpProblem('/tmp/g.log', '/tmp', ''), undefined, 'no mount table: nothing to tell');
  });

  it('notes at --check by hand that the unit would refuse a log file in /tmp, without advising ReadWritePaths= for it', () => {
    const note = logfileNote('grimseld', { logfile: '/tmp/g.log', logfile_max_number: 10, logfile_max_size: 1, log_level: 'info' }) ?? '';
    assert.match(note, /lies in \/tmp, which the shipped grimseld unit gives grimseld to itself \(PrivateTmp=yes\).*would refuse it \(exit 78\)/);
    assert.doesNotMatch(note, /ReadWritePaths/);
    assert.match(logfileNote('grimseld', { logfile: '/srv/g.log', logfile_max_number: 10, logfile_max_size: 1, log_level: 'info' }) ?? '', /ReadWritePaths=/);
  });
});

// The soak's short form (reliability issue, item 5; `npm run soak` is the long one): 20 restarts of furkad,
// grimseld, the agent and an rsync daemon (SIGKILL, SIGSTOP then SIGCONT or a watchdog kill) during a stream
// from two detectors to three storages; nothing lost, duplicated or left behind, and the flow back within 10 s.
import { strict as assert } from 'node:assert';
import { DAEMON_KINDS, formatReport, runSoak } from '../soak/soak.js';

describe('soak, short form: 20 restarts of every daemon during a stream', function () {
  this.timeout(300_000);

  it('loses, duplicates and leaves nothing, counts exactly, and resumes within 10 s of each restart', async () => {
    // Seed 7 and every 4th restart a SIGSTOP: furkad, grimseld and the agent killed by the "watchdog", the agent
    // and the rsync daemon continued (the order is drawn from the seed before anything runs).
    const report = await runSoak({ kills: 20, stopEvery: 4, stopMs: [1500, 3000], gapMs: [200, 1200], seed: 7 });
    process.stdout.write(`${formatReport(report)}\n`);
    assert.deepEqual(report.failures, [], 'the soak found no fault');
    for (const d of DAEMON_KINDS) assert.ok(report.kills.filter((k) => k.daemon === d).length >= 5, `${d} restarted 5 times`);
    for (const d of DAEMON_KINDS) assert.ok(report.kills.some((k) => k.daemon === d && k.how !== 'SIGKILL'), `${d} stopped once`);
    assert.ok(report.kills.some((k) => k.how === 'SIGSTOP+SIGCONT' && k.daemon !== 'rsyncd') && report.kills.some((k) => k.how === 'SIGSTOP+watchdog'),
      'stopped and continued, and stopped and killed as the watchdog would');
    assert.ok(report.kills.every((k) => k.resumeMs <= 10_000), 'the flow resumed within 10 s of every restart');
    assert.equal(report.copied['internal'], report.written);
  });
});

// furkad's small policies: back-off bounds (F10), the changed-source exit (F2), the license gate (F8).
import { strict as assert } from 'node:assert';
import { nextBackoff } from '../../src/furkad/detector.js';
import { changedSources, classifyExit, errorCause } from '../../src/furkad/rsync.js';
import { TransferGate } from '../../src/furkad/transfer-gate.js';

describe('furkad policies (F2, F8, F10)', () => {
  it('backs off exponentially from 100 ms and never beyond 10 s; a fatal error waits the longest', () => {
    const seq: number[] = [];
    let b = 0;
    for (let i = 0; i < 10; i++) seq.push(b = nextBackoff(b, 'retry'));
    assert.deepEqual(seq, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    assert.equal(nextBackoff(0, 'fatal'), 10_000);
  });

  it('treats exit 23 from changed sources alone as a normal run and names the held-back files', () => {
    const stderr = 'ERROR: Skipping sender remove for changed file: a/big.cbf\n' +
      'ERROR: Skipping sender remove for changed file: b/caf\\#303\\#251.cbf\n' +
      'rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1956) [generator=3.5.0]\n';
    assert.equal(classifyExit(23, stderr), 'ok');
    assert.deepEqual([...changedSources(stderr)], ['a/big.cbf', 'b/café.cbf']);
    assert.equal(classifyExit(23, 'rsync: [receiver] mkstemp "x" failed: No space left on device (28)\n' + stderr), 'retry');
    assert.equal(classifyExit(23, ''), 'retry');
    assert.equal(classifyExit(1), 'fatal');
  });

  it("names the cause of a failed run from rsync's lines before its closing summary (F10)", () => {
    const at = ' at clientserver.c(165) [Receiver=3.5.0]\n';
    assert.equal(errorCause('rsync: getaddrinfo: no-such.invalid 873: Name or service not known\nrsync error: error in socket IO (code 10)' + at),
      'rsync: getaddrinfo: no-such.invalid 873: Name or service not known (error in socket IO)');
    assert.equal(errorCause("@ERROR: Unknown module 'x'\nrsync error: error starting client-server protocol (code 5) at main.c(1954) [Receiver=3.5.0]\n"),
      "@ERROR: Unknown module 'x' (error starting client-server protocol)");
    // Many lines of one kind (an exit 23 over many files): the first two, and how many more.
    const many = [1, 2, 3, 4].map((i) => `rsync: [sender] send_files failed to open "f${i}": Permission denied (13)`).join('\n');
    assert.equal(errorCause(`${many}\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1956) [generator=3.5.0]`),
      'rsync: [sender] send_files failed to open "f1": Permission denied (13); rsync: [sender] send_files failed to open "f2": Permission denied (13) ' +
      '(and 2 more) (some files/attrs were not transferred (see previous errors))');
    // Nothing but the summary: the summary.
    assert.equal(errorCause('rsync error: timeout waiting for daemon connection (code 35)' + at), 'rsync error: timeout waiting for daemon connection (code 35)' + at.trimEnd());
    assert.equal(errorCause(''), '');
  });

  it('lets one run through at a time in single-thread mode, first come first served', async () => {
    const gate = new TransferGate(1);
    const order: string[] = [];
    let active = 0;
    let most = 0;
    await Promise.all(['1MF', '2MF', '3MF'].map(async (id) => {
      for (let i = 0; i < 3; i++) {
        const release = await gate.acquire();
        active++;
        most = Math.max(most, active);
        order.push(id);
        await new Promise((r) => setTimeout(r, 2));
        active--;
        release();
      }
    }));
    assert.equal(most, 1, 'never two transfers at once');
    assert.deepEqual(order.slice(0, 3).sort(), ['1MF', '2MF', '3MF'], 'no detector starves');
    const free = new TransferGate(Infinity);
    const all = await Promise.all([free.acquire(), free.acquire(), free.acquire()]);
    assert.equal(all.length, 3, 'a licensed gate never waits');
  });
});

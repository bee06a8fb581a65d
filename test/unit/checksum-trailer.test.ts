// How the checksum travels with a file over the agent protocol (I1, I2): the trailer the agent writes reads
// back as the same checksum, an agent without it or with another algorithm is told apart, and a byte flipped
// on the way is a mismatch.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Checksum, prepareChecksums } from '../../src/common/checksum.js';
import { arrival, CHECKSUM_TRAILER, checksumTrailer, sentChecksum, shownSent } from '../../src/common/checksum-trailer.js';

const hexOf = async (b: Buffer): Promise<string> => {
  const sum = new Checksum();
  sum.update(b);
  return sum.hex();
};

describe('checksum trailer of the agent protocol (I1, I2)', () => {
  before(() => prepareChecksums(2));

  it('writes xxh128:<hex> under x-furka-checksum and reads it back', async () => {
    const hex = await hexOf(Buffer.from('an image'));
    const t = checksumTrailer(hex);
    assert.deepEqual(Object.keys(t), [CHECKSUM_TRAILER]);
    assert.equal(CHECKSUM_TRAILER, 'x-furka-checksum');
    assert.equal(t[CHECKSUM_TRAILER], `xxh128:${hex}`);
    assert.deepEqual(sentChecksum(t), { hex });
    assert.equal(shownSent(sentChecksum(t)), `xxh128:${hex}`);
  });

  it('tells an agent without the trailer, and a value of another algorithm or none, from a checksum', () => {
    assert.deepEqual(sentChecksum({ 'x-furka-unchanged': '1' }), { absent: true });
    assert.deepEqual(sentChecksum(undefined), { absent: true });
    assert.deepEqual(sentChecksum({ [CHECKSUM_TRAILER]: 'sha256:00ff' }), { unreadable: 'sha256:00ff' });
    assert.deepEqual(sentChecksum({ [CHECKSUM_TRAILER]: 'xxh128:1234' }), { unreadable: 'xxh128:1234' }, 'too short');
    assert.deepEqual(sentChecksum({ [CHECKSUM_TRAILER]: `xxh128:${'G'.repeat(32)}` }), { unreadable: `xxh128:${'G'.repeat(32)}` });
    assert.equal(arrival({ absent: true }, 'ab'), 'unchecked');
    assert.equal(arrival({ unreadable: 'sha256:00' }, 'ab'), 'unchecked');
    assert.match(shownSent({ absent: true }), /none/);
  });

  it('finds one flipped bit anywhere in a megabyte a mismatch, and the same bytes in other pieces a match', async () => {
    const data = randomBytes(1 << 20);
    const sent = sentChecksum(checksumTrailer(await hexOf(data)));
    for (const at of [0, 1, 4096, (1 << 20) - 1]) {
      const damaged = Buffer.from(data);
      damaged[at] = damaged[at]! ^ 0x10;
      assert.equal(arrival(sent, await hexOf(damaged)), 'mismatch', `bit flipped at ${at}`);
    }
    const pieces = new Checksum();
    for (let at = 0; at < data.length; at += 16_384) pieces.update(data.subarray(at, at + 16_384));
    assert.equal(arrival(sent, await pieces.hex()), 'match');
  });

  it('travels as an HTTP/2 trailer after the body, as the agent sends it', async () => {
    const body = randomBytes(300_000);
    const server = http2.createServer();
    server.on('stream', (s) => {
      s.on('wantTrailers', () => { void hexOf(body).then((hex) => s.sendTrailers(checksumTrailer(hex))); });
      s.respond({ ':status': 200 }, { waitForTrailers: true });
      s.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const got = await new Promise<{ received: string; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
        const req = client.request({ ':path': '/' });
        const sum = new Checksum();
        let trailers: http2.IncomingHttpHeaders = {};
        req.on('data', (b: Buffer) => sum.update(b));
        req.on('trailers', (t) => { trailers = t; });
        req.on('end', () => { void sum.hex().then((received) => resolve({ received, trailers })); });
        req.on('error', reject);
      });
      assert.equal(arrival(sentChecksum(got.trailers), got.received), 'match');
    } finally {
      client.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('gives a hasher back unused when a transfer fails half-way', async () => {
    const sum = new Checksum();
    sum.update(Buffer.from('half'));
    sum.discard();
    assert.equal(await hexOf(Buffer.alloc(0)), '99aa06d3014798d86001c324468d497f', 'a reused hasher starts afresh (xxhsum -H2 of nothing)');
  });
});

// furka-agent's pure parts: the allow list, the exclude glob, inotifywait's CSV and event classes, barrier names,
// the pool of body buffers, which sources overlap (A1–A6).
import { strict as assert } from 'node:assert';
import { AllowList, addressBits, parseRange } from '../../src/agent/allow.js';
import { excludeProblem, globMatch, NameFilter } from '../../src/agent/name-filter.js';
import { checkAgentConfig, type AgentConfig } from '../../src/agent/config.js';
import { checkFurkadConfig, validateFurkadConfig } from '../../src/furkad/config.js';
import { parseConfig } from '../../src/common/config-file.js';
import { CsvRecords, parseRecord } from '../../src/agent/csv-records.js';
import { classify, INOTIFY_EVENTS, recordKind } from '../../src/agent/watcher.js';
import { parseObserve, parseSource } from '../../src/agent/server.js';
import { overlaps } from '../../src/agent/source-holders.js';
import { barrierName, barrierOf, validBarrierId } from '../../src/agent/barrier.js';
import { BodyPool } from '../../src/agent/body-pool.js';

describe('furka-agent allow list (A1)', () => {
  it('matches IPv4 addresses and CIDR ranges, also in their IPv4-mapped IPv6 spelling', () => {
    const a = new AllowList(['10.1.0.0/16', '192.168.5.7']);
    assert.ok(a.allows('10.1.200.3'));
    assert.ok(a.allows('::ffff:10.1.0.1'), 'a dual-stack socket reports IPv4 peers this way');
    assert.ok(a.allows('192.168.5.7'));
    assert.ok(!a.allows('192.168.5.8'));
    assert.ok(!a.allows('10.2.0.1'));
    assert.ok(!a.allows('::1'));
  });

  it('matches IPv6 addresses and ranges, with :: anywhere and zones dropped', () => {
    const a = new AllowList(['::1', 'fd00:1:2::/48', 'fe80::1']);
    assert.ok(a.allows('::1'));
    assert.ok(a.allows('0:0:0:0:0:0:0:1'));
    assert.ok(a.allows('fd00:1:2:ffff::9'));
    assert.ok(!a.allows('fd00:1:3::9'));
    assert.ok(a.allows('fe80::1%eth0'));
    assert.ok(!a.allows('127.0.0.1'));
  });

  it('the default allows loopback only; /0 ranges allow a whole family', () => {
    const d = new AllowList(['127.0.0.1', '::1']);
    assert.ok(d.allows('127.0.0.1') && d.allows('::ffff:127.0.0.1') && d.allows('::1'));
    assert.ok(!d.allows('127.0.0.2'));
    assert.ok(new AllowList(['0.0.0.0/0']).allows('8.8.8.8'));
    assert.ok(!new AllowList(['0.0.0.0/0']).allows('2001:db8::1'));
    assert.ok(new AllowList(['::/0']).allows('2001:db8::1'));
  });

  it('never allows what is not an address, and refuses bad words by name', () => {
    assert.ok(!new AllowList(['0.0.0.0/0']).allows(undefined));
    assert.ok(!new AllowList(['0.0.0.0/0']).allows('nonsense'));
    assert.throws(() => parseRange('10.0.0.0/33'), /prefix length must be 0 to 32/);
    assert.throws(() => parseRange('ppu.example.org'), /not an IPv4 or IPv6 address/);
    assert.throws(() => parseRange('10.0.0.1/8/1'), /not an IPv4/);
    assert.equal(addressBits('::ffff:1.2.3.4'), addressBits('1.2.3.4'));
  });
});

describe('furka-agent exclude globs and hidden names (A2)', () => {
  it('globs: * any run, ? one character, the rest literal, whole name', () => {
    assert.ok(globMatch('*.tmp', 'a.tmp'));
    assert.ok(globMatch('*.tmp', '.tmp'));
    assert.ok(!globMatch('*.tmp', 'a.tmp.cbf'));
    assert.ok(globMatch('img_??.cbf', 'img_01.cbf'));
    assert.ok(!globMatch('img_??.cbf', 'img_1.cbf'));
    assert.ok(globMatch('*a*b*', 'xxaxxbxx'));
    assert.ok(!globMatch('*a*b', 'xxbxxa'));
    assert.ok(globMatch('*', ''));
    assert.ok(globMatch('[x].cbf', '[x].cbf'), 'no character classes: brackets are literal');
    assert.ok(globMatch('é?', 'éü'), 'characters, not bytes');
  });

  it('a name starting with "." is always a temp name; exclude adds patterns', () => {
    const f = new NameFilter('*.part  *~');
    assert.ok(f.skips('.img.cbf.XyZ12'));
    assert.ok(f.skips('img.cbf.part'));
    assert.ok(f.skips('img.cbf~'));
    assert.ok(!f.skips('img.cbf'));
    assert.ok(!new NameFilter('').skips('img.cbf'));
  });

  it("refuses a list written with commas, naming the pattern and the list as it should be, in the agent's and furkad's exclude (hostile tester h12)", () => {
    assert.equal(excludeProblem('*.tmp *.part'), undefined);
    assert.equal(excludeProblem(''), undefined);
    assert.equal(excludeProblem('*.tmp, *.part'), "'*.tmp,' holds a comma between patterns: they are separated by spaces, as in '*.tmp *.part'");
    assert.equal(excludeProblem('*.tmp,*.part'), "'*.tmp,*.part' holds a comma between patterns: they are separated by spaces, as in '*.tmp *.part'");
    assert.equal(excludeProblem('*.tmp ,*.part'), "',*.part' holds a comma between patterns: they are separated by spaces, as in '*.tmp *.part'");
    assert.equal(excludeProblem('scan,1.* .*.tmp'), undefined, 'a comma inside a name');
    assert.throws(() => checkAgentConfig('/etc/ppu/furka-agent.conf', { exclude: '*.tmp, *.part', address: '0.0.0.0', allow: '127.0.0.1' } as AgentConfig),
      /key 'exclude': '\*\.tmp,' holds a comma/);
    assert.throws(() => checkFurkadConfig('/etc/ppu/furkad.conf', parseConfig('/etc/ppu/furkad.conf',
      '[detector.1MF]\nremoteIP = 127.0.0.1\ntransport = rsync\nexclude = .*.tmp, *.part\ntarget = /ramdisk/./1mf\n', validateFurkadConfig)),
    /section \[detector\.1MF\], key 'exclude': '\.\*\.tmp,' holds a comma/);
  });

  it('a path is passed over when any name in it is: a hidden or excluded directory, with all below it', () => {
    const f = new NameFilter('scratch*');
    assert.ok(f.skipsPath('t/.run7.tmp/img000'));
    assert.ok(f.skipsPath('scratch1/deep/data.cbf'));
    assert.ok(f.skipsPath('run/.img.cbf.XyZ12'));
    assert.ok(!f.skipsPath('t/run7/img000'));
    assert.ok(!f.skipsPath('run.1/img.cbf'), 'a dot inside a name is no temp name');
  });
});

describe("inotifywait's CSV (A2)", () => {
  const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));
  it('splits records across chunks, keeping quoted commas, quotes and newlines', () => {
    const csv = new CsvRecords();
    const text = '/r/,"CLOSE_WRITE,CLOSE","x,y"\n/r/,CREATE,"q""z"\n/r/,MOVED_TO,"n\nl"\n/r/sub/,"CREATE,ISDIR",d\n';
    const records: Buffer[][] = [];
    for (let i = 0; i < text.length; i += 7) records.push(...csv.push(b(text.slice(i, i + 7))));
    assert.deepEqual(records.map((r) => r.map((f) => f.toString('latin1'))), [
      ['/r/', 'CLOSE_WRITE,CLOSE', 'x,y'],
      ['/r/', 'CREATE', 'q"z'],
      ['/r/', 'MOVED_TO', 'n\nl'],
      ['/r/sub/', 'CREATE,ISDIR', 'd'],
    ]);
  });

  it('keeps names that are not UTF-8 byte for byte, and empty last fields', () => {
    const rec = parseRecord(Buffer.concat([b('/r/,CLOSE_WRITE,'), b([0x62, 0xff, 0xfe])]));
    assert.deepEqual([...rec[2]!], [0x62, 0xff, 0xfe]);
    assert.deepEqual(parseRecord(b(',Q_OVERFLOW,')).map(String), ['', 'Q_OVERFLOW', '']);
  });

  it("reads inotifywait's overflow line, which has no directory, as an overflow; asks inotifywait for it (A2)", () => {
    // inotifywait 3.22 writes "Q_OVERFLOW," when the kernel dropped events, and only if -e names q_overflow.
    assert.equal(recordKind(parseRecord(b('Q_OVERFLOW,'))), 'overflow');
    assert.equal(recordKind(parseRecord(b('/r/,"CLOSE_WRITE,CLOSE",Q_OVERFLOW'))), 'complete', 'a file named Q_OVERFLOW is a file');
    assert.equal(recordKind(parseRecord(b('/r/,CREATE'))), 'created');
    assert.ok(INOTIFY_EVENTS.split(',').includes('q_overflow'));
  });

  it('asks inotifywait for UNMOUNT: the end of every watch on a file system unmounted, the root\'s too (A2)', () => {
    assert.ok(INOTIFY_EVENTS.split(',').includes('unmount'));
    assert.equal(recordKind(parseRecord(b('/r/,"UNMOUNT,ISDIR",'))), 'unmounted');
  });

  it('event sets map to what the agent does', () => {
    const c = (s: string) => classify(new Set(s.split(',')));
    assert.equal(c('CLOSE_WRITE,CLOSE'), 'complete');
    assert.equal(c('MOVED_TO'), 'complete');
    assert.equal(c('CREATE'), 'created');
    assert.equal(c('CREATE,ISDIR'), 'dir-new');
    assert.equal(c('MOVED_TO,ISDIR'), 'dir-new');
    assert.equal(c('DELETE'), 'gone');
    assert.equal(c('MOVED_FROM'), 'gone');
    assert.equal(c('DELETE,ISDIR'), 'dir-gone');
    assert.equal(c('MOVED_FROM,ISDIR'), 'dir-gone');
    assert.equal(c('Q_OVERFLOW'), 'overflow');
    assert.equal(c('DELETE_SELF'), 'root-gone');
    assert.equal(c('UNMOUNT,ISDIR'), 'unmounted');
    assert.equal(c('IGNORED'), undefined);
  });
});

describe('furka-agent events source (protocol)', () => {
  it("accepts directories below the root and refuses '..'", () => {
    assert.equal(parseSource(null), '');
    assert.equal(parseSource('/'), '');
    assert.equal(parseSource('/run1/'), 'run1');
    assert.equal(parseSource('run1//a/./b'), 'run1/a/b');
    assert.equal(parseSource('/run1/../x'), undefined);
    assert.equal(parseSource('..'), undefined);
  });
});

describe('furka-agent barrier marks (A5)', () => {
  it('recognises its own marks in the root only, with valid ids only', () => {
    assert.equal(barrierOf(Buffer.from(barrierName('a-B_9'))), 'a-B_9');
    assert.equal(barrierOf(Buffer.from(`sub/${barrierName('x')}`)), undefined, 'not below the root');
    assert.equal(barrierOf(Buffer.from('.furka-agent-barrier-')), undefined, 'no id');
    assert.equal(barrierOf(Buffer.from('.furka-agent-barrier-a.b')), undefined, 'not an id');
    assert.equal(barrierOf(Buffer.from('img_0001.cbf')), undefined);
    assert.ok(validBarrierId('x'.repeat(64)) && !validBarrierId('x'.repeat(65)) && !validBarrierId('') && !validBarrierId('../x'));
  });
});

describe('furka-agent body buffers (A6)', () => {
  it('gives a buffer of the exact size, and the memory of one given back to the next body of its size class', () => {
    const pool = new BodyPool();
    const a = pool.take(100_000);
    assert.equal(a.length, 100_000);
    a.fill(7);
    pool.give(a);
    assert.equal(pool.freeBytes, 128 * 1024, 'kept in the 128 KiB class');
    const b = pool.take(70_000);
    assert.equal(b.length, 70_000);
    assert.equal(b.buffer, a.buffer, 'the same memory again');
    assert.equal(pool.freeBytes, 0);
    const c = pool.take(100_000);
    assert.notEqual(c.buffer, a.buffer, 'a buffer in use is never handed out twice');
  });

  it('keeps a bounded number, never one twice, and nothing it did not hand out or too large to keep', () => {
    const pool = new BodyPool();
    const taken = Array.from({ length: 20 }, () => pool.take(1_000_000));
    for (const t of taken) pool.give(t);
    assert.equal(pool.freeBytes, 16 * 1024 * 1024, 'at most 16 per class');
    const again = pool.take(1_000_000);
    pool.give(again);
    pool.give(again);
    assert.equal(pool.freeBytes, 16 * 1024 * 1024, 'given twice, kept once');
    pool.give(Buffer.alloc(1000));
    pool.give(Buffer.from(Buffer.allocUnsafeSlow(128 * 1024).buffer, 10, 1000));
    assert.equal(pool.freeBytes, 16 * 1024 * 1024, 'foreign or offset buffers are not kept');
    const huge = pool.take(65 * 1024 * 1024);
    assert.equal(huge.length, 65 * 1024 * 1024);
    pool.give(huge);
    assert.equal(pool.freeBytes, 16 * 1024 * 1024, 'bodies over 64 MiB are not pooled');
  });
});

describe('furka-agent sources held by one client each (A4)', () => {
  it('overlap: the root overlaps every source; a source overlaps itself and what lies below it, not a sibling sharing a prefix', () => {
    assert.ok(overlaps('', 'run1') && overlaps('run1', ''));
    assert.ok(overlaps('run1', 'run1'));
    assert.ok(overlaps('run1', 'run1/a/b') && overlaps('run1/a/b', 'run1'));
    assert.ok(!overlaps('run1', 'run10'), '/run10 is not below /run1');
    assert.ok(!overlaps('run1/a', 'run1/b'));
  });

  it('observe is 1 or 0, absent meaning 0', () => {
    assert.equal(parseObserve(null), false);
    assert.equal(parseObserve('0'), false);
    assert.equal(parseObserve('1'), true);
    assert.equal(parseObserve('yes'), undefined);
  });
});

// License keys (F8, G14): issue, check, and every way a key can be wrong, against this machine's real interfaces.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkLicense, hardwareAddresses, interfaceAddresses, issueLicense, MAX_KEY_BYTES } from '../../src/common/license.js';
import { testIssuer } from '../fixtures/license.js';
import { spawnSync } from 'node:child_process';
import { PPUCTL_BIN } from '../fixtures/ppu.js';

describe('license keys (F8)', () => {
  let dir: string;
  let issuer: ReturnType<typeof testIssuer>;
  let publicKey: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'license-'));
    issuer = testIssuer(dir);
    publicKey = readFileSync(issuer.publicFile, 'utf8');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts a key issued for an address this machine has', () => {
    const file = issuer.issue(path.join(dir, 'k'));
    const r = checkLicense(file, { publicKey });
    assert.ok(r.valid, r.reason);
    assert.match(r.reason, /^licensed to Test Beamline \(([0-9a-f]{2}:){5}[0-9a-f]{2}\)$/);
  });

  it('refuses a missing file, a tampered field, a foreign signer and another machine, each with its reason', () => {
    assert.match(checkLicense(path.join(dir, 'none'), { publicKey }).reason, /no license key at/);
    const file = issuer.issue(path.join(dir, 'k'));
    writeFileSync(file, readFileSync(file, 'utf8').replace('holder = Test Beamline', 'holder = Other Beamline'));
    assert.match(checkLicense(file, { publicKey }).reason, /bad signature/);
    const foreign = testIssuer(mkdtempSync(path.join(dir, 'x-')));
    foreign.issue(file);
    assert.match(checkLicense(file, { publicKey }).reason, /bad signature/, 'signed with another private key');
    issuer.issue(file, '02:00:5e:10:20:30');
    assert.match(checkLicense(file, { publicKey }).reason, /bound to 02:00:5e:10:20:30, which no network interface/);
    writeFileSync(file, 'hello\n');
    assert.match(checkLicense(file, { publicKey }).reason, /not a license key: holder, mac, issued, signature missing/);
  });

  it('reads only a bounded regular file: a FIFO or /dev/zero is refused by name at once, never read (F8, G14)', () => {
    // In a child with a time limit: before the fix the FIFO blocked the reader for ever and /dev/zero grew it to abort.
    const fifo = path.join(dir, 'fifo.key');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const check = (file: string) => spawnSync(process.execPath, [PPUCTL_BIN, 'license', 'check', file],
      { encoding: 'utf8', timeout: 5000, env: { ...process.env, ...issuer.env } });
    const f = check(fifo);
    assert.deepEqual([f.status, f.signal, f.stdout], [1, null, `invalid: ${fifo} is a FIFO, not a regular file\n`]);
    const z = check('/dev/zero');
    assert.deepEqual([z.status, z.signal, z.stdout], [1, null, 'invalid: /dev/zero is a character device, not a regular file\n']);
  });

  it('refuses a directory and a file larger than a key by name, and follows a symbolic link to a real key', () => {
    assert.equal(checkLicense(dir, { publicKey }).reason, `${dir} is a directory, not a regular file`);
    const big = path.join(dir, 'big.key');
    writeFileSync(big, Buffer.alloc(MAX_KEY_BYTES + 1, 0x61));
    assert.equal(checkLicense(big, { publicKey }).reason,
      `${big} is ${MAX_KEY_BYTES + 1} bytes, too large for a license key (at most ${MAX_KEY_BYTES})`);
    const link = path.join(dir, 'linked.key');
    symlinkSync(issuer.issue(path.join(dir, 'k')), link);
    assert.ok(checkLicense(link, { publicKey }).valid, 'a key linked into place is legitimate');
  });

  /** A fake /sys/class/net: name -> [address, addr_assign_type, ARPHRD type?]. */
  function fakeNet(name: string, ifs: Record<string, [string, string, string?]>): string {
    const net = path.join(dir, name);
    for (const [n, [address, assign, type]] of Object.entries(ifs)) {
      mkdirSync(path.join(net, n), { recursive: true });
      writeFileSync(path.join(net, n, 'address'), `${address}\n`);
      writeFileSync(path.join(net, n, 'addr_assign_type'), `${assign}\n`);
      writeFileSync(path.join(net, n, 'type'), `${type ?? '1'}\n`);
    }
    return net;
  }

  it('stays valid when the interface is down or renamed: any interface directory with the address counts', () => {
    const net = fakeNet('net', { 'renamed0': ['02:00:5E:10:20:30', '0'], 'bond-slave': ['02:00:5e:99:99:99', '3'] });
    writeFileSync(path.join(net, 'renamed0', 'operstate'), 'down\n');
    mkdirSync(path.join(net, 'bond-slave', 'bonding_slave'), { recursive: true });
    writeFileSync(path.join(net, 'bond-slave', 'bonding_slave', 'perm_hwaddr'), '02:00:5e:aa:bb:cc\n');
    assert.deepEqual([...hardwareAddresses(net)].sort(), ['02:00:5e:10:20:30', '02:00:5e:aa:bb:cc'], "the slave's current address is the bond's");
    issuer.issue(path.join(dir, 'k'), '02-00-5e-aa-bb-cc');
    assert.ok(checkLicense(path.join(dir, 'k'), { publicKey, netDir: net }).valid, 'permanent address of a bonded interface');
  });

  it('binds only to permanent hardware addresses: random or run-time ones are left out, each with why (F8, G14)', () => {
    const net = fakeNet('net-mixed', {
      eth0: ['02:fc:00:00:00:01', '0'], ifb0: ['c2:6e:2c:12:ae:64', '1'], d0: ['02:00:5e:10:20:30', '3'],
      macvlan0: ['02:00:5e:10:20:31', '2'], lo: ['00:00:00:00:00:00', '0', '772'],
    });
    assert.deepEqual([...hardwareAddresses(net)], ['02:fc:00:00:00:01']);
    assert.deepEqual(interfaceAddresses(net).map((i) => [i.name, i.leftOut?.replace(/ \(.*/, '')]), [
      ['d0', 'address set at run time'], ['eth0', undefined], ['ifb0', 'random address, made when the interface was created'],
      ['lo', 'loopback, no hardware address'], ['macvlan0', 'address taken over from another interface'],
    ]);
    const key = issuer.issue(path.join(dir, 'k'), '02:00:5e:10:20:30');
    const r = checkLicense(key, { publicKey, netDir: net });
    assert.equal(r.valid, false, 'a key for an address set at run time would lapse at the next boot');
    assert.match(r.reason, /bound to 02:00:5e:10:20:30, which here is only d0's address set at run time .*a key binds to a permanent hardware address/);
    issuer.issue(key, 'c2:6e:2c:12:ae:64');
    assert.match(checkLicense(key, { publicKey, netDir: net }).reason, /only ifb0's random address/);
    issuer.issue(key, '02:fc:00:00:00:01');
    assert.ok(checkLicense(key, { publicKey, netDir: net }).valid);
  });

  it('in a network namespace of bridges only, ppuctl lists no address, says why for each, and refuses a key for one (F8)', function () {
    this.timeout(60_000);
    if (spawnSync('unshare', ['-nm', 'true']).status !== 0) this.skip(); // needs root and unshare
    const key = issuer.issue(path.join(dir, 'k'), '02:00:5e:10:20:30');
    // As the tester did: a bridge given another host's address (root can make one; a key must not follow it).
    const script = `mount -t sysfs sysfs /sys && ip link add br0 type bridge && ip link add d0 type bridge &&
      ip link set d0 address 02:00:5e:10:20:30 &&
      "$0" "$1" license addresses; echo "rc=$?"; "$0" "$1" license check "$2"; echo "rc=$?"`;
    const r = spawnSync('unshare', ['-nm', 'sh', '-c', script, process.execPath, PPUCTL_BIN, key],
      { encoding: 'utf8', env: { ...process.env, ...issuer.env } });
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 4), [
      '# left out, no key can be bound to these:',
      ...lines.slice(1, 4).filter((l) => /^# br0 ([0-9a-f]{2}:){5}[0-9a-f]{2}: random address/.test(l)),
      '# d0 02:00:5e:10:20:30: address set at run time (addr_assign_type 3), not the one the hardware came with',
      '# lo: loopback, no hardware address',
    ], r.stdout);
    assert.deepEqual(lines.slice(4, 6), ['# no permanent hardware address: no key can be bound to this machine', 'rc=1']);
    assert.match(lines[6]!, /^invalid: .* bound to 02:00:5e:10:20:30, which here is only d0's address set at run time/);
    assert.equal(lines[7], 'rc=1');
  });

  it('issues only for a well-formed address and an Ed25519 key', () => {
    assert.throws(() => issueLicense(issuer.privatePem, { holder: 'x', mac: '02:00', issued: 'now' }), /not a hardware address/);
    // Line ends JavaScript's '.' stops at, and control characters: a key with them would never validate.
    for (const holder of ['a\nb', 'a\rb', 'a\u2028b', 'a\u2029b', 'a\u0007b', 'a=b', '  ']) {
      assert.throws(() => issueLicense(issuer.privatePem, { holder, mac: '02:00:5e:10:20:30', issued: 'now' }), /one non-empty line of printable characters/, JSON.stringify(holder));
    }
    const odd = path.join(dir, 'odd.key');
    writeFileSync(odd, issueLicense(issuer.privatePem, { holder: 'Strahlrohr Ünterwäld \u00a0X/23 (ß) 光', mac: '02:00:5e:10:20:30', issued: 'now' }));
    const netDir = fakeNet('net-odd', { eth0: ['02:00:5e:10:20:30', '0'] });
    assert.ok(checkLicense(odd, { publicKey, netDir }).valid, 'any printable holder validates');
  });

  it('ppuctl license issue writes a key that ppuctl license check accepts, and check says why another is refused', function () {
    // Six ppuctl processes, each a Node start: seconds apiece on a loaded host (a hang guard, not a speed check).
    this.timeout(60_000);
    const pem = path.join(dir, 'issuer.pem');
    writeFileSync(pem, issuer.privatePem);
    const ppuctl = (...args: string[]) => spawnSync(process.execPath, [PPUCTL_BIN, 'license', ...args],
      { encoding: 'utf8', env: { ...process.env, ...issuer.env } });
    const mac = [...hardwareAddresses()][0]!;
    const key = path.join(dir, 'issued.key');
    const issued = ppuctl('issue', '--private-key', pem, '--mac', mac.toUpperCase(), '--holder', 'ID23-2', '-o', key);
    assert.equal(issued.status, 0, issued.stderr);
    const ok = ppuctl('check', key);
    assert.deepEqual([ok.status, ok.stdout], [0, `valid: licensed to ID23-2 (${mac})\n`]);
    assert.equal(ppuctl('issue', '--private-key', pem, '--mac', mac, '--holder', 'x', '-o', key).status, 1, 'never overwrites a key');
    // Nor writes through a link, even one to nothing (a check for the name, then a write, would follow it).
    const elsewhere = path.join(dir, 'elsewhere.key');
    symlinkSync(elsewhere, path.join(dir, 'link.key'));
    const linked = ppuctl('issue', '--private-key', pem, '--mac', mac, '--holder', 'x', '-o', path.join(dir, 'link.key'));
    assert.equal(linked.status, 1);
    assert.match(linked.stderr, /link\.key: the file exists \(or is a link\)/);
    assert.equal(existsSync(elsewhere), false, 'nothing written where the link points');
    writeFileSync(key, readFileSync(key, 'utf8').replace(mac, '02:00:5e:10:20:30'));
    const bad = ppuctl('check', key);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /^invalid: .* bad signature/);
    assert.ok(ppuctl('addresses').stdout.split('\n').some((l) => l.startsWith(`${mac} `)), 'each address with its interface');
  });
});

// What an operator who is not root may add (G8, docs/threat-model.md): only a file they could read themselves,
// judged as the kernel would (search on every directory walked, links included; read on the file; ACLs).
import { strict as assert } from 'node:assert';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NotReadable, parseAcl, permits, statAsCaller, type Caller } from '../../src/grimseld/caller-access.js';
import { initProvenance } from '../../src/common/provenance.js';

const op: Caller = { uid: 4242, gids: new Set([4242, 4343]) };

/** An ACL attribute as the kernel stores it: version 2, then (tag, perm, id) per entry. */
function acl(entries: Array<[number, number, number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id, 8 + 8 * i);
  });
  return b;
}

describe('caller access: permissions (G8)', () => {
  it('goes by owner, then group (supplementary ones too), then others, as the kernel does', () => {
    assert.equal(permits({ uid: 0, gid: 0, mode: 0o100644 }, op, 4), true);
    assert.equal(permits({ uid: 0, gid: 0, mode: 0o100640 }, op, 4), false);
    assert.equal(permits({ uid: 0, gid: 4343, mode: 0o100640 }, op, 4), true, 'a supplementary group');
    assert.equal(permits({ uid: 4242, gid: 0, mode: 0o100044 }, op, 4), false, 'the owner class decides for the owner');
    assert.equal(permits({ uid: 0, gid: 0, mode: 0o40700 }, op, 1), false);
    assert.equal(permits({ uid: 0, gid: 0, mode: 0o40711 }, op, 1), true);
  });

  it('reads an access ACL: a named user or group, the mask, and an entry that denies', () => {
    const st = { uid: 0, gid: 0, mode: 0o100640 };
    // user::rw- user:4242:r-- group::r-- mask::r-- other::---
    assert.equal(permits(st, op, 4, parseAcl(acl([[1, 6, 0], [2, 4, 4242], [4, 4, 0], [0x10, 4, 0], [0x20, 0, 0]]))), true);
    // the same with mask::--- : the named entry is masked out
    assert.equal(permits(st, op, 4, parseAcl(acl([[1, 6, 0], [2, 4, 4242], [4, 4, 0], [0x10, 0, 0], [0x20, 0, 0]]))), false);
    // group:4343:r-- grants through a supplementary group
    assert.equal(permits(st, op, 4, parseAcl(acl([[1, 6, 0], [4, 0, 0], [8, 4, 4343], [0x10, 4, 0], [0x20, 0, 0]]))), true);
    // user:4242:--- denies although others may read
    assert.equal(permits({ ...st, mode: 0o100644 }, op, 4, parseAcl(acl([[1, 6, 0], [2, 0, 4242], [4, 4, 0], [0x10, 4, 0], [0x20, 4, 0]]))), false);
    assert.equal(parseAcl(Buffer.from([1, 0, 0, 0])), undefined, 'another version');
  });
});

describe('caller access: the walk (G8)', () => {
  let dir: string;
  before(async () => {
    await initProvenance();
    dir = mkdtempSync(path.join(os.tmpdir(), 'caller-access-'));
    chmodSync(dir, 0o755);
    mkdirSync(path.join(dir, 'priv/sub'), { recursive: true });
    chmodSync(path.join(dir, 'priv/sub'), 0o700);
    writeFileSync(path.join(dir, 'priv/sub/secret'), 'secret');
    chmodSync(path.join(dir, 'priv/sub/secret'), 0o644);
    mkdirSync(path.join(dir, 'pub'));
    writeFileSync(path.join(dir, 'pub/open'), 'open');
    writeFileSync(path.join(dir, 'pub/closed'), 'closed');
    chmodSync(path.join(dir, 'pub/closed'), 0o600);
    mkdirSync(path.join(dir, 'group'), { mode: 0o750 });
    chownSync(path.join(dir, 'group'), 0, 4343);
    chmodSync(path.join(dir, 'group'), 0o750);
    writeFileSync(path.join(dir, 'group/f'), 'g');
    symlinkSync(path.join(dir, 'priv/sub'), path.join(dir, 'pub/to-priv'));
    symlinkSync('pub', path.join(dir, 'to-pub'));
    symlinkSync('../group', path.join(dir, 'pub/up'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const refused = (p: string, why: RegExp) => assert.throws(() => statAsCaller(p, op), (e: unknown) => e instanceof NotReadable && why.test(e.message));

  it('takes a file the caller could read, and gives the inode it checked', () => {
    const st = statAsCaller(path.join(dir, 'pub/open'), op);
    assert.equal(st.size, 4);
    assert.equal(statAsCaller(path.join(dir, 'group/f'), op).size, 1, 'a directory searchable through a supplementary group');
  });

  it('refuses a file protected only by its directory, naming the directory', () => {
    refused(path.join(dir, 'priv/sub/secret'), /may not search directory .*priv\/sub\b/);
    refused(path.join(dir, 'priv/sub/missing'), /may not search/);
  });

  it('refuses a file the caller may not read, and /etc/shadow', () => {
    refused(path.join(dir, 'pub/closed'), /may not read '.*pub\/closed'/);
    refused('/etc/shadow', /may not read '\/etc\/shadow'/);
  });

  it('walks a link on the way as the caller would: to a private directory refused, to a public one taken', () => {
    refused(path.join(dir, 'pub/to-priv/secret'), /may not search directory .*priv\/sub/);
    assert.equal(statAsCaller(path.join(dir, 'to-pub/open'), op).size, 4);
    assert.equal(statAsCaller(path.join(dir, 'to-pub/up/f'), op).size, 1, "relative, with '..'");
  });

  it('refuses anything in /proc or /sys, also reached through a link, without reading where /proc links point', () => {
    refused('/proc/self/status', /lies in \/proc or \/sys/);
    refused(`/proc/1/cwd/x`, /lies in \/proc or \/sys/);
    refused('/sys/kernel/mm/transparent_hugepage/enabled', /lies in \/proc or \/sys/);
    symlinkSync('/proc/1', path.join(dir, 'pub/to-proc'));
    refused(path.join(dir, 'pub/to-proc/cwd/f'), /lies in \/proc or \/sys/);
  });

  it('refuses a final link and what is not a regular file, as a plain AddFile does', () => {
    symlinkSync(path.join(dir, 'pub/open'), path.join(dir, 'pub/link'));
    refused(path.join(dir, 'pub/link'), /symbolic link/);
    refused(path.join(dir, 'pub'), /not a regular file/);
    refused(path.join(dir, 'pub/none'), /does not exist/);
  });
});

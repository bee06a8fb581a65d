// furka-agent's files on disk as root touches them (docs/threat-model.md; A2, A3, A4): a writer swapping a directory for a link,
// or renaming a new file over an acknowledged one, never makes the agent send, delete or lose the wrong file.
// The server runs in this process on a loopback port; there is no inotifywait, the catalog is filled by rescans.
import { strict as assert } from 'node:assert';
import { chmodSync, closeSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync, unlinkSync, existsSync, fstatSync } from 'node:fs';
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { AllowList } from '../../src/agent/allow.js';
import { Catalog, type Announcement, type FileEntry } from '../../src/agent/catalog.js';
import { NameFilter } from '../../src/agent/name-filter.js';
import { LeaseCheck } from '../../src/agent/lease-check.js';
import * as openWriters from '../../src/agent/open-writers.js';
import { AgentServer } from '../../src/agent/server.js';
import { fileId, isFileOf, SourceFiles } from '../../src/agent/source-files.js';
import type { Logger } from '../../src/common/logger.js';
import { AgentClient } from '../fixtures/agent.js';
import { startFlip } from '../fixtures/flip.js';
import { freePort } from '../fixtures/net.js';
import { KeyCheck } from '../../src/common/shared-key.js';
import { fillInodes, mountTmpfs, unmountAll } from '../fixtures/tmpfs.js';

const warnings: string[] = [];
const quiet = { debug() {}, info() {}, warn: (_o: unknown, msg: string) => { warnings.push(msg); }, error() {} } as unknown as Logger;


/** How many of this process's descriptors are open on directory `dir`. */
function holdersOf(dir: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === dir;
    } catch {
      return false;
    }
  }).length;
}

describe('furka-agent: files reached without following links (docs/threat-model.md, A2-A4)', function () {
  this.timeout(60_000);
  let work: string;
  let root: string;
  let catalog: Catalog;
  let server: AgentServer | undefined;
  let client: AgentClient | undefined;
  let announced: Announcement[];
  const leases = new LeaseCheck();
  after(() => leases.close());

  /** The name the kernel reports a close of descriptor `fd` under: its dentry's, " (deleted)" once unlinked. */
  const closeName = (fd: number): string => path.basename(readlinkSync(`/proc/self/fd/${fd}`).replace(/ \(deleted\)$/, ''));
  const entries = (): FileEntry[] => [...catalog.listing()].flatMap((a) => (a.t === 'file' ? [a.entry] : []));
  const serve = async (): Promise<AgentClient> => {
    server = new AgentServer(catalog, new AllowList(['127.0.0.1']), new KeyCheck('0123456789abcdef'), quiet, 60_000, leases);
    const port = await freePort();
    await server.listen(port, '127.0.0.1');
    client = new AgentClient({ port, key: '0123456789abcdef' });
    return client;
  };

  beforeEach(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'agent-files-'));
    root = path.join(work, 'root');
    mkdirSync(root);
    announced = [];
    warnings.length = 0;
    catalog = new Catalog(root, new NameFilter(''), quiet);
    catalog.announced.on((a) => announced.push(a));
  });
  afterEach(async () => {
    client?.close();
    client = undefined;
    await server?.close();
    server = undefined;
    rmSync(work, { recursive: true, force: true });
  });

  it('never sends or deletes a file outside the root while a writer swaps a directory for a link to it, in a loop', async () => {
    const outside = path.join(work, 'victim');
    mkdirSync(outside);
    mkdirSync(path.join(root, 'd'));
    const n = 300;
    for (let i = 0; i < n; i++) {
      writeFileSync(path.join(root, 'd', `f_${i}`), `image ${i}`);
      writeFileSync(path.join(outside, `f_${i}`), 'SECRET');
    }
    symlinkSync(outside, path.join(root, 'dx'));
    catalog.rescan();
    const ids = entries().map((e) => e.id);
    assert.equal(ids.length, n, 'the link is not followed by the scan');
    const c = await serve();
    const flip = await startFlip(path.join(root, 'd'), path.join(root, 'dx'));
    let sent = 0;
    let deleted = 0;
    try {
      for (const id of ids) {
        const r = await c.file(id);
        if (r.status === 200) {
          sent++;
          assert.match(r.body.toString(), /^image \d+$/);
        }
        deleted += (await c.ack([id])).body.deleted.length;
      }
    } finally {
      await flip.stop(1000);
    }
    assert.deepEqual(readdirSync(outside).filter((f) => readFileSync(path.join(outside, f), 'utf8') === 'SECRET').length, n, 'every file outside untouched');
    const real = path.join(root, lstatSync(path.join(root, 'd')).isDirectory() ? 'd' : 'dx');
    assert.ok(sent > 0 && deleted > 0, `sent ${sent}, deleted ${deleted}: the loop must not block everything`);
    assert.equal(readdirSync(real).length, n - deleted, 'what was deleted was deleted below the root');
  });

  it('puts back a file a writer renamed over an acknowledged one while it was being deleted: never lost', async () => {
    const c = await serve();
    for (let i = 0; i < 20; i++) {
      const sent = path.join(root, `f_${i}`);
      const fresh = path.join(root, `n_${i}`);
      writeFileSync(sent, `sent ${i}`);
      writeFileSync(fresh, `new ${i}`);
      catalog.rescan();
      const id = entries().find((e) => e.path === `f_${i}`)!.id;
      const flip = await startFlip(sent, fresh);
      let reply;
      try {
        reply = await c.ack([id]);
      } finally {
        await flip.stop(1000);
      }
      const left = readdirSync(root).filter((f) => f.startsWith(`f_${i}`) || f.startsWith(`n_${i}`)).map((f) => readFileSync(path.join(root, f), 'utf8'));
      assert.ok(left.includes(`new ${i}`), `trial ${i}: the writer's new file is kept (${JSON.stringify(reply.body)}, left ${JSON.stringify(left)})`);
      assert.equal(left.includes(`sent ${i}`), reply.body.deleted.length === 0, `trial ${i}: the sent file is deleted exactly when the agent says so`);
    }
    assert.deepEqual(readdirSync(root).filter((f) => f.startsWith('.')), [], 'no hidden name left behind');
  });

  it('gives a file rewritten in place with the same size and mtime (one tick of a coarse clock) a new id: the first version\'s acknowledgement deletes nothing (A4)', async () => {
    const c = await serve();
    const f = path.join(root, 'rewritten.cbf');
    // The kernel's clock for file times moves in ticks (4 ms at HZ=250): both versions get the same mtime.
    const tick = new Date(1_700_000_000_000);
    writeFileSync(f, 'version 1');
    utimesSync(f, tick, tick);
    catalog.event({ kind: 'complete', rel: Buffer.from('rewritten.cbf'), closed: true });
    const first = entries().find((e) => e.path === 'rewritten.cbf')!;
    const sent = await c.file(first.id);
    assert.equal(sent.body.toString(), 'version 1');
    // Rewritten in place (the same inode), the same size, closed again within the tick.
    writeFileSync(f, 'version 2', { flag: 'r+' });
    utimesSync(f, tick, tick);
    catalog.event({ kind: 'complete', rel: Buffer.from('rewritten.cbf'), closed: true });
    const second = entries().find((e) => e.path === 'rewritten.cbf')!;
    assert.notEqual(second.id, first.id, 'a new id for the new version');
    assert.equal(second.ino, first.ino);
    // furkad placed the first version and acknowledges it: the second must stay.
    const kept = await c.ack([first.id], ['rewritten.cbf']);
    assert.deepEqual(kept.body, { deleted: [], kept: [{ id: first.id, reason: 'changed' }] });
    assert.equal((await c.file(first.id)).status, 410, 'the first version is no longer there to send');
    const body = await c.file(second.id, 'rewritten.cbf');
    assert.equal(body.body.toString(), 'version 2');
    assert.equal(body.trailers['x-furka-unchanged'], '1');
    assert.deepEqual((await c.ack([second.id], ['rewritten.cbf'])).body.deleted, [second.id]);
    assert.ok(!existsSync(f), 'deleted once its own version was acknowledged');
  });

  it('keeps an acknowledged file that changed after it was sent though its id did not (a rewrite with the same size and mtime, its close not read), and announces it as a new version (A4)', async () => {
    const c = await serve();
    const f = path.join(root, 'young.cbf');
    // As `cp -p` over it does: the bytes rewritten in place, the mtime set back (the ctime moves; no writer can set it).
    const t = new Date(1_700_000_000_000);
    writeFileSync(f, 'version 1');
    utimesSync(f, t, t);
    catalog.event({ kind: 'complete', rel: Buffer.from('young.cbf'), closed: true });
    const first = entries().find((e) => e.path === 'young.cbf')!;
    assert.equal((await c.file(first.id, 'young.cbf')).body.toString(), 'version 1');
    // Rewritten in place, the same size and mtime; its writer's close not read yet (no event given). (Within one
    // tick of the clock the ctime would not move either: then the bytes are compared, as the body was sent young.)
    writeFileSync(f, 'version 2', { flag: 'r+' });
    utimesSync(f, t, t);
    const kept = await c.ack([first.id], ['young.cbf']);
    assert.deepEqual(kept.body, { deleted: [], kept: [{ id: first.id, reason: 'changed' }] });
    assert.equal(readFileSync(f, 'utf8'), 'version 2', 'the new version stays, under its name');
    const second = entries().find((e) => e.path === 'young.cbf')!;
    assert.notEqual(second.id, first.id, 'announced again, as a new version');
    assert.equal((await c.file(second.id, 'young.cbf')).body.toString(), 'version 2');
    assert.deepEqual((await c.ack([second.id], ['young.cbf'])).body.deleted, [second.id]);
    assert.ok(!existsSync(f));
  });

  it('compares a file it kept nothing of sending (sent before a restart) with the checksum furkad says it placed before deleting it (A4)', async () => {
    const c = await serve();
    const tick = new Date(1_700_000_000_000);
    for (const [name, text] of [['same.cbf', 'placed'], ['other.cbf', 'placed']] as const) {
      writeFileSync(path.join(root, name), text);
      utimesSync(path.join(root, name), tick, tick);
    }
    catalog.rescan(); // a restarted agent: nothing sent by this one
    // What furkad placed: the bytes 'placed'. other.cbf was rewritten since, with the same size and mtime.
    const placedSum = (await c.file(entries().find((e) => e.path === 'same.cbf')!.id)).trailers['x-furka-checksum'] as string;
    // The agent restarts: what it sent is forgotten.
    client!.close();
    await server!.close();
    writeFileSync(path.join(root, 'other.cbf'), 'PLACED', { flag: 'r+' });
    utimesSync(path.join(root, 'other.cbf'), tick, tick);
    const d = await serve();
    const id = (name: string): string => entries().find((e) => e.path === name)!.id;
    const [same, other] = [id('same.cbf'), id('other.cbf')];
    const sum = placedSum.replace(/^xxh128:/, '');
    const r = await d.ack([same, other], ['same.cbf', 'other.cbf'], [sum, sum]);
    assert.deepEqual(r.body, { deleted: [same], kept: [{ id: other, reason: 'changed' }] });
    assert.ok(!existsSync(path.join(root, 'same.cbf')));
    assert.equal(readFileSync(path.join(root, 'other.cbf'), 'utf8'), 'PLACED', 'the version furkad never placed stays');
    assert.notEqual(id('other.cbf'), other, 'announced again as a new version');
  });

  it('compares the bytes of a file whose ctime moved after it was sent: a cp -p rewrite is kept, a chmod or a hard link deleted; a bad checksum refused (A4)', async () => {
    const c = await serve();
    const tick = new Date(1_700_000_000_000);
    for (const name of ['cp-p.cbf', 'chmod.cbf']) {
      writeFileSync(path.join(root, name), 'version 1');
      utimesSync(path.join(root, name), tick, tick);
    }
    catalog.rescan();
    // Read well after their last change (not within a tick of it): only a moved ctime says anything now.
    await new Promise((r) => setTimeout(r, 120));
    const id = (name: string): string => entries().find((e) => e.path === name)!.id;
    const [cp, chmod] = [id('cp-p.cbf'), id('chmod.cbf')];
    for (const [i, name] of ['cp-p.cbf', 'chmod.cbf'].entries()) assert.equal((await c.file([cp, chmod][i]!, name)).body.toString(), 'version 1');
    writeFileSync(path.join(root, 'cp-p.cbf'), 'version 2', { flag: 'r+' });
    utimesSync(path.join(root, 'cp-p.cbf'), tick, tick);
    chmodSync(path.join(root, 'chmod.cbf'), 0o600);
    linkSync(path.join(root, 'chmod.cbf'), path.join(work, 'elsewhere.cbf'));
    const bad = await c.ack([cp, chmod], ['cp-p.cbf', 'chmod.cbf'], ['', 'not-a-checksum']);
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /not-a-checksum/);
    assert.deepEqual(readdirSync(root).sort(), ['chmod.cbf', 'cp-p.cbf'], 'nothing deleted by a refused acknowledgement');
    const r = await c.ack([cp, chmod], ['cp-p.cbf', 'chmod.cbf']);
    assert.deepEqual(r.body, { deleted: [chmod], kept: [{ id: cp, reason: 'changed' }] });
    assert.equal(readFileSync(path.join(root, 'cp-p.cbf'), 'utf8'), 'version 2');
    assert.notEqual(id('cp-p.cbf'), cp, 'announced again as a new version');
  });

  it('takes the checksum furkad placed over its own record of a send: a file sent twice, rewritten between, deleted only if it is what was placed (A4)', async () => {
    const c = await serve();
    const tick = new Date(1_700_000_000_000);
    const sums: Record<string, string[]> = {};
    for (const name of ['placed-2nd.cbf', 'placed-1st.cbf']) {
      const f = path.join(root, name);
      writeFileSync(f, 'version 1');
      utimesSync(f, tick, tick);
    }
    catalog.rescan();
    const id = (name: string): string => entries().find((e) => e.path === name)!.id;
    const ids = { a: id('placed-2nd.cbf'), b: id('placed-1st.cbf') };
    for (const name of ['placed-2nd.cbf', 'placed-1st.cbf']) {
      const f = path.join(root, name);
      const first = await c.file(id(name), name);
      // Rewritten as cp -p does (the same size and mtime: the same id), then sent again.
      writeFileSync(f, 'version 2', { flag: 'r+' });
      utimesSync(f, tick, tick);
      const second = await c.file(id(name), name);
      sums[name] = [first, second].map((r) => String(r.trailers['x-furka-checksum']));
    }
    assert.equal(id('placed-2nd.cbf'), ids.a, 'the same id all along');
    // furkad placed the second body of one, the first of the other: its checksum says which.
    const r = await c.ack([ids.a, ids.b], ['placed-2nd.cbf', 'placed-1st.cbf'], [sums['placed-2nd.cbf']![1]!, sums['placed-1st.cbf']![0]!]);
    assert.deepEqual(r.body, { deleted: [ids.a], kept: [{ id: ids.b, reason: 'changed' }] });
    assert.equal(readFileSync(path.join(root, 'placed-1st.cbf'), 'utf8'), 'version 2', 'the version never placed stays');
  });

  it('takes the close of a file a scan found complete, arriving after the scan, as that file, not a rewrite; a rescan keeps a rewritten file\'s id (A2, A4)', () => {
    const f = path.join(root, 'scanned.cbf');
    const tick = new Date(1_700_000_000_000);
    writeFileSync(f, 'image');
    utimesSync(f, tick, tick);
    catalog.rescan();
    const ids = (): string[] => announced.flatMap((a) => (a.t === 'file' && a.entry.path === 'scanned.cbf' ? [a.entry.id] : []));
    assert.equal(ids().length, 1);
    // Its writer's close, queued in the kernel before the scan, read after it: the same file.
    catalog.event({ kind: 'complete', rel: Buffer.from('scanned.cbf'), closed: true });
    assert.equal(ids().length, 1, 'announced once');
    // A real rewrite within the tick: a new id.
    writeFileSync(f, 'IMAGE', { flag: 'r+' });
    utimesSync(f, tick, tick);
    catalog.event({ kind: 'complete', rel: Buffer.from('scanned.cbf'), closed: true });
    assert.equal(ids().length, 2);
    assert.notEqual(ids()[1], ids()[0]);
    // A rescan (a restart of inotifywait) finds the same file unchanged: the id it was last announced by.
    catalog.rescan();
    assert.equal(ids().length, 3);
    assert.equal(ids()[2], ids()[1]);
  });

  it('keeps an acknowledged file its writer still writes through a second descriptor, and announces it again at that close (A2, A4)', async () => {
    const c = await serve();
    const f = path.join(root, 'two-fds.cbf');
    // The writer's two descriptors: a header through the first, closed (its CLOSE_WRITE announces the file)...
    const first = openSync(f, 'w');
    const second = openSync(f, 'a');
    writeSync(first, 'header;');
    closeSync(first);
    catalog.event({ kind: 'complete', rel: Buffer.from('two-fds.cbf') });
    const sent = entries().find((e) => e.path === 'two-fds.cbf')!;
    // ...so what is read now is not all of it: not sent as the whole file.
    const body = await c.file(sent.id);
    assert.equal(body.trailers['x-furka-unchanged'], '0', 'the header alone is not passed as the file');
    // An acknowledgement (the header alone placed) deletes nothing while the second descriptor is open.
    const kept = await c.ack([sent.id]);
    assert.deepEqual(kept.body, { deleted: [], kept: [{ id: sent.id, reason: 'written' }] });
    assert.equal(readFileSync(f, 'utf8'), 'header;');
    assert.deepEqual(readdirSync(root), ['two-fds.cbf'], 'put back under its own name, nothing aside');
    // The rest, through the second descriptor, reaches the same file; its close announces the whole of it.
    // The kernel reports that close under the name the descriptor has now: the aside name it was put back from.
    writeSync(second, 'data');
    const closedAs = closeName(second);
    assert.match(closedAs, /^\.furka-agent-acked-.*~two-fds\.cbf$/);
    closeSync(second);
    catalog.event({ kind: 'complete', rel: Buffer.from(closedAs), closed: true });
    const whole = entries().find((e) => e.path === 'two-fds.cbf')!;
    assert.notEqual(whole.id, sent.id);
    const got = await c.file(whole.id);
    assert.equal(got.body.toString(), 'header;data');
    assert.equal(got.trailers['x-furka-unchanged'], '1');
    assert.deepEqual((await c.ack([whole.id])).body, { deleted: [whole.id], kept: [] });
    assert.deepEqual(readdirSync(root), []);
  });

  it('announces a kept file again at its writer\'s last close even when that one wrote nothing more (A2, A4)', async () => {
    const c = await serve();
    const f = path.join(root, 'idle-fd.cbf');
    writeFileSync(f, 'all of it');
    catalog.event({ kind: 'complete', rel: Buffer.from('idle-fd.cbf') });
    const first = entries().find((e) => e.path === 'idle-fd.cbf')!;
    const again = openSync(f, 'r+'); // opened for writing again after its announcement, nothing written
    assert.deepEqual((await c.ack([first.id])).body.kept, [{ id: first.id, reason: 'written' }]);
    announced.length = 0;
    const closedAs = closeName(again);
    closeSync(again);
    catalog.event({ kind: 'complete', rel: Buffer.from(closedAs), closed: true });
    assert.deepEqual(announced.flatMap((a) => (a.t === 'file' ? [a.entry.id] : [])), [first.id], 'the same file, announced again');
    assert.deepEqual((await c.ack([first.id])).body.deleted, [first.id]);
  });

  it('finishes a deletion an agent killed in the middle left undone: the acknowledged file deleted, another one put back, an unknown one left (A4)', () => {
    const id = (p: string) => { const st = lstatSync(p, { bigint: true }); return `${st.ino}-${st.size}-${st.mtimeNs}`; };
    mkdirSync(path.join(root, 'd'));
    // The acknowledged file itself, taken aside under a name that says so: deleted now.
    writeFileSync(path.join(root, 'd', 'acked.cbf'), 'placed on the PPU');
    const ackedAside = `.furka-agent-acked-${id(path.join(root, 'd', 'acked.cbf'))}-0123abcd~acked.cbf`;
    renameSync(path.join(root, 'd', 'acked.cbf'), path.join(root, 'd', ackedAside));
    // A writer's new file that took the name just before the rename: put back under that name...
    writeFileSync(path.join(root, 'd', 'other.cbf'), 'new data');
    const otherAside = `.furka-agent-acked-1-17-99-89abcdef~other.cbf`;
    renameSync(path.join(root, 'd', 'other.cbf'), path.join(root, 'd', otherAside));
    // ...or beside a newer file of that name, never over it.
    writeFileSync(path.join(root, 'busy.cbf'), 'older data');
    renameSync(path.join(root, 'busy.cbf'), path.join(root, `.furka-agent-acked-1-17-99-00000000~busy.cbf`));
    writeFileSync(path.join(root, 'busy.cbf'), 'newer data');
    // An older agent's name, which does not say: left for a person.
    writeFileSync(path.join(root, '.furka-agent-acked-0123456789abcdef'), 'who knows');
    catalog.rescan();
    assert.deepEqual(readdirSync(path.join(root, 'd')).sort(), ['other.cbf'], 'acknowledged file deleted, the other put back');
    assert.equal(readFileSync(path.join(root, 'd', 'other.cbf'), 'utf8'), 'new data');
    assert.equal(readFileSync(path.join(root, 'busy.cbf'), 'utf8'), 'newer data');
    assert.equal(readFileSync(path.join(root, 'busy.cbf.~1~'), 'utf8'), 'older data');
    assert.equal(readFileSync(path.join(root, '.furka-agent-acked-0123456789abcdef'), 'utf8'), 'who knows');
    assert.deepEqual(entries().map((e) => e.path).sort(), ['busy.cbf', 'busy.cbf.~1~', 'd/other.cbf'], 'files put back are announced');
    assert.ok(warnings.some((w) => /whose name does not say/.test(w)), warnings.join('; '));
    // link(2) said only "created" for the files put back: that is not taken for a writer starting a file.
    catalog.event({ kind: 'created', rel: Buffer.from('d/other.cbf') });
    catalog.event({ kind: 'created', rel: Buffer.from('busy.cbf.~1~') });
    assert.equal(catalog.waiting, 0, 'nothing counted as being written');
  });

  it('puts back, as changed, an acknowledged file written while the question was out, and leaves a deletion in progress alone in a rescan (A4)', () => {
    const f = path.join(root, 'late.cbf');
    writeFileSync(f, 'first');
    const w = openSync(f, 'a'); // opened before it is taken aside
    catalog.rescan();
    const entry = entries().find((e) => e.path === 'late.cbf')!;
    const t = catalog.files.takeAside('late.cbf', entry.id);
    assert.ok('fd' in t, JSON.stringify(t, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    // A rescan meanwhile (a queue overflow) finds the hidden name: not a killed agent's leftover to finish.
    catalog.rescan();
    assert.equal(readdirSync(root).filter((n) => n.startsWith('.furka-agent-acked-')).length, 1, 'left aside, untouched');
    writeSync(w, ' and more');
    closeSync(w);
    const r = catalog.files.finishAside(t, false);
    assert.equal(r.outcome, 'changed');
    assert.deepEqual(readdirSync(root), ['late.cbf']);
    assert.equal(readFileSync(f, 'utf8'), 'first and more');
  });

  it('puts back, never deletes, an acknowledged file left aside by a killed agent while its writer still writes it (A4)', async () => {
    writeFileSync(path.join(root, 'held.cbf'), 'header;');
    const st = lstatSync(path.join(root, 'held.cbf'), { bigint: true });
    const aside = `.furka-agent-acked-${st.ino}-${st.size}-${st.mtimeNs}-0123abcd~held.cbf`;
    renameSync(path.join(root, 'held.cbf'), path.join(root, aside));
    // The writer's second descriptor, in another process (as the detector's writer is).
    const writer = spawn('python3', ['-c', 'import sys, time\nw = open(sys.argv[1], "ab")\nprint("ready", flush=True)\nsys.stdin.read()\nw.write(b"data")\nw.close()', path.join(root, aside)],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise((resolve) => writer.stdout!.once('data', resolve));
    catalog.rescan();
    assert.deepEqual(readdirSync(root), ['held.cbf'], 'put back under its name');
    writer.stdin!.end();
    await new Promise((resolve) => writer.once('exit', resolve));
    assert.equal(readFileSync(path.join(root, 'held.cbf'), 'utf8'), 'header;data', 'what the writer wrote later is in it');
  });

  it("asks /proc once per rescan for every name left aside, however many a user planted (a hostile tester's 1000 took a minute)", () => {
    // The user's own file, held open for writing, hard-linked under 300 names of the agent's aside form.
    writeFileSync(path.join(root, 'mine.cbf'), 'x');
    const st = lstatSync(path.join(root, 'mine.cbf'), { bigint: true });
    const fd = openSync(path.join(root, 'mine.cbf'), 'a');
    const walks = { n: 0 };
    const real = openWriters.filesBeingWritten;
    const patched = openWriters as unknown as { filesBeingWritten: typeof real };
    patched.filesBeingWritten = (files) => {
      walks.n++;
      return real(files);
    };
    try {
      for (let i = 0; i < 300; i++) linkSync(path.join(root, 'mine.cbf'), path.join(root, `.furka-agent-acked-${st.ino}-${st.size}-${st.mtimeNs}-${i.toString(16).padStart(8, '0')}`));
      catalog.rescan();
      assert.ok(walks.n <= 2, `${walks.n} walks of /proc for 300 names`);
      assert.ok(existsSync(path.join(root, 'mine.cbf')), "the user's file stays");
    } finally {
      patched.filesBeingWritten = real;
      closeSync(fd);
    }
  });

  it('announces a file put back under its name again, though link(2) only says "created"', () => {
    writeFileSync(path.join(root, 'x.cbf'), 'new');
    catalog.restored('x.cbf');
    catalog.event({ kind: 'gone', rel: Buffer.from('x.cbf') });
    catalog.event({ kind: 'created', rel: Buffer.from('x.cbf') });
    assert.deepEqual(announced.flatMap((a) => (a.t === 'file' ? [a.entry.path] : [])), ['x.cbf']);
    catalog.event({ kind: 'created', rel: Buffer.from('x.cbf') });
    assert.equal(catalog.waiting, 1, 'only once: a later "created" is a writer starting a file');
  });

  it('takes a directory renamed away and another made under its name as the kernel says, not as a kept handle saw it', () => {
    catalog.allWatched = () => true;
    mkdirSync(path.join(root, 'd'));
    writeFileSync(path.join(root, 'd', 'a.cbf'), 'OLD');
    catalog.rescan();
    const old = entries()[0]!;
    assert.equal(catalog.files.sameness(old.path, old.id), 'same');
    assert.equal(holdersOf(path.join(root, 'd')), 1, 'd/ is kept open now');
    renameSync(path.join(root, 'd'), path.join(root, 'e'));
    mkdirSync(path.join(root, 'd'));
    writeFileSync(path.join(root, 'd', 'a.cbf'), 'NEWER');
    catalog.event({ kind: 'dir-gone', rel: Buffer.from('d') });
    catalog.event({ kind: 'complete', rel: Buffer.from('d/a.cbf'), closed: true });
    const now = entries().find((e) => e.path === 'd/a.cbf');
    assert.equal(now?.size, 5n, 'the new d/a.cbf, not the one in the directory renamed to e');
    assert.equal(catalog.files.sameness(old.path, old.id), 'changed');
  });

  it('takes a directory renamed onto an empty one of the same name (the kernel says only "moved to") as the new one', () => {
    catalog.allWatched = () => true;
    mkdirSync(path.join(root, 'f'));
    assert.equal(catalog.files.lstat('f/b.cbf'), undefined);
    assert.equal(holdersOf(path.join(root, 'f')), 1, 'the empty f/ is kept open now');
    mkdirSync(path.join(root, 'g'));
    writeFileSync(path.join(root, 'g', 'b.cbf'), 'BB');
    renameSync(path.join(root, 'g'), path.join(root, 'f'));
    catalog.event({ kind: 'dir-new', rel: Buffer.from('f') });
    assert.equal(catalog.files.lstat('f/b.cbf')?.size, 2n);
  });

  it('keeps no directory open while some directory has no watch: no event would say it was renamed', () => {
    mkdirSync(path.join(root, 'd'));
    writeFileSync(path.join(root, 'd', 'a.cbf'), 'OLD');
    let watched = false;
    catalog.allWatched = () => watched;
    assert.ok(catalog.files.lstat('d/a.cbf'));
    renameSync(path.join(root, 'd'), path.join(root, 'e'));
    assert.equal(catalog.files.lstat('d/a.cbf'), undefined, 'walked anew: nothing kept');
    watched = true;
    renameSync(path.join(root, 'e'), path.join(root, 'd'));
    assert.ok(catalog.files.lstat('d/a.cbf'));
    assert.equal(holdersOf(path.join(root, 'd')), 1, 'kept while all are watched');
    watched = false;
    renameSync(path.join(root, 'd'), path.join(root, 'e'));
    assert.equal(catalog.files.lstat('d/a.cbf'), undefined);
    assert.equal(holdersOf(path.join(root, 'e')), 0, 'one kept while all were watched is let go once not');
    watched = true;
    assert.equal(catalog.files.lstat('d/a.cbf'), undefined, 'and not used again when all are watched again');
  });

  it('scans, stats and opens nothing through a link below the root, and deletes only the announced file', () => {
    const outside = path.join(work, 'elsewhere');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'secret'), 'SECRET');
    symlinkSync(outside, path.join(root, 'l'));
    mkdirSync(path.join(root, 'd'));
    writeFileSync(path.join(root, 'd', 'a.cbf'), 'A');
    catalog.rescan();
    assert.deepEqual(entries().map((e) => e.path), ['d/a.cbf']);
    catalog.event({ kind: 'complete', rel: Buffer.from('l/secret') });
    assert.deepEqual(entries().map((e) => e.path), ['d/a.cbf'], 'a file reached through a link is not announced');

    const files = new SourceFiles(root, () => true); // directory handles kept, as while every directory is watched
    assert.equal(files.lstat('l/secret'), undefined);
    const a = entries()[0]!;
    assert.equal(files.sameness(a.path, a.id), 'same');
    // d swapped for a link to a directory holding a file of that name: not reached through the link.
    rmSync(path.join(root, 'd'), { recursive: true });
    writeFileSync(path.join(outside, 'a.cbf'), 'B');
    symlinkSync(outside, path.join(root, 'd'));
    // Until the kernel's word of it reaches the catalog, the kept handle is the removed directory: never the link.
    assert.equal(files.sameness(a.path, a.id), 'gone');
    assert.equal(files.open(a.path, a.id), undefined);
    files.forgetDir('d'); // what the catalog does on that event (dir-gone)
    assert.equal(files.sameness(a.path, a.id), 'changed');
    assert.equal(files.open(a.path, a.id), undefined);
    assert.deepEqual(files.remove(a.path, a.id), { outcome: 'changed' });
    assert.equal(readFileSync(path.join(outside, 'a.cbf'), 'utf8'), 'B');
    unlinkSync(path.join(root, 'd')); // the link (rmSync follows it on Node 16: EISDIR)
    assert.equal(files.sameness(a.path, a.id), 'gone');
    assert.deepEqual(files.remove(a.path, a.id), { outcome: 'gone' });
  });
});

describe('furka-agent: the root held open only while files flow (A6)', () => {
  it('lets go of its root a second after the last use, so that the ramdisk can be unmounted', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agent-root-'));
    try {
      writeFileSync(path.join(root, 'a.cbf'), 'A');
      mkdirSync(path.join(root, 'run'));
      writeFileSync(path.join(root, 'run', 'b.cbf'), 'B');
      const holders = (): number => holdersOf(root);
      const files = new SourceFiles(root, () => true);
      assert.ok(files.lstat('a.cbf')?.isFile());
      assert.equal(holders(), 1, 'held while in use');
      assert.ok(files.lstat('a.cbf'));
      assert.equal(holders(), 1, 'one handle, not one per call');
      assert.ok(files.lstat('run/b.cbf'));
      assert.equal(holdersOf(path.join(root, 'run')), 1, 'a directory below it kept too');
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(holders(), 0, 'closed once idle');
      assert.equal(holdersOf(path.join(root, 'run')), 0, 'with the directories kept below it: a mount there is free again');
      assert.ok(files.lstat('a.cbf'), 'and opened again when needed');
      files.forgetRoot();
      assert.equal(holders(), 0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('keeps the directories files are in open while files flow, each once, and lets them go with the root', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agent-root-'));
    try {
      mkdirSync(path.join(root, 'run', 'sub'), { recursive: true });
      writeFileSync(path.join(root, 'run', 'sub', 'a.cbf'), 'A');
      writeFileSync(path.join(root, 'run', 'sub', 'b.cbf'), 'B');
      const sub = path.join(root, 'run', 'sub');
      const holders = holdersOf;
      const files = new SourceFiles(root, () => true);
      const a = files.lstat('run/sub/a.cbf')!;
      assert.ok(files.lstat('run//sub/b.cbf'));
      const fd = files.open('run/sub/a.cbf', fileId(a))!.fd;
      closeSync(fd);
      assert.equal(holders(sub), 1, 'one kept handle for the directory, whatever the spelling of its path');
      assert.equal(holders(path.join(root, 'run')), 0, 'none for the directories on the way');
      files.forgetDir('run');
      assert.equal(holders(sub), 0, 'forgetting a directory forgets those below it');
      assert.ok(files.lstat('run/sub/a.cbf'));
      assert.equal(holders(sub), 1);
      files.forgetRoot(); // as at a rescan, and when idle for a second (above)
      assert.equal(holders(sub), 0, 'closed with the root');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('opens a file to send with its fstat handed over (its ctime is read from it: no second fstat, #13), in kept directories of any name', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agent-root-'));
    try {
      const dir = path.join(root, 'rün', 'ß');
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'a.cbf'), 'A');
      const files = new SourceFiles(root, () => true);
      const a = files.lstat('rün/ß/a.cbf')!;
      const opened = files.open('rün//ß/a.cbf', fileId(a))!;
      try {
        assert.equal(opened.stat.ino, a.ino);
        assert.equal(opened.stat.ctimeNs, a.ctimeNs);
        assert.ok(isFileOf(fstatSync(opened.fd, { bigint: true }), fileId(a)));
      } finally {
        closeSync(opened.fd);
      }
      assert.ok(files.lstat(Buffer.from('rün/ß/a.cbf')));
      assert.equal(holdersOf(dir), 1, 'one kept handle, whether the path came as text or as bytes');
      files.forgetDir('rün');
      assert.equal(holdersOf(dir), 0);
      files.forgetRoot();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('furka-agent: an acknowledged file still being written, put back on a ramdisk out of inodes (A4, F1)', function () {
  this.timeout(30_000);
  let work: string;
  before(() => { work = mkdtempSync(path.join(os.tmpdir(), 'agent-noinodes-')); });
  after(() => {
    unmountAll();
    rmSync(work, { recursive: true, force: true });
  });

  it('is put back under its own name by rename (a link needs an inode there is none of), the same file, nothing left under the hidden name', () => {
    const root = mountTmpfs(path.join(work, 'ramdisk'), 1 << 20, { inodes: 50 });
    mkdirSync(path.join(root, 'r'));
    const file = path.join(root, 'r', 'img.cbf');
    writeFileSync(file, Buffer.alloc(5000, 1));
    const st = lstatSync(file, { bigint: true });
    // The writer reopens it for appending and holds it; then every inode left is taken.
    const writer = openSync(file, 'a');
    try {
      fillInodes(path.join(root, 'r'));
      assert.throws(() => linkSync(file, path.join(root, 'r', 'probe')), /ENOSPC/, 'no inode left for a link');
      const files = new SourceFiles(root);
      const t = files.takeAside('r/img.cbf', fileId(st));
      assert.ok('fd' in t, 'taken aside');
      const r = files.finishAside(t, true); // its writer still has it open
      assert.equal(r.outcome, 'written');
      assert.equal(r.restoredAs, 'r/img.cbf', 'under its own name');
      assert.equal(lstatSync(file, { bigint: true }).ino, st.ino, 'the same file');
      assert.deepEqual(readdirSync(path.join(root, 'r')).filter((n) => n.startsWith('.furka-agent')), [], 'nothing under a hidden name');
      writeSync(writer, Buffer.alloc(3000, 2));
    } finally {
      closeSync(writer);
    }
    assert.equal(readFileSync(file).length, 8000, 'the writer appended to it where it is');
  });
});

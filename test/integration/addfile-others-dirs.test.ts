// An operator's AddFile against another user's storage directories (G3, G8, docs/threat-model.md; hostile tester
// h6): real users, the shipped bus policy. A tree of the operator's shaped like the victim's shift
// (`t/./1mf/V_G/run1/img_00001.cbf`) made grimseld give the victim's storage directories to root, 0755, and put
// the operator's file under the name the victim's next image took; now such a copy is refused and nothing changes.
import { strict as assert } from 'node:assert';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, PPUCTL_BIN } from '../fixtures/ppu.js';
import { shippedPolicies } from '../fixtures/bus-policy.js';
import { eventually, writeImage } from '../fixtures/files.js';

const TAG = `${process.pid % 100000}`;
const OPERATORS = `ppuop${TAG}`;
const VICTIM = `ppuvic${TAG}`;
const OPERATOR = `ppuopr${TAG}`;


const idOf = (user: string, flag: '-u' | '-g'): number => Number(execFileSync('id', [flag, user]).toString());

function owner(p: string): string {
  const st = lstatSync(p);
  return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
}

describe("an operator's AddFile of a tree shaped like another user's shift (G3, G8, h6)", function () {
  this.timeout(180_000);
  let ppu: Ppu;
  let vu = 0;
  let vg = 0;
  let ou = 0;

  /** Runs `sh -c script` as `user` with their groups; true when it succeeded. */
  const as = (user: string, script: string): boolean =>
    spawnSync('setpriv', [`--reuid=${user}`, `--regid=${idOf(user, '-g')}`, '--init-groups', 'sh', '-c', script], { timeout: 10_000 }).status === 0;
  const ppuctlAs = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
    execFile('setpriv', [`--reuid=${ou}`, `--regid=${OPERATORS}`, '--init-groups', process.execPath, PPUCTL_BIN, ...args],
      { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: ppu.bus.address }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }));
  });
  const storage = (rel: string): string => path.join(ppu.storageRoot, 'internal', rel);
  const copyErrors = (): string[] => ppu.grimseld!.proc.output().split('\n').filter((l) => l.includes('"errcode":"COPY_ERROR"'));

  before(async () => {
    execFileSync('groupadd', [OPERATORS]);
    execFileSync('useradd', ['--no-create-home', '--user-group', VICTIM]);
    execFileSync('useradd', ['--no-create-home', '--no-user-group', '-g', OPERATORS, OPERATOR]);
    [vu, vg, ou] = [idOf(VICTIM, '-u'), idOf(VICTIM, '-g'), idOf(OPERATOR, '-u')];
    ppu = new Ppu({ prefix: 'ppu-addfile-others', busPolicyXml: shippedPolicies(OPERATORS), uid: vu, gid: vg });
    // mkdtemp makes it 0700: the users must reach their trees and the storage, as on a PPU.
    chmodSync(ppu.work, 0o755);
    await ppu.start();
  });
  after(async () => {
    await ppu?.stop();
    for (const [cmd, name] of [['userdel', VICTIM], ['userdel', OPERATOR], ['groupdel', OPERATORS]] as const) {
      try {
        execFileSync(cmd, [name], { stdio: 'ignore' });
      } catch { /* not made */ }
    }
    // userdel removes the victim's own group with the user; one left behind (an older useradd) goes here.
    try {
      execFileSync('groupdel', [VICTIM], { stdio: 'ignore' });
    } catch { /* gone with the user */ }
  });

  it("refuses the copy into the victim's storage directories, the shared 1mf/ and the storage's target, changing nothing there", async () => {
    const usr = `1mf/${vu}_${vg}`;
    const det = ppu.detectorRamdisks['1MF']!;
    writeImage(det, 'run1/img_00000.cbf', 100);
    await eventually(() => existsSync(storage(`${usr}/run1/img_00000.cbf`)), 30_000, "the victim's first image on the storage");
    const dirs = ['1mf', usr, `${usr}/run1`];
    const before = dirs.map((d) => owner(storage(d)));
    assert.deepEqual(before.slice(1), [`${vu}:${vg} 755`, `${vu}:${vg} 755`], "the victim's storage directories are theirs");

    // The operator's tree, as the tester made it: their own directories and files, named like the victim's.
    const t = path.join(ppu.work, 'op', 't');
    mkdirSync(path.dirname(t));
    chownSync(path.dirname(t), ou, 0);
    assert.ok(as(OPERATOR, `mkdir -p ${t}/${usr}/run1 ${t}/mine && echo planted > ${t}/${usr}/run1/img_00001.cbf && ` +
      `echo shared > ${t}/1mf/img_00002.cbf && printf 'grimsel-storage-mark 1\\n%032d\\n' 0 > ${t}/.grimsel-storage && echo ok > ${t}/mine/notes.txt`));
    const failed = async (): Promise<bigint> => (await ppu.queryStatus(1))[0]![6];
    const failedBefore = await failed();
    const added = ['1mf/img_00002.cbf', `${usr}/run1/img_00001.cbf`];
    for (const rel of [...added, 'mine/notes.txt']) {
      const r = await ppuctlAs('add', `${t}/./${rel}`);
      assert.equal(r.code, 0, r.stderr);
    }
    // A file of theirs with nothing of its path replicated would go straight into the storage's target: refused at
    // once, naming why (it was taken and then failed on every storage). A mark of theirs there is refused by its name
    // first: grimseld keeps it for itself in every storage's target (since 2026-12-06).
    const refusals: Array<[string, RegExp]> = [
      [`${t}/./.grimsel-storage`, /'\.grimsel-storage' right after '\.\/' is a name grimseld keeps for itself in each storage's target/],
      [`${t}/mine/notes.txt`, new RegExp(`is uid ${ou}'s, and nothing of its path is replicated .*Put the '\\./' before a directory of theirs`)],
    ];
    for (const [p, why] of refusals) {
      const r = await ppuctlAs('add', p);
      assert.notEqual(r.code, 0, `${p} refused`);
      assert.match(r.stderr, why, r.stderr);
    }
    await eventually(() => existsSync(storage('mine/notes.txt')), 30_000, "the operator's file in a directory of their own");
    await ppu.quiescent();
    assert.equal(owner(storage('mine')).split(':')[0], String(ou), 'a directory of theirs made theirs');

    // Refused, each counted failed and said, naming the directory and its owner.
    assert.equal(await failed(), failedBefore + 2n, 'the two copies counted failed');
    const errors = copyErrors();
    assert.ok(errors.some((l) => l.includes(`${storage(usr)} is uid ${vu}'s, not the owner's of the directory it stands for`) && l.includes('not retried')),
      errors.join('\n'));
    assert.ok(errors.some((l) => l.includes(`${storage('1mf')} is root's, and the file uid ${ou}'s`)), errors.join('\n'));
    // Nothing changed: the victim's directories are still theirs, holding nothing of the operator's.
    assert.deepEqual(dirs.map((d) => owner(storage(d))), before);
    for (const rel of [...added, '.grimsel-storage', 'notes.txt']) assert.equal(existsSync(storage(rel)), false, rel);
    assert.deepEqual(readdirSync(storage(`${usr}/run1`)), ['img_00000.cbf']);
    assert.ok(as(VICTIM, `touch ${storage(`${usr}/run1/mine`)} && mv ${storage(`${usr}/run1/mine`)} ${storage(`${usr}/mine`)} && rm ${storage(`${usr}/mine`)}`),
      'the victim still creates, renames and deletes in their directories');

    // The victim's next image gets its own name.
    const next = writeImage(det, 'run1/img_00001.cbf', 200);
    await eventually(() => existsSync(storage(`${usr}/run1/img_00001.cbf`)), 30_000, "the victim's next image");
    await ppu.quiescent();
    assert.equal(lstatSync(storage(`${usr}/run1/img_00001.cbf`)).size, next.size);
    assert.equal(lstatSync(storage(`${usr}/run1/img_00001.cbf`)).uid, vu);
    assert.deepEqual(readdirSync(storage(`${usr}/run1`)).sort(), ['img_00000.cbf', 'img_00001.cbf'], 'no numbered name beside a planted file');
  });
});

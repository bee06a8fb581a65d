// The detector's rsync daemon asks for furkad's user and password, as the shipped one does (F1, S6): 'hosts
// allow' alone let every local user of the PPU pull the images and, the module being writable, have them
// deleted. furkad logs in with the detector server's key (rsync_password_file), read again for every run.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Ppu, FURKAD_BIN, launchOf, iniText, tempDir } from '../fixtures/ppu.js';
import { eventually, sha256File, writeImage } from '../fixtures/files.js';
import { startProcess } from '../fixtures/processes.js';

type Row = [string, string, string];

describe("furkad logs in to the detector's rsync daemon (F1, S6)", function () {
  this.timeout(120_000);
  let ppu: Ppu;
  before(async () => {
    // 2MF keeps its sources: its runs are the shift's own processes, which log in the same way.
    ppu = await new Ppu({ prefix: 'ppu-rsync-login', detectors: ['1MF', '2MF'], detectorConf: { '2MF': { remove_source: 'no' } } }).start();
    await ppu.startShift(4600, 4601, []);
  });
  after(async () => ppu?.stop());

  const row = async (id: string): Promise<Row> => (await ppu.furkaProperty<Row[]>('Detectors')).find((r) => r[0] === id)!;
  const placed = (id: string, rel: string): string => path.join(ppu.ppuRamdisk, id.toLowerCase(), '4600_4601', rel);
  /** An rsync client of someone on the PPU without furkad's key: `password` undefined = none at all. */
  const stranger = (id: string, args: string[], password?: string) => spawnSync('rsync', [...args, `rsync://furkad@127.0.0.1:${ppu.rsyncd[id]!.port}/ramdisk/`, path.join(ppu.work, 'stolen/')],
    { encoding: 'utf8', input: '', env: { ...process.env, RSYNC_PASSWORD: password ?? '' }, timeout: 30_000 });

  it('pulls with the key, as root and as the shift, while a client without it gets nothing and deletes nothing', async () => {
    const one = writeImage(ppu.detectorRamdisks['1MF']!, 'run/img_001.cbf', 400_000);
    const two = writeImage(ppu.detectorRamdisks['2MF']!, 'run/img_001.cbf', 400_000);
    await eventually(() => existsSync(placed('1MF', one.rel)) && existsSync(placed('2MF', two.rel)), 30_000, 'both files on the PPU');
    assert.equal(sha256File(readFileSync(placed('1MF', one.rel))), one.sha256);
    assert.equal(sha256File(readFileSync(placed('2MF', two.rel))), two.sha256);
    assert.equal(statSync(placed('2MF', two.rel)).uid, 4600);
    assert.ok(!existsSync(path.join(ppu.detectorRamdisks['1MF']!, one.rel)), "1MF's source removed once placed");
    // The shift's user can read what its own process holds: said at start, for 2MF only.
    await ppu.furkad!.proc.said(/remove_source = no runs rsync as the shift's user, who can read its rsync password/);
    const warning = ppu.furkad!.proc.output().split('\n').find((l) => /who can read its rsync password/.test(l))!;
    assert.match(warning, /"detectors":\["2MF"\]/);

    // What any user of the PPU could do before: list, pull and remove. Refused, with or without a guess.
    const bait = writeImage(ppu.detectorRamdisks['2MF']!, 'run/img_002.cbf', 1000);
    for (const password of [undefined, 'f'.repeat(64)]) {
      const r = stranger('2MF', ['-r', '--remove-source-files'], password);
      assert.equal(r.status, 5, `rsync without the key (${String(password)}): ${r.stderr}`);
      assert.match(r.stderr, /@ERROR: auth failed on module ramdisk/);
    }
    assert.ok(existsSync(path.join(ppu.detectorRamdisks['2MF']!, bait.rel)), 'the detector file is still there');
    assert.ok(!existsSync(path.join(ppu.work, 'stolen', bait.rel)), 'nothing pulled');
  });

  it("says whose password was refused and from which file, keeps the detector's files, and goes on by itself once the key is right", async () => {
    const { keyFile, key } = ppu.rsyncKey;
    writeFileSync(keyFile, `${'0'.repeat(64)}\n`, { mode: 0o600 });
    try {
      await eventually(async () => (await row('1MF'))[1] === 'retrying', 30_000, '1MF refused by its daemon');
      const [, , reason] = await row('1MF');
      assert.match(reason, /^rsync exit 5: the detector's rsync daemon asks for a password for module ramdisk and refused furkad's: /);
      assert.ok(reason.includes(`the password in ${keyFile} (rsync_password_file) is not the daemon's for user 'furkad'`), reason);
      assert.match(reason, /copy the detector server's key \(\/etc\/ppu\/furka-agent\.key there/);
      const waiting = writeImage(ppu.detectorRamdisks['1MF']!, 'run/img_003.cbf', 5000);
      // Refused runs move nothing: the file stays on the detector, and nothing of it reaches the PPU.
      await eventually(async () => (await row('1MF'))[1] === 'retrying', 10_000, 'still refused');
      assert.ok(existsSync(path.join(ppu.detectorRamdisks['1MF']!, waiting.rel)));
      assert.ok(!existsSync(placed('1MF', waiting.rel)));

      // A key others can read is never given to rsync: named, with what to do.
      writeFileSync(keyFile, `${key}\n`);
      chmodSync(keyFile, 0o644);
      await eventually(async () => /rsync_password_file: \S+ is open to group or others \(mode 0644\)/.test((await row('1MF'))[2]), 30_000, 'the open key named');
      assert.ok(!existsSync(placed('1MF', waiting.rel)), 'not pulled with a key open to others');
      chmodSync(keyFile, 0o600);
      await eventually(() => existsSync(placed('1MF', waiting.rel)), 60_000, 'the file once the key is right, without a restart');
      assert.equal(sha256File(readFileSync(placed('1MF', waiting.rel))), waiting.sha256);
      await eventually(async () => (await row('1MF'))[1] !== 'retrying', 30_000, '1MF no longer retrying');
    } finally {
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
      chmodSync(keyFile, 0o600);
    }
  });

  it('refuses at --check a password file that is named but missing, and one open to others, by key', async () => {
    const work = tempDir('rsync-login-check');
    const conf = path.join(work, 'furkad.conf');
    const launch = launchOf(FURKAD_BIN);
    const check = async (file: string): Promise<string> => {
      writeFileSync(conf, iniText({ uid: 4600, gid: 4601, state_dir: path.join(work, 'state') },
        { 'detector.1MF': { remoteIP: '127.0.0.1', target: `${work}/ppu/./1mf`, rsync_password_file: file } }));
      const p = startProcess(process.execPath, [...launch.args, '--check', '--config', conf], { env: { ...process.env, ...launch.env } });
      assert.equal(await p.exited, 78, p.output());
      return p.output();
    };
    assert.match(await check(path.join(work, 'none.key')), /section \[detector\.1MF\], key 'rsync_password_file': \S+none\.key does not exist/);
    const open = path.join(work, 'open.key');
    writeFileSync(open, 'a1b2c3d4e5f60718293a4b5c6d7e8f90\n', { mode: 0o640 });
    chmodSync(open, 0o640);
    assert.match(await check(open), /section \[detector\.1MF\], key 'rsync_password_file': \S+open\.key is open to group or others \(mode 0640\)/);
  });
});

// `npm run demo`: the whole data path on loopback, live. A real furka-agent (or, with --transport rsync, a
// real rsync daemon) serves a temporary "detector ramdisk", a private bus carries D-Bus, grimseld and furkad
// run as child processes, a shift is started with busctl, and a writer produces PILATUS-like images at a
// fixed rate (temp name, then rename).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs, promisify } from 'node:util';
import * as path from 'node:path';
import { Ppu } from '../test/fixtures/ppu.js';
import { listFiles, sha256File, writeImage, type WrittenFile } from '../test/fixtures/files.js';
import { sleep } from '../src/common/abort.js';

const run = promisify(execFile);

const USAGE = 'usage: npm run demo -- [--rate HZ] [--size MB] [--seconds S] [--uid N] [--gid N] [--transport agent|rsync]\n';

/** The options, or exit 2 with parseArgs' reason and the usage line: a stray option is bad usage, not a stack trace. */
function options() {
  try {
    return parseArgs({
      options: {
        rate: { type: 'string', default: '20' },
        size: { type: 'string', default: '2' },
        seconds: { type: 'string', default: '15' },
        uid: { type: 'string', default: '500' },
        gid: { type: 'string', default: '501' },
        transport: { type: 'string', default: 'agent' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    if (!String((e as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS_')) throw e;
    process.stderr.write(`demo: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const values = options();
if (values.help) {
  process.stdout.write(`${USAGE}  defaults: 20 Hz, 2 MB images, 15 s, shift 500:501, furka-agent\n`);
  process.exit(0);
}
const rate = Number(values.rate);
const sizeMB = Number(values.size);
const seconds = Number(values.seconds);
const uid = Number(values.uid);
const gid = Number(values.gid);
for (const [k, v] of Object.entries({ rate, size: sizeMB, seconds, uid, gid })) {
  if (!Number.isFinite(v) || v < 0 || ((k === 'rate' || k === 'size') && v <= 0)) {
    process.stderr.write(`demo: --${k} must be a positive number, got '${String((values as Record<string, unknown>)[k])}'\n`);
    process.exit(2);
  }
}
const size = Math.round(sizeMB * 1024 * 1024);
const transport = values.transport as 'agent' | 'rsync';
if (transport !== 'agent' && transport !== 'rsync') {
  process.stderr.write(`demo: --transport must be agent or rsync, got '${String(transport)}'\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run the demo as root: furkad sets file ownership for the shift');
  const ppu = new Ppu({ prefix: 'ppu-demo', keepFiles: true, detectors: ['1MF'], transport });
  process.stdout.write(`demo: starting ${transport === 'agent' ? 'furka-agent' : 'rsync daemon'}, private bus, grimseld and furkad in ${ppu.work}\n`);
  let stopping = false;
  let done = false;
  const cleanup = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await ppu.stop();
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  try {
    await ppu.start();
    ppu.client.on('error', (e: Error) => process.stderr.write(`demo: lost the bus connection: ${e.message}\n`));
    const shiftArgs = ['call', 'org.ppu.Furka', '/org/ppu/Furka', 'org.ppu.Furka1', 'StartShift', 'uua(sss)', String(uid), String(gid), '0'];
    process.stdout.write(`demo: busctl --address=<private bus> ${shiftArgs.join(' ')}\n`);
    await run('busctl', [`--address=${ppu.bus.address}`, ...shiftArgs]);

    const detector = ppu.detectorRamdisks['1MF']!;
    const written: WrittenFile[] = [];
    const total = Math.max(1, Math.round(rate * seconds));
    process.stdout.write(`demo: writing ${total} images of ${sizeMB} MB at ${rate} Hz on the detector ramdisk\n\n`);
    const t0 = Date.now();
    let lastCopied = 0;
    let lastTick = t0;

    const progress = async (): Promise<void> => {
      while (!done) {
        await sleep(1000);
        const rows = await ppu.queryStatus(1);
        const r = rows.find((x) => x[3] === 'internal');
        const copied = Number(r?.[5] ?? 0n);
        const pending = Number(r?.[4] ?? 0n);
        const now = Date.now();
        const fps = ((copied - lastCopied) * 1000) / (now - lastTick);
        lastCopied = copied;
        lastTick = now;
        process.stdout.write(`  t=${((now - t0) / 1000).toFixed(0).padStart(3)} s  written ${String(written.length).padStart(5)}  ` +
          `copied ${String(copied).padStart(5)}  pending ${String(pending).padStart(4)}  ` +
          `${fps.toFixed(1).padStart(6)} files/s  ${((fps * size) / 1e6).toFixed(1).padStart(7)} MB/s\n`);
      }
    };
    const reporter = progress();
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rate;
      if (due > Date.now()) await sleep(due - Date.now());
      const rel = `scan_${String(Math.floor(i / 100)).padStart(3, '0')}/image_${String(i).padStart(5, '0')}.cbf`;
      written.push(writeImage(detector, rel, size));
    }
    // Wait for the tail to be copied (bounded: a stuck pipeline shows up in the summary).
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      const r = (await ppu.queryStatus(1)).find((x) => x[3] === 'internal');
      if (r && Number(r[5]) + Number(r[6]) >= total) break;
      await sleep(200);
    }
    done = true;
    await reporter;
    const elapsed = (Date.now() - t0) / 1000;

    const usr = path.join(ppu.ppuRamdisk, '1mf', `${uid}_${gid}`);
    const internal = path.join(ppu.storageRoot, 'internal', '1mf', `${uid}_${gid}`);
    const onPpu = listFiles(usr).length;
    let identical = 0;
    for (const f of written) {
      try {
        if (sha256File(readFileSync(path.join(internal, f.rel))) === f.sha256) identical++;
      } catch { /* missing: counted below */ }
    }
    const left = listFiles(detector).length;
    const row = (await ppu.queryStatus(1)).find((x) => x[3] === 'internal');
    process.stdout.write(`
summary (${elapsed.toFixed(1)} s):
  images written on the detector ramdisk : ${written.length} x ${sizeMB} MB
  left on the detector ramdisk           : ${left}
  delivered to the PPU ramdisk           : ${onPpu}   (${usr})
  copied to the internal storage         : ${row?.[5] ?? 0}, pending ${row?.[4] ?? 0}, failed ${row?.[6] ?? 0}
  byte-identical copies (sha256)         : ${identical}/${written.length}   (${internal})
  remove everything with                 : rm -rf ${ppu.work}
`);
    await cleanup();
    if (identical !== written.length || left !== 0) {
      process.stdout.write('demo: NOT every image made it; see the logs above\n');
      process.exitCode = 1;
    } else {
      process.stdout.write('demo: every image made it, byte for byte\n');
    }
  } catch (e) {
    done = true;
    await cleanup();
    throw e;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

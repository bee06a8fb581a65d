// The ways of getting detector files onto the PPU that the latency benchmark compares: furkad (with grimseld,
// as deployed), furkad without staging, a plain rsync pull loop with furkad's pause, and lsyncd at its lowest delay.
import { existsSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../test/fixtures/ppu.js';
import { licensedPpu } from './licensed-ppu.js';
import { startRsyncDaemon, type RsyncDaemon } from '../test/fixtures/rsync-daemon.js';
import { startProcess, type Managed } from '../test/fixtures/processes.js';
import { mountTmpfs, unmount } from '../test/fixtures/tmpfs.js';
import { eventually, placeImage, WRITER_TEMP_PATTERN } from '../test/fixtures/files.js';
import { Arrivals } from './arrivals.js';

/**
 * `furkad-agent`: furkad with `transport = agent`, fed by a furka-agent on the detector ramdisk (A3, A6).
 * `furkad-keep-source`: furkad with `remove_source = no`, which pulls straight to the final names without its
 * staging directory (nothing to check for a changed source): the difference to `furkad` is what staging costs.
 */
export type PullerName = 'furkad-agent' | 'furkad' | 'furkad-keep-source' | 'rsync-loop' | 'lsyncd';

export interface Puller {
  name: PullerName;
  /** Where the detector writes (one entry per detector). */
  detectorDirs: string[];
  /** Where complete files appear on the PPU, per detector. */
  arrivalDirs: string[];
  /** The processes whose CPU and memory are this puller's cost. */
  pids: Record<string, number>;
  /** The first detector's rsync daemon log, for pollers: one `connect from` line per pull cycle. */
  daemonLog?: string;
  /** What the puller's processes printed (for an error). */
  output(): string;
  stop(): Promise<void>;
}

/** Same pause as furkad's default `minpause`. */
export const PAUSE_MS = 10;

export async function startPuller(name: PullerName, ramdiskBytes: number, detectors = 1): Promise<Puller> {
  const p = name === 'furkad' || name === 'furkad-keep-source' || name === 'furkad-agent' ? await startFurkad(name, ramdiskBytes, detectors)
    : name === 'rsync-loop' ? await startRsyncLoop(ramdiskBytes)
      : await startLsyncd(ramdiskBytes);
  try {
    await probe(p);
  } catch (e) {
    const output = p.output();
    await p.stop();
    throw new Error(`${(e as Error).message}\n${output}`);
  }
  return p;
}

/** A file written on every detector reaches the PPU: the puller is up and its first (full) pass is done. */
async function probe(p: Puller): Promise<void> {
  const arrivals = new Arrivals();
  for (const d of p.arrivalDirs) arrivals.watch(d);
  try {
    p.detectorDirs.forEach((d, i) => placeImage(d, `probe-${i}.raw`, new Uint8Array(10)));
    await eventually(() => arrivals.at.size === p.detectorDirs.length, 30_000, `${p.name} to deliver a probe file from every detector`);
  } finally {
    arrivals.close();
  }
}

async function startFurkad(name: 'furkad' | 'furkad-keep-source' | 'furkad-agent', ramdiskBytes: number, detectors: number): Promise<Puller> {
  const ids = Array.from({ length: detectors }, (_, i) => `D${i + 1}`);
  const detectorConf = name !== 'furkad-keep-source' ? {} : Object.fromEntries(ids.map((id) => [id, { remove_source: 'no' }]));
  const ppu = await licensedPpu({ prefix: 'bench-furkad', ramdiskBytes, detectorRamdiskBytes: ramdiskBytes, detectors: ids, detectorConf,
    ...(name === 'furkad-agent' ? { transport: 'agent' as const } : {}) }).start();
  const arrivalDirs = ids.map((id) => path.join(ppu.ppuRamdisk, id.toLowerCase(), '1000_1000'));
  await eventually(() => arrivalDirs.every((d) => existsSync(d)), 20_000, 'furkad to create its shift directories');
  return {
    name,
    detectorDirs: ids.map((id) => ppu.detectorRamdisks[id]!),
    arrivalDirs,
    pids: { furkad: ppu.furkad!.proc.child.pid!, grimseld: ppu.grimseld!.proc.child.pid!,
      // Every detector's agent: 'agent' (the first), 'agent2', ...
      ...(name === 'furkad-agent' ? Object.fromEntries(ids.map((id, i) => [i === 0 ? 'agent' : `agent${i + 1}`, ppu.agents[id]!.proc.child.pid!])) : {}) },
    ...(name === 'furkad-agent' ? {} : { daemonLog: path.join(ppu.work, `rsyncd-${ppu.rsyncd[ids[0]!]!.port}.log`) }),
    output: () => `furkad:\n${ppu.furkad!.proc.output()}\ngrimseld:\n${ppu.grimseld!.proc.output()}`,
    stop: () => ppu.stop(),
  };
}

interface Side {
  work: string;
  detectorDir: string;
  ppuDir: string;
  daemon: RsyncDaemon;
}

/** A detector ramdisk served by a stock rsync daemon, and a PPU ramdisk, both tmpfs as the Ppu fixture builds them. */
async function detectorAndPpu(prefix: string, ramdiskBytes: number): Promise<Side> {
  const work = tempDir(prefix);
  const detectorDir = path.join(mountTmpfs(path.join(work, 'detector'), ramdiskBytes), 'ramdisk');
  mkdirSync(detectorDir, { recursive: true });
  const ppuDir = mountTmpfs(path.join(work, 'ppu-ramdisk'), ramdiskBytes);
  return { work, detectorDir, ppuDir, daemon: await startRsyncDaemon(detectorDir, work) };
}

async function cleanup(side: Side, procs: Managed[]): Promise<void> {
  for (const p of procs) await p.stop();
  await side.daemon.stop();
  unmount(side.ppuDir);
  unmount(path.dirname(side.detectorDir));
  rmSync(side.work, { recursive: true, force: true });
}

/** `rsync -rt --remove-source-files` from the same kind of daemon, then the same pause, forever. */
async function startRsyncLoop(ramdiskBytes: number): Promise<Puller> {
  const side = await detectorAndPpu('bench-rsync', ramdiskBytes);
  // TCP_NODELAY as furkad sets it: without it, Nagle and delayed ACKs add tens of ms and the comparison is unfair.
  const loop = startProcess('bash', ['-c', `while :; do rsync -rt --remove-source-files --sockopts=TCP_NODELAY --exclude='${WRITER_TEMP_PATTERN}' `
    + `rsync://127.0.0.1:${side.daemon.port}/ramdisk/ '${side.ppuDir}/'; sleep ${PAUSE_MS / 1000}; done`]);
  return {
    name: 'rsync-loop',
    detectorDirs: [side.detectorDir],
    arrivalDirs: [side.ppuDir],
    pids: { 'rsync-loop': loop.child.pid! },
    daemonLog: path.join(side.work, `rsyncd-${side.daemon.port}.log`),
    output: () => loop.output(),
    stop: () => cleanup(side, [loop]),
  };
}

/** lsyncd pushing (inotify on the detector) to an rsync daemon on the PPU, with delay 0: its lowest latency. */
async function startLsyncd(ramdiskBytes: number): Promise<Puller> {
  const side = await detectorAndPpu('bench-lsyncd', ramdiskBytes);
  const ppuDaemon = await startRsyncDaemon(side.ppuDir, path.join(side.work));
  const conf = path.join(side.work, 'lsyncd.conf.lua');
  writeFileSync(conf, `settings { nodaemon = true, logfile = "${side.work}/lsyncd.log", insist = true }
sync {
  default.rsync,
  source = "${side.detectorDir}",
  target = "rsync://127.0.0.1:${ppuDaemon.port}/ramdisk/",
  delay = 0,
  delete = false,
  exclude = { "${WRITER_TEMP_PATTERN}" },
  rsync = { times = true, perms = false, owner = false, group = false, _extra = { "--sockopts=TCP_NODELAY" } },
}
`);
  const lsyncd = startProcess('lsyncd', [conf]);
  return {
    name: 'lsyncd',
    detectorDirs: [side.detectorDir],
    arrivalDirs: [side.ppuDir],
    pids: { lsyncd: lsyncd.child.pid! },
    output: () => lsyncd.output(),
    stop: async () => {
      await lsyncd.stop();
      await ppuDaemon.stop();
      await cleanup(side, []);
    },
  };
}

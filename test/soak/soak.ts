// The soak (reliability issue, item 5): a whole PPU streaming from two detectors (agent and rsync) to three
// storages while furkad, grimseld, the agent and the rsync daemon are killed or stopped at random moments and
// restarted as systemd would; afterwards every file is checked on every storage, and each restart's resume time
// is measured with a marker file. Used by `npm run soak` (scripts/soak.ts) and test/integration/soak.test.ts.
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type { Ppu } from '../fixtures/ppu.js';
import { licensedPpu } from '../../bench/licensed-ppu.js';
import { eventually, listFiles, sha256File, writeImage, type WrittenFile } from '../fixtures/files.js';
import type { Managed } from '../fixtures/processes.js';

export type DaemonKind = 'furkad' | 'grimseld' | 'agent' | 'rsyncd';
export const DAEMON_KINDS: readonly DaemonKind[] = ['furkad', 'grimseld', 'agent', 'rsyncd'];

/**
 * SIGKILL, then a start 1 s later (RestartSec=1s); SIGSTOP for a while, then SIGCONT; or SIGSTOP and then what
 * systemd's watchdog does to a unit that stopped pinging: kill it and start it again 1 s later.
 */
export type How = 'SIGKILL' | 'SIGSTOP+SIGCONT' | 'SIGSTOP+watchdog';

/** The detector behind each transport, and what the two are called on the PPU. */
const AGENT_DETECTOR = '1MF';
const RSYNC_DETECTOR = '2MF';
const DETECTORS = [AGENT_DETECTOR, RSYNC_DETECTOR];
const STORAGES = { internal: 'INTERNAL', external: 'EXTERNAL', optional: 'OPTIONAL' } as const;
type StorageName = keyof typeof STORAGES;
const UID = 1000;
const GID = 1000;
const USRDIR = `${UID}_${GID}`;
/** A detector's directory below the PPU ramdisk and the storages (the fixture's target: `<ramdisk>/./<id lowercased>`). */
const dirOf = (id: string) => id.toLowerCase();

export interface SoakOptions {
  /** Restarts in all (each of the four daemons in turn, in a shuffled order per round). */
  kills: number;
  /** Every `stopEvery`-th restart is a SIGSTOP instead of a SIGKILL (0: never). */
  stopEvery: number;
  /** How long a SIGSTOP lasts, ms (uniform in the range). */
  stopMs: [number, number];
  /** Pause between restarts while the stream goes on, ms (uniform): the "random moment". */
  gapMs: [number, number];
  /** systemd's RestartSec. */
  restartSecMs: number;
  /** Files per second per detector. */
  rateHz: number;
  /** File sizes, bytes (uniform). */
  sizeBytes: [number, number];
  /** A resume slower than this fails the soak (the target is `resumeTargetMs`). */
  resumeFailMs: number;
  resumeTargetMs: number;
  /** Seed of the random choices (moments, sizes, order), for a rerun of the same sequence. */
  seed: number;
  /** Leave the work directory (logs, storages) behind; it is always left when the soak fails. */
  keepFiles: boolean;
  /** Progress lines. */
  log: (line: string) => void;
}

export const SOAK_DEFAULTS: SoakOptions = {
  kills: 100,
  stopEvery: 5,
  stopMs: [3000, 6000],
  gapMs: [300, 2500],
  restartSecMs: 1000,
  rateHz: 10,
  sizeBytes: [8_000, 200_000],
  resumeFailMs: 10_000,
  resumeTargetMs: 2000,
  seed: 1,
  keepFiles: false,
  log: () => { /* quiet */ },
};

export interface KillRecord {
  n: number;
  daemon: DaemonKind;
  /** Which detector it serves (agent, rsyncd). */
  detector?: string;
  how: How;
  /** SIGSTOP: how long the process stayed stopped, ms. */
  stoppedMs?: number;
  /** From the signal to the daemon back (bus name owned, port listening, or SIGCONT), ms. */
  downMs: number;
  /** From the daemon back to the marker written then on the internal storage, ms (the slowest detector). */
  resumeMs: number;
  /** The same marker's arrival on the PPU ramdisk, ms after the daemon was back. */
  ramdiskMs: number | undefined;
}

export interface SoakReport {
  options: Omit<SoakOptions, 'log'>;
  work: string;
  kills: KillRecord[];
  written: number;
  bytes: number;
  durationMs: number;
  /** Internal copies of earlier shifts that G5 removed once the external copy existed (and seen before that). */
  g5Removed: number;
  g5RemovedSeen: number;
  /** Storage → copied summed over every shift (QueryStatus), and the shifts seen. */
  copied: Record<string, number>;
  shifts: number;
  failures: string[];
}

/** mulberry32: small, seedable, good enough to pick moments and sizes. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runSoak(given: Partial<SoakOptions> = {}): Promise<SoakReport> {
  const o: SoakOptions = { ...SOAK_DEFAULTS, ...given };
  const random = rng(o.seed);
  const between = ([lo, hi]: [number, number]) => lo + random() * (hi - lo);
  // Licensed, as a beamline runs it: detectors in parallel, n_copy_processes writers per storage (F8, G14).
  const ppu = licensedPpu({
    prefix: 'ppu-soak',
    keepFiles: true, // removed below unless the soak failed or keepFiles
    detectors: DETECTORS,
    transport: { [AGENT_DETECTOR]: 'agent', [RSYNC_DETECTOR]: 'rsync' },
    uid: UID,
    gid: GID,
    // Every furkad restart starts a shift: keep them all in QueryStatus to add the counts up.
    grimseld: { history_max_entries: 10_000 },
  });
  ppu.opts.storages = Object.fromEntries(Object.entries(STORAGES).map(([name, type]) => [`storage.${name}`,
    { type, target: path.join(ppu.storageRoot, name), n_copy_processes: 2 }]));
  const logs = path.join(ppu.work, 'logs');
  const written = new Map<string, WrittenFile>(); // key: '<detector dir>/<rel>'
  const kills: KillRecord[] = [];
  const failures: string[] = [];
  const started = Date.now();
  let writing = true;
  let watching = true;
  const seenOnInternal = new Map<string, boolean>(); // key → byte-identical when first seen
  const key = (id: string, rel: string) => `${dirOf(id)}/${rel}`;

  /** Every line a daemon prints goes to logs/<name>.log, across its restarts (its own buffer keeps 200 KB). */
  const tee = (proc: Managed, name: string): void => {
    const file = path.join(logs, `${name}.log`);
    // What it printed while starting (before the fixture returned it) first, then every later line.
    appendFileSync(file, `--- ${new Date().toISOString()} started, pid ${proc.child.pid}\n${proc.output()}`);
    proc.child.stdout?.on('data', (b: Buffer) => appendFileSync(file, b));
    proc.child.stderr?.on('data', (b: Buffer) => appendFileSync(file, b));
  };
  const procOf = (kind: DaemonKind): Managed | undefined => {
    switch (kind) {
      case 'furkad': return ppu.furkad?.proc;
      case 'grimseld': return ppu.grimseld?.proc;
      case 'agent': return ppu.agents[AGENT_DETECTOR]?.proc;
      case 'rsyncd': return ppu.rsyncd[RSYNC_DETECTOR]?.proc;
    }
  };
  const start = async (kind: DaemonKind): Promise<void> => {
    switch (kind) {
      case 'furkad': await ppu.startFurkad(); break;
      case 'grimseld': await ppu.startGrimseld(); break;
      case 'agent': await ppu.startAgent(AGENT_DETECTOR); break;
      case 'rsyncd': await ppu.startRsyncd(RSYNC_DETECTOR); break;
    }
    tee(procOf(kind)!, kind);
  };
  const kill = async (kind: DaemonKind): Promise<void> => {
    switch (kind) {
      case 'furkad': await ppu.killFurkad(); break;
      case 'grimseld': await ppu.killGrimseld(); break;
      case 'agent': await ppu.killAgent(AGENT_DETECTOR); break;
      case 'rsyncd': await ppu.killRsyncd(RSYNC_DETECTOR); break;
    }
    appendFileSync(path.join(logs, `${kind}.log`), `--- ${new Date().toISOString()} killed\n`);
  };

  const write = (id: string, rel: string, size: number): WrittenFile => {
    const f = writeImage(ppu.detectorRamdisks[id]!, rel, size);
    written.set(key(id, rel), f);
    return f;
  };

  /** One detector's stream: `rateHz` files a second in four directories until told to stop. */
  const stream = async (id: string): Promise<void> => {
    const t0 = Date.now();
    for (let i = 0; writing; i++) {
      write(id, `s${i % 4}/img_${String(i).padStart(6, '0')}.cbf`, Math.round(between(o.sizeBytes)));
      const due = t0 + ((i + 1) * 1000) / o.rateHz;
      await sleep(Math.max(0, due - Date.now()));
    }
  };

  /** Copies on the internal storage, each hashed when first seen: G5 may remove it later on (external has it). */
  const watchInternal = async (): Promise<void> => {
    const root = path.join(ppu.storageRoot, 'internal');
    while (watching) {
      for (const f of listFiles(root)) {
        const k = storageKey(f);
        if (!k || seenOnInternal.has(k)) continue;
        const w = written.get(k);
        try {
          seenOnInternal.set(k, w !== undefined && sha256File(readFileSync(path.join(root, f))) === w.sha256);
        } catch { /* removed between the listing and the read: seen next time under its name, if at all */ }
      }
      await sleep(200);
    }
  };

  /** A marker written now on `id`: ms until it is on the PPU ramdisk and on the internal storage. */
  const marker = async (id: string, n: number): Promise<{ ramdiskMs: number | undefined; internalMs: number }> => {
    const rel = `markers/k${String(n).padStart(4, '0')}.cbf`;
    const t0 = performance.now();
    write(id, rel, 4096);
    const onRamdisk = path.join(ppu.ppuRamdisk, dirOf(id), USRDIR, rel);
    const onInternal = path.join(ppu.storageRoot, 'internal', dirOf(id), USRDIR, rel);
    let ramdiskMs: number | undefined;
    const limit = Math.max(60_000, o.resumeFailMs * 3);
    for (;;) {
      const t = performance.now() - t0;
      if (ramdiskMs === undefined && existsSync(onRamdisk)) ramdiskMs = t;
      if (existsSync(onInternal)) return { ramdiskMs, internalMs: t };
      if (t > limit) return { ramdiskMs, internalMs: Infinity };
      await sleep(5);
    }
  };

  const order: DaemonKind[] = [];
  while (order.length < o.kills) {
    const round = [...DAEMON_KINDS];
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [round[i], round[j]] = [round[j]!, round[i]!];
    }
    order.push(...round);
  }
  order.length = o.kills;

  let streams: Promise<void[]> | undefined;
  let watcher: Promise<void> | undefined;
  const cont = () => { for (const k of DAEMON_KINDS) procOf(k)?.kill('SIGCONT'); };
  try {
    await ppu.start();
    mkdirSync(logs, { recursive: true });
    for (const k of DAEMON_KINDS) tee(procOf(k)!, k);
    o.log(`soak: ${o.kills} restarts, 2 detectors (${AGENT_DETECTOR} agent, ${RSYNC_DETECTOR} rsync) at ${o.rateHz} Hz each, ` +
      `3 storages, seed ${o.seed}, work ${ppu.work}`);
    o.log(TABLE_HEADER);
    streams = Promise.all(DETECTORS.map((id) => stream(id)));
    watcher = watchInternal();
    const stops = new Map<DaemonKind, number>();
    for (let n = 1; n <= o.kills; n++) {
      await sleep(between(o.gapMs));
      const daemon = order[n - 1]!;
      const stop = o.stopEvery > 0 && n % o.stopEvery === 0;
      // rsyncd's unit has no watchdog: a stopped rsync daemon is only ever continued. Each of the others
      // alternates, its first stop ended by the watchdog.
      const stopsBefore = stops.get(daemon) ?? 0;
      if (stop) stops.set(daemon, stopsBefore + 1);
      const how: How = !stop ? 'SIGKILL' : daemon !== 'rsyncd' && stopsBefore % 2 === 0 ? 'SIGSTOP+watchdog' : 'SIGSTOP+SIGCONT';
      const t0 = performance.now();
      let stoppedMs: number | undefined;
      if (how === 'SIGKILL') {
        await kill(daemon);
        await sleep(o.restartSecMs);
        await start(daemon);
      } else {
        procOf(daemon)!.kill('SIGSTOP');
        stoppedMs = Math.round(between(o.stopMs));
        await sleep(stoppedMs);
        if (how === 'SIGSTOP+SIGCONT') procOf(daemon)!.kill('SIGCONT');
        else {
          await kill(daemon);
          await sleep(o.restartSecMs);
          await start(daemon);
        }
      }
      const downMs = performance.now() - t0;
      const ids = daemon === 'agent' ? [AGENT_DETECTOR] : daemon === 'rsyncd' ? [RSYNC_DETECTOR] : DETECTORS;
      const arrivals = await Promise.all(ids.map((id) => marker(id, n)));
      const resumeMs = Math.max(...arrivals.map((a) => a.internalMs));
      const ramdisk = arrivals.map((a) => a.ramdiskMs);
      const rec: KillRecord = {
        n, daemon, how, downMs, resumeMs,
        ramdiskMs: ramdisk.every((r) => r !== undefined) ? Math.max(...(ramdisk as number[])) : undefined,
        ...(daemon === 'agent' ? { detector: AGENT_DETECTOR } : daemon === 'rsyncd' ? { detector: RSYNC_DETECTOR } : {}),
        ...(stoppedMs !== undefined ? { stoppedMs } : {}),
      };
      kills.push(rec);
      o.log(tableRow(rec));
      if (!(resumeMs <= o.resumeFailMs)) failures.push(`restart ${n} (${daemon}, ${how}): flow resumed after ${fmtS(resumeMs)} s (limit ${o.resumeFailMs / 1000} s)`);
    }
    writing = false;
    await streams;
    o.log(`soak: ${written.size} files written; waiting for the flow to drain`);
    await drain(ppu, written.size).catch((e: Error) => failures.push(e.message));
    watching = false;
    await watcher;
    const v = verify(ppu, written, seenOnInternal);
    failures.push(...v.failures);
    const rows = await ppu.queryStatus(-1);
    const copied: Record<string, number> = {};
    for (const r of rows) copied[r[3]] = (copied[r[3]] ?? 0) + Number(r[5]);
    const pending = rows.reduce((s, r) => s + Number(r[4]), 0);
    const failed = rows.reduce((s, r) => s + Number(r[6]), 0);
    if (pending !== 0) failures.push(`QueryStatus: ${pending} pending at the end`);
    if (failed !== 0) failures.push(`QueryStatus: ${failed} failed`);
    for (const s of Object.keys(STORAGES)) {
      if (copied[s] !== written.size) failures.push(`QueryStatus: ${s} copied ${copied[s] ?? 0} summed over ${rows.length / 3} shifts, written ${written.size}`);
    }
    const { log: _log, ...options } = o;
    return {
      options, work: ppu.work, kills, written: written.size,
      bytes: [...written.values()].reduce((s, f) => s + f.size, 0),
      durationMs: Date.now() - started, g5Removed: v.g5Removed, g5RemovedSeen: v.g5RemovedSeen,
      copied, shifts: new Set(rows.map((r) => r[0])).size, failures,
    };
  } catch (e) {
    failures.push(`soak aborted: ${(e as Error).stack ?? String(e)}`);
    throw Object.assign(e as Error, { work: ppu.work });
  } finally {
    writing = false;
    watching = false;
    await streams?.catch(() => undefined);
    await watcher?.catch(() => undefined);
    cont(); // a process left stopped would not hear the SIGTERM
    await ppu.stop();
    if (failures.length === 0 && !o.keepFiles) {
      rmSync(ppu.work, { recursive: true, force: true });
    }
  }
}

/** '<detector dir>/<rel>' of a path below a storage root ('<detector dir>/<usrdir>/<rel>'), if it has that shape. */
function storageKey(f: string): string | undefined {
  const parts = f.split('/');
  if (parts.length < 3 || parts[1] !== USRDIR) return undefined;
  return [parts[0], ...parts.slice(2)].join('/');
}

/** Until the detectors and staging are empty and grimseld has nothing pending and every file counted on every storage. */
async function drain(ppu: Ppu, total: number): Promise<void> {
  let last = '';
  await eventually(async () => {
    const onDetectors = DETECTORS.reduce((s, id) => s + listFiles(ppu.detectorRamdisks[id]!).length, 0);
    const rows = await ppu.queryStatus(-1).catch(() => []);
    const pending = rows.reduce((s, r) => s + Number(r[4]), 0);
    const copied: Record<string, number> = {};
    for (const r of rows) copied[r[3]] = (copied[r[3]] ?? 0) + Number(r[5]);
    last = `${onDetectors} on the detectors, ${pending} pending, copied ${JSON.stringify(copied)} of ${total}`;
    return onDetectors === 0 && pending === 0 && Object.keys(STORAGES).every((s) => (copied[s] ?? 0) >= total);
  }, 180_000, 'the flow to drain').catch((e: Error) => { throw new Error(`${e.message}: ${last}`); });
}

interface Verification {
  failures: string[];
  g5Removed: number;
  g5RemovedSeen: number;
}

/** Every written file once and byte-identical on every storage, nothing left behind, no temp or numbered names. */
export function verify(ppu: Ppu, written: Map<string, WrittenFile>, seenOnInternal: Map<string, boolean>): Verification {
  const failures: string[] = [];
  const report = (what: string, list: string[]) => {
    if (list.length > 0) failures.push(`${what}: ${list.length} (${list.slice(0, 8).join(', ')}${list.length > 8 ? ', …' : ''})`);
  };
  for (const id of DETECTORS) {
    report(`left on detector ${id}`, listFiles(ppu.detectorRamdisks[id]!));
    report(`left in ${id}'s staging`, listFiles(path.join(ppu.ppuRamdisk, dirOf(id), '.furkad-staging')));
  }
  // The PPU ramdisk keeps the last shift's originals: each must be a file written, under its own name.
  const onRamdisk = DETECTORS.flatMap((id) => listFiles(path.join(ppu.ppuRamdisk, dirOf(id))).map((f) => `${dirOf(id)}/${f}`))
    .filter((f) => !f.split('/')[1]?.startsWith('.furkad-staging'));
  report('unexpected files on the PPU ramdisk (numbered, temp or unknown)', onRamdisk.filter((f) => !written.has(storageKey(f) ?? '')));
  const ramdiskKeys = new Set(onRamdisk.map((f) => storageKey(f)));

  let g5Removed = 0;
  let g5RemovedSeen = 0;
  const found: Record<string, Map<string, string[]>> = {};
  for (const s of Object.keys(STORAGES) as StorageName[]) {
    const root = path.join(ppu.storageRoot, s);
    const byKey = new Map<string, string[]>();
    const stray: string[] = [];
    const numbered: string[] = [];
    for (const f of listFiles(root)) {
      if (/\.~\d+~$/.test(f)) numbered.push(f);
      // A numbered name (NAME.~N~) counts for the file it numbers: two names for one file is a duplicate.
      const k = storageKey(f.replace(/\.~\d+~$/, ''));
      if (k === undefined || !written.has(k)) { stray.push(f); continue; }
      byKey.set(k, [...(byKey.get(k) ?? []), f]);
    }
    report(`${s}: temp or unknown files`, stray);
    // Every file was written once under a name of its own: a numbered name (G3) means one arrived twice.
    report(`${s}: numbered names (NAME.~N~)`, numbered);
    found[s] = byKey;
  }
  for (const s of Object.keys(STORAGES) as StorageName[]) {
    const missing: string[] = [];
    const duplicated: string[] = [];
    const differing: string[] = [];
    for (const [k, w] of written) {
      const copies = found[s]!.get(k) ?? [];
      if (copies.length > 1) duplicated.push(copies.join(' + '));
      if (copies.length === 0) {
        // G5: with EXTERNAL, an earlier shift's internal copy goes once the external one exists (and the
        // ramdisk original is gone, which goes first). Every furkad restart is a new shift.
        if (s === 'internal' && (found['external']!.get(k)?.length ?? 0) === 1 && !ramdiskKeys.has(k)) {
          g5Removed++;
          if (seenOnInternal.get(k) === true) g5RemovedSeen++;
          if (seenOnInternal.get(k) === false) differing.push(`${k} (when it was there)`);
          continue;
        }
        missing.push(k);
        continue;
      }
      for (const c of copies) {
        if (sha256File(readFileSync(path.join(ppu.storageRoot, s, c))) !== w.sha256) differing.push(c);
      }
    }
    report(`${s}: missing`, missing);
    report(`${s}: more than one copy`, duplicated);
    report(`${s}: not byte-identical`, differing);
  }
  return { failures, g5Removed, g5RemovedSeen };
}

const fmtS = (ms: number | undefined) => (ms === undefined ? '-' : Number.isFinite(ms) ? (ms / 1000).toFixed(2) : 'never');

export const TABLE_HEADER = '   # | daemon          | how                           | down s | resume s | ramdisk s';

export function tableRow(k: KillRecord): string {
  const who = k.detector ? `${k.daemon} ${k.detector}` : k.daemon;
  const how = k.how === 'SIGKILL' ? 'SIGKILL, restart 1 s later'
    : k.how === 'SIGSTOP+SIGCONT' ? `SIGSTOP ${fmtS(k.stoppedMs)} s, SIGCONT` : `SIGSTOP ${fmtS(k.stoppedMs)} s, watchdog kill`;
  return `${String(k.n).padStart(4)} | ${who.padEnd(15)} | ${how.padEnd(29)} | ${fmtS(k.downMs).padStart(6)} | ${fmtS(k.resumeMs).padStart(8)} | ${fmtS(k.ramdiskMs).padStart(9)}`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

/** The per-restart table, a summary by daemon and the verdict. */
export function formatReport(r: SoakReport): string {
  const lines = [TABLE_HEADER, '-'.repeat(TABLE_HEADER.length), ...r.kills.map(tableRow), ''];
  lines.push('daemon          | restarts | SIGKILL | SIGSTOP+CONT | SIGSTOP+watchdog | resume p50 s | p95 s | max s | > target');
  for (const d of [...DAEMON_KINDS, 'all'] as const) {
    const ks = r.kills.filter((k) => d === 'all' || k.daemon === d);
    const t = ks.map((k) => k.resumeMs).sort((a, b) => a - b);
    const count = (h: How) => String(ks.filter((k) => k.how === h).length);
    lines.push(`${d.padEnd(15)} | ${String(ks.length).padStart(8)} | ${count('SIGKILL').padStart(7)} | ${count('SIGSTOP+SIGCONT').padStart(12)} | ` +
      `${count('SIGSTOP+watchdog').padStart(16)} | ${fmtS(percentile(t, 50)).padStart(12)} | ${fmtS(percentile(t, 95)).padStart(5)} | ` +
      `${fmtS(t[t.length - 1]).padStart(5)} | ${String(ks.filter((k) => k.resumeMs > r.options.resumeTargetMs).length).padStart(8)}`);
  }
  lines.push('');
  lines.push(`files written: ${r.written} (${(r.bytes / 1e6).toFixed(1)} MB) over ${(r.durationMs / 1000).toFixed(0)} s; ` +
    `copied per storage, summed over ${r.shifts} shifts: ${Object.entries(r.copied).map(([s, n]) => `${s} ${n}`).join(', ')}`);
  lines.push(`internal copies of earlier shifts removed by G5 (external has them): ${r.g5Removed}, ` +
    `${r.g5RemovedSeen} of them seen byte-identical on internal before`);
  lines.push(`resume target ${r.options.resumeTargetMs / 1000} s, fail above ${r.options.resumeFailMs / 1000} s; seed ${r.options.seed}`);
  if (r.failures.length === 0) lines.push('verdict: PASS: every file once and byte-identical on every storage, nothing left behind, counts exact');
  else lines.push(`verdict: FAIL (work directory kept: ${r.work})`, ...r.failures.map((f) => `  - ${f}`));
  return lines.join('\n');
}

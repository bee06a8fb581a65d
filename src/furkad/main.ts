#!/usr/bin/env node
// furkad's service contract: arguments → config → components (metrics, bus name, hand-over, detector loops,
// first shift, schedule) started → READY=1 → run → STOPPING=1 → components stopped in reverse → exit code.
import { parseDaemonArgs } from '../common/daemon-args.js';
import { checkDirectory, configOrExit, loadConfigOrExit, prepareDirectory } from '../common/config-file.js';
import { createLogger } from '../common/logger.js';
import { checkLogfile, logfileNote, openLogfile } from '../common/logfile-config.js';
import { Notifier } from '../common/notify.js';
import { component, Components, runDaemon, stopRequested, together } from '../common/service.js';
import { listenConfigured } from '../common/tcp-listener.js';
import { BusWatch, connectSystemBus } from '../dbus/bus.js';
import { FurkaBus } from './furka-bus.js';
import { checkKeyFiles, checkFurkadTargets, DEFAULT_CONFIG_PATH, loadFurkadConfig, usrdirNote } from './config.js';
import { passwordsShiftsCanRead } from './rsync-auth.js';
import { DetectorLoop } from './detector.js';
import { RsyncTransport } from './rsync-transport.js';
import { rsyncKeptFile } from './rsync-removal.js';
import { rsyncOwedFile } from './rsync-owed.js';
import { writeNamesFilter } from './rsync-names.js';
import { AgentTransport } from './agent-transport.js';
import { AgentPlaced } from './agent-placed.js';
import { DetectorPlaces } from './detector-places.js';
import { CHANGE_ADVICE, takeUpOwed, takeUpPlaces } from './config-change.js';
import type { Transport } from './transport.js';
import { Handover } from './handover.js';
import { Outbox, placedFiles } from './outbox.js';
import { ShiftManager } from './shift-manager.js';
import { planShift, shiftIds } from './shift.js';
import { readLastShift, writeLastShift } from './shift-floor.js';
import { ShiftCounts } from './shift-counts.js';
import { defaultsOf, forgetRunningShift, keepRunningShift, readRunningShift, resumeClock, touchRunningShift, TOUCH_EVERY_MS, whyNotResume } from './shift-resume.js';
import { nextBoundary, ShiftSchedule } from './shift-schedule.js';
import { FurkadMetrics } from './metrics.js';
import { TransferGate } from './transfer-gate.js';
import { checkLicense, checkLicensePublicKey } from '../common/license.js';
import { prepareChecksums } from '../common/checksum.js';
import { initProvenance } from '../common/provenance.js';

function statusLine(shifts: ShiftManager, loops: readonly DetectorLoop[], handover: Handover, schedule?: ShiftSchedule): string {
  const s = shifts.shift;
  const dets = loops.map((l) => `${l.id} ${l.stats.state} ${l.stats.files} files`).join(', ');
  const next = schedule?.next ? `; next shift ${schedule.next.toLocaleString()}` : '';
  return `shift ${s ? `${s.uid}:${s.gid}` : '-'}; ${dets}; ${handover.pending} awaiting grimseld${next}`;
}

async function main(): Promise<number> {
  const args = parseDaemonArgs('furkad', DEFAULT_CONFIG_PATH);
  const config = loadConfigOrExit('furkad', args.config, loadFurkadConfig);
  // A key or password file missing or open to others is a configuration error for --check; at start it fails only its own
  // detectors (read again at every connection: retrying with the reason until it is right), so that a PPU
  // upgraded before its key was copied still serves its other detectors, rsync ones included. Logged below.
  let keyProblems: string | undefined;
  if (args.check) configOrExit('furkad', () => checkKeyFiles(args.config, config));
  else {
    try {
      checkKeyFiles(args.config, config);
    } catch (e) {
      keyProblems = (e as Error).message;
    }
  }
  if (args.check) {
    configOrExit('furkad', () => checkLogfile(args.config, config));
    configOrExit('furkad', () => checkFurkadTargets(args.config, config));
    configOrExit('furkad', () => checkLicensePublicKey(args.config, config));
    configOrExit('furkad', () => checkDirectory(args.config, 'state_dir', config.state_dir));
    for (const note of [logfileNote('furkad', config), usrdirNote(config)]) if (note) process.stderr.write(`furkad: ${args.config}: ${note}\n`);
    const n = Object.keys(config.detector).length;
    process.stdout.write(`${args.config}: configuration is valid (${n} ${n === 1 ? 'detector' : 'detectors'})\n`);
    return 0;
  }
  configOrExit('furkad', () => prepareDirectory(args.config, 'state_dir', config.state_dir));
  configOrExit('furkad', () => checkFurkadTargets(args.config, config));
  const log = createLogger('furkad', config, configOrExit('furkad', () => openLogfile(args.config, config)));
  if (keyProblems) log.error({ problems: keyProblems }, 'key or password file not usable: those detectors retry until it is (README, Install); the others go on');
  const sameDir = usrdirNote(config);
  if (sameDir) log.warn({ usrdir: config.usrdir }, sameDir);
  const readable = passwordsShiftsCanRead(config.detector);
  if (readable.length > 0) {
    log.warn({ detectors: readable }, 'remove_source = no runs rsync as the shift\'s user, who can read its rsync password from that process: give such a ' +
      'detector a daemon user of its own (rsync_user, rsync_password_file) whose module is read only = yes (docs/threat-model.md)');
  }
  const notifier = new Notifier(log);

  // Hashers made ahead and the attribute module loaded: the first files wait for neither (I1, I3).
  await Promise.all([prepareChecksums(8), initProvenance()]);
  const bus = connectSystemBus();
  const busWatch = new BusWatch(bus, log);
  // Files an earlier furkad placed but never saw grimseld take go first, in their own (earlier) shift.
  const { outbox, unacked, torn, damaged } = Outbox.open(config.state_dir);
  if (torn || damaged) {
    // A torn note: furkad (or the PPU) stopped while writing it. Its files, if they were placed, are on the PPU ramdisk
    // and grimseld does not know them: said, with what is left of the note (their paths), never dropped unsaid (F2, G12).
    log.error({ file: `${config.state_dir}/outbox.jsonl`, torn: torn.slice(0, 2000), tornBytes: Buffer.byteLength(torn), damagedLines: damaged },
      'the hand-over outbox ends in a torn note or holds damaged lines (a power cut while it was written?): they were dropped; files they named that are on ' +
      'the PPU ramdisk are not handed to grimseld by furkad: hand them over with ppuctl add');
  }
  const handover = new Handover(bus, log, outbox);
  for (const u of unacked) handover.delivered(u.usertime, u.uid, u.gid, placedFiles(u), u.id);
  if (unacked.length) log.warn({ batches: unacked.length }, 'handing over files an earlier furkad placed but could not hand over');
  // F8: without a valid key every detector loop passes one shared gate, one transfer at a time.
  const license = checkLicense(config.licensekey, { publicKeyFile: config.license_public_key });
  if (license.valid) log.info({ license: license.reason }, 'license valid: detectors are served in parallel');
  else log.warn({ license: license.reason }, 'no valid license: single-thread mode, one transfer at a time');
  const licenseNote = license.valid ? '' : `; single-thread mode: ${license.reason}`;
  const gate = new TransferGate(license.valid ? Infinity : 1);
  // Each detector's transport is the only part that knows how its files leave the detector server (F1, A3).
  const agentPlaced = AgentPlaced.open(config.state_dir);
  for (const [detector, n] of agentPlaced.droppedAtBoot) {
    log.warn({ detector, files: n, file: agentPlaced.file }, 'the PPU restarted since furkad placed these files (a power cut or a reboot): ' +
      'their copies on the PPU ramdisk went with it, so they are not acknowledged to the agent as placed; those still on the detector are fetched again (A4)');
  }
  // Where detectors keep files, and what furkad.conf no longer serves as it was (a detector renamed, its target or
  // transport changed): taken over by the detector now serving the same detector server or target, or said (A5).
  const places = DetectorPlaces.open(config.state_dir, log);
  takeUpOwed(config.state_dir, config.detector, places, agentPlaced, log);
  const namesFilter = writeNamesFilter(config.state_dir);
  const loops = Object.entries(config.detector).map(([id, d]) => {
    const transport: Transport = d.transport === 'agent' ? new AgentTransport(id, agentPlaced, log)
      : new RsyncTransport(id, { rsync: config.rsync_path, timeoutS: config.rsync_timeout_s, namesFilter, keptFile: rsyncKeptFile(config.state_dir, id),
        owedFile: rsyncOwedFile(config.state_dir, id) }, log);
    return new DetectorLoop(id, transport, handover, gate, log, { places });
  });
  try {
    await takeUpPlaces(config.detector, places, loops, log);
  } catch (e) {
    log.error({ err: (e as Error).message }, `cannot look for files kept by detectors furkad.conf no longer has as they were; ${CHANGE_ADVICE}`);
  }
  // Every new shift's id after the last one's, whatever the clock says now (shift-floor.ts).
  shiftIds.after(readLastShift(config.state_dir, log));
  // The shift a furkad that did not stop cleanly ran goes on, unless it is stale (shift-resume.ts).
  const defaults = defaultsOf(config);
  /** A stop was asked for: no shift is kept from now on (a change in flight finishes after it, F6). */
  let stopAsked = false;
  /** This furkad kept its shift: only then is the file touched (a stale one of a predecessor is not revived). */
  let keptHere = false;
  const kept = readRunningShift(config.state_dir, log);
  // The span since the furkad before this one last touched the file is read by the time since the boot, which
  // spans processes and which no step of the wall clock moves (shift-resume.ts).
  const resumedAt = resumeClock();
  const resume = kept && { shift: kept, whyNot: whyNotResume(kept, defaults, resumedAt,
    config.shift_schedule === undefined ? undefined : (after) => nextBoundary(config.shift_schedule!, after)) };
  const shifts = new ShiftManager(config, new Map(loops.map((l) => [l.id, l])), handover, log, (u) => writeLastShift(config.state_dir, u),
    { keep: (s) => { if (!stopAsked) { keepRunningShift(config.state_dir, s, defaults); keptHere = true; } }, forget: () => forgetRunningShift(config.state_dir, log) }, resume);
  // Scheduled rotation: a shift with the configured defaults at every boundary, like a restart.
  const schedule = config.shift_schedule === undefined ? undefined
    : new ShiftSchedule(config.shift_schedule, () => shifts.begin(planShift(config, config.uid, config.gid)), log,
      // A shift resumed: a boundary after the check that let it go on is due at once (r3).
      resume && resume.whyNot === '' ? resumedAt.wallMs : undefined);
  // Optional Prometheus endpoint, read from the detector loops when scraped.
  const metrics = config.metrics_address === undefined ? undefined
    : new FurkadMetrics(loops, () => handover.pending, { address: config.metrics_address, port: config.metrics_port }, log);

  // Started in this order, stopped in reverse: the bus name once the interface is there, the detectors
  // once grimseld can be told, the first shift once they run (F6); a stop meanwhile cancels the start.
  const components = new Components([
    metrics && component(metrics.name, () => listenConfigured(args.config, 'metrics_port', () => metrics.start()), () => metrics.stop()),
    new FurkaBus(bus, shifts, loops, schedule, license, handover),
    handover,
    together('detector loops', loops),
    shifts,
    schedule,
  ], log);
  const stop = Promise.race([stopRequested(), busWatch.lost]);
  // The kept shift is still running (shift-resume.ts).
  const touch = setInterval(() => { if (keptHere) touchRunningShift(config.state_dir); }, TOUCH_EVERY_MS);
  touch.unref();
  // Each detector's count of the running shift's files goes on across a crash (shift-counts.ts).
  const counts = new ShiftCounts(config.state_dir, log);
  if (await components.start(stop)) {
    if (kept) for (const [id, c] of counts.read(kept.usertime)) loops.find((l) => l.id === id)?.countEarlier(kept.usertime, c);
    notifier.ready(statusLine(shifts, loops, handover) + licenseNote);
    log.info({ detectors: loops.map((l) => l.id) }, 'furkad ready');
    const statusTimer = setInterval(() => {
      notifier.status(statusLine(shifts, loops, handover, schedule) + licenseNote);
      const running = shifts.shift;
      if (keptHere && !stopAsked && running) counts.keep(running.usertime, loops.map((l) => [l.id, { files: l.stats.files, bytes: l.stats.bytes }]));
    }, 1000);
    await stop;
    clearInterval(statusTimer);
  }

  busWatch.stopping();
  // A stop asked for (SIGTERM: systemctl stop or restart): the next furkad starts the default shift (F6), also if
  // this one is killed while stopping. Without its bus it did not stop by choice: the shift goes on.
  if (busWatch.gone === undefined) {
    stopAsked = true;
    forgetRunningShift(config.state_dir, log);
  }
  clearInterval(touch);
  log.info('stopping');
  notifier.stopping();
  await components.stop();
  outbox.close();
  agentPlaced.close();
  bus.disconnect();
  log.info('stopped');
  return busWatch.gone === undefined ? 0 : 1;
}

runDaemon('furkad', main);

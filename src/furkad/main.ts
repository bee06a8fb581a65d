#!/usr/bin/env node
// furkad's service contract: arguments → config → bus name → detector loops → first shift → READY=1 → run → STOPPING=1.
import { parseDaemonArgs } from '../common/daemon-args.js';
import { configOrExit, loadConfigOrExit, prepareDirectory } from '../common/config-file.js';
import { createLogger } from '../common/logger.js';
import { Notifier } from '../common/notify.js';
import { runDaemon, stopRequested } from '../common/service.js';
import { connectSystemBus, exportInterface, ownName, watchNameOwner } from '../dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH, GRIMSEL_NAME } from '../dbus/names.js';
import { FURKA_METHODS, FurkaInterface } from '../dbus/furka-interface.js';
import { DEFAULT_CONFIG_PATH, loadFurkadConfig } from './config.js';
import { DetectorLoop } from './detector.js';
import { RsyncTransport } from './rsync-transport.js';
import { writeNamesFilter } from './rsync-names.js';
import { AgentTransport } from './agent-transport.js';
import { AgentPlaced } from './agent-placed.js';
import type { Transport } from './transport.js';
import { Handover } from './handover.js';
import { Outbox, placedFiles } from './outbox.js';
import { ShiftManager } from './shift-manager.js';
import { planShift } from './shift.js';
import { ShiftSchedule } from './shift-schedule.js';
import { FurkadMetrics } from './metrics.js';
import { MetricsServer } from '../common/metrics-server.js';
import { TransferGate } from './transfer-gate.js';
import { checkLicense } from '../common/license.js';
import { prepareChecksums } from '../common/checksum.js';
import { initProvenance } from '../common/provenance.js';

function statusLine(shifts: ShiftManager, loops: Map<string, DetectorLoop>, handover: Handover, schedule?: ShiftSchedule): string {
  const s = shifts.shift;
  const dets = [...loops.values()].map((l) => `${l.id} ${l.stats.state} ${l.stats.files} files`).join(', ');
  const next = schedule?.next ? `; next shift ${schedule.next.toLocaleString()}` : '';
  return `shift ${s ? `${s.uid}:${s.gid}` : '-'}; ${dets}; ${handover.pending} awaiting grimseld${next}`;
}

async function main(): Promise<number> {
  const args = parseDaemonArgs('furkad', DEFAULT_CONFIG_PATH);
  const config = loadConfigOrExit('furkad', args.config, loadFurkadConfig);
  if (args.check) {
    process.stdout.write(`${args.config}: configuration is valid (${Object.keys(config.detector).length} detectors)\n`);
    return 0;
  }
  configOrExit('furkad', () => prepareDirectory(args.config, 'state_dir', config.state_dir));
  const log = createLogger('furkad', config);
  const notifier = new Notifier(log);
  const stop = new AbortController();

  // Hashers made ahead and the attribute module loaded: the first files wait for neither (I1, I3).
  await Promise.all([prepareChecksums(8), initProvenance()]);
  const bus = connectSystemBus();
  bus.on('error', (e) => log.error({ err: e }, 'bus connection error'));
  // Files an earlier furkad placed but never saw grimseld take go first, in their own (earlier) shift.
  const { outbox, unacked } = Outbox.open(config.state_dir);
  const handover = new Handover(bus, log, outbox);
  // A grimseld (re)started is handed the waiting files at once, not at the next retry (G12, F10).
  await watchNameOwner(bus, GRIMSEL_NAME, (owner) => handover.grimseldChanged(owner));
  for (const u of unacked) handover.delivered(u.usertime, u.uid, u.gid, placedFiles(u), u.id);
  if (unacked.length) log.warn({ batches: unacked.length }, 'handing over files an earlier furkad placed but could not hand over');
  // F8: without a valid key every detector loop passes one shared gate, one transfer at a time.
  const license = checkLicense(config.licensekey);
  if (license.valid) log.info({ license: license.reason }, 'license valid: detectors are served in parallel');
  else log.warn({ license: license.reason }, 'no valid license: single-thread mode, one transfer at a time');
  const licenseNote = license.valid ? '' : `; single-thread mode: ${license.reason}`;
  const gate = new TransferGate(license.valid ? Infinity : 1);
  // Each detector's transport is the only part that knows how its files leave the detector server (F1, A3).
  const agentPlaced = AgentPlaced.open(config.state_dir);
  const namesFilter = writeNamesFilter(config.state_dir);
  const loops = new Map(Object.entries(config.detector).map(([id, d]) => {
    const transport: Transport = d.transport === 'agent' ? new AgentTransport(id, agentPlaced, log)
      : new RsyncTransport(id, { rsync: config.rsync_path, timeoutS: config.rsync_timeout_s, namesFilter }, log);
    return [id, new DetectorLoop(id, transport, handover, gate, log)];
  }));
  const shifts = new ShiftManager(config, loops, handover, log);
  // Optional Prometheus endpoint, read from the detector loops when scraped.
  const furkadMetrics = config.metrics_address === undefined ? undefined : new FurkadMetrics(
    () => [...loops.values()].map((l) => ({ id: l.id, ...l.stats })), () => handover.pending);
  const metrics = furkadMetrics && new MetricsServer(furkadMetrics.registry, log);
  // Scheduled rotation: a shift with the configured defaults at every boundary, like a restart.
  const schedule = config.shift_schedule === undefined ? undefined
    : new ShiftSchedule(config.shift_schedule, () => shifts.begin(planShift(config, config.uid, config.gid)), log);
  const iface = new FurkaInterface(FURKA_IFACE, {
    startShift: (uid, gid, detectors) => shifts.startShift(uid, gid, detectors),
    currentShift: () => shifts.currentShift(),
    nextShift: () => BigInt(schedule?.next?.getTime() ?? 0) * 1000n,
    detectors: () => [...loops.values()].map((l) => [l.id, l.stats.state, l.stats.lastError,
      BigInt(l.stats.files), BigInt(l.stats.bytes), BigInt(l.stats.lastRunUs)]),
    license: () => [license.valid, license.reason],
  });
  for (const loop of loops.values()) {
    loop.onChange = () => {
      iface.detectorsChanged();
      furkadMetrics?.detectorChanged({ id: loop.id, ...loop.stats });
    };
  }
  if (schedule) schedule.onNextChange = () => iface.nextShiftChanged();
  shifts.onChange = () => iface.shiftChanged();
  exportInterface(bus, FURKA_PATH, iface, FURKA_IFACE, FURKA_METHODS);
  if (metrics) await metrics.listen(config.metrics_port, config.metrics_address!);
  await ownName(bus, FURKA_NAME);

  const running = [handover.run(stop.signal), ...[...loops.values()].map((l) => l.run(stop.signal))];
  // A process start is a shift start with the configured defaults (F6).
  await shifts.begin(planShift(config, config.uid, config.gid));
  schedule?.start();

  notifier.ready(statusLine(shifts, loops, handover) + licenseNote);
  log.info({ detectors: [...loops.keys()] }, 'furkad ready');
  const statusTimer = setInterval(() => notifier.status(statusLine(shifts, loops, handover, schedule) + licenseNote), 1000);

  await stopRequested();
  log.info('stopping');
  notifier.stopping();
  clearInterval(statusTimer);
  schedule?.stop();
  await metrics?.close();
  iface.close();
  stop.abort();
  await Promise.all(running);
  outbox.close();
  agentPlaced.close();
  bus.disconnect();
  log.info('stopped');
  return 0;
}

runDaemon('furkad', main);

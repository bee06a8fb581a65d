#!/usr/bin/env node
// grimseld's service contract: arguments → config → components built → started in order → bus name → READY=1 →
// copy → STOPPING=1 → components stopped in reverse. Who owns what, and how a copy flows: docs/grimseld-design.md.
// Run through its launcher, which sets its memory tuning (src/common/launch-profile.ts).
import { parseDaemonArgs } from '../common/daemon-args.js';
import { checkDirectory, configOrExit, loadConfigOrExit, prepareDirectory } from '../common/config-file.js';
import { checkFifo, prepareFifo } from './fifo-place.js';
import { isMountPoint } from './mounts.js';
import { createLogger } from '../common/logger.js';
import { checkLogfile, logfileNote, openLogfile } from '../common/logfile-config.js';
import { Notifier } from '../common/notify.js';
import { BusWatch, connectSystemBus, exportInterface, ownName } from '../dbus/bus.js';
import { GRIMSEL_IFACE, GRIMSEL_NAME, GRIMSEL_PATH, INTAKE_IFACE } from '../dbus/names.js';
import { GRIMSEL_METHODS, GRIMSEL_WITH_CALLER, GrimselInterface } from '../dbus/grimsel-interface.js';
import { INTAKE_METHODS, IntakeInterface } from '../dbus/intake-interface.js';
import { ErrorNames, invalidArgs } from '../dbus/errors.js';
import { DBusError } from 'dbus-next';
import { DEFAULT_CONFIG_PATH, loadGrimseldConfig, type StorageConfig } from './config.js';
import { storageInfos, type StorageInfo } from './storage-info.js';
import { component, Components, loopComponent, runDaemon, stopRequested, timerComponent } from '../common/service.js';
import { listenConfigured } from '../common/tcp-listener.js';
import { checkLicense, checkLicensePublicKey } from '../common/license.js';
import { Storage } from './storage.js';
import type { CopyOptions } from './copier.js';
import { Catalog } from './catalog.js';
import { Dispatcher } from './dispatcher.js';
import { Reclaimer } from './reclaimer.js';
import { StorageMarks } from './storage-marks.js';
import { LostCopies } from './lost-copies.js';
import { FileFifo } from './fifo.js';
import { TempSweeper } from './temp-sweep.js';
import { loadTempKey } from './temp-names.js';
import { everyTargetRefuses, Intake, RejectedPath } from './intake.js';
import { UnjournaledFiles } from './unjournaled.js';
import { StateDirRoom } from './state-room.js';
import { callerOf, NotReadable } from './caller-access.js';
import { MessageHub } from './messages.js';
import { StatusServer } from './status-server.js';
import { MessageServer } from './message-server.js';
import { MetricsServer } from '../common/metrics-server.js';
import { initProvenance } from '../common/provenance.js';
import { monotonicMs } from '../common/monotonic.js';

/**
 * Copies run in their own threads (copy-threads.ts); libuv's pool (4 threads by default) serves intake,
 * journal and mount checks, and a hung storage holds one pool thread in its mount check (mount-watch.ts),
 * and its writers' reads of the mount table: enough threads that the journal still gets one, and the
 * temp-file sweep another. Set before the pool's
 * first use; an operator's UV_THREADPOOL_SIZE wins.
 */
function sizeThreadPool(storages: StorageInfo[]): void {
  const writers = storages.reduce((n, s) => n + s.writers, 0);
  process.env['UV_THREADPOOL_SIZE'] ??= String(Math.min(writers + 3, 1024));
}

/**
 * How long after start grimseld first looks for delivered files its journal does not hold, and gives each one
 * found before naming it (unjournaled.ts): furkad hands over its outbox when grimseld appears or it starts itself.
 */
const UNJOURNALED_SETTLE_MS = 30_000;

/** How long a stop waits for the storages' copies in flight, under the unit's TimeoutStopSec (60 s). */
const STORAGES_STOP_MS = 20_000;

async function main(): Promise<number> {
  const args = parseDaemonArgs('grimseld', DEFAULT_CONFIG_PATH);
  const config = loadConfigOrExit('grimseld', args.config, loadGrimseldConfig);
  if (args.check) {
    configOrExit('grimseld', () => checkLogfile(args.config, config));
    configOrExit('grimseld', () => checkLicensePublicKey(args.config, config));
    configOrExit('grimseld', () => checkDirectory(args.config, 'state_dir', config.state_dir));
    configOrExit('grimseld', () => checkFifo(args.config, 'fifo', config.fifo));
    const note = logfileNote('grimseld', config);
    if (note) process.stderr.write(`grimseld: ${args.config}: ${note}\n`);
    const n = Object.keys(config.storage).length;
    process.stdout.write(`${args.config}: configuration is valid (${n} ${n === 1 ? 'storage' : 'storages'})\n`);
    return 0;
  }
  configOrExit('grimseld', () => prepareDirectory(args.config, 'state_dir', config.state_dir));
  const fifoNote = configOrExit('grimseld', () => prepareFifo(args.config, 'fifo', config.fifo));
  const log = createLogger('grimseld', config, configOrExit('grimseld', () => openLogfile(args.config, config)));
  if (fifoNote !== undefined) log.warn({ fifo: config.fifo }, fifoNote);
  const notifier = new Notifier(log);

  // G14: without a valid license key every storage gets one writer.
  const license = checkLicense(config.licensekey, { publicKeyFile: config.license_public_key });
  if (!license.valid) log.warn({ licensekey: config.licensekey }, `no valid license, one writer per storage: ${license.reason}`);
  const storageList = storageInfos(config.storage, (s: StorageConfig) => (license.valid ? s.n_copy_processes : 1));
  sizeThreadPool(storageList);

  // I3: the attribute module (native) is loaded here first, so that a broken install stops grimseld at start
  // with its reason instead of failing every copy in its threads.
  await initProvenance();
  if (!config.verify_copies) log.info('verify_copies = no: copies are checked against the checksum of the bytes read, not read back');

  // Built in dependency order, each from what is built before it: nothing is wired in afterwards.
  const messages = new MessageHub(log);
  // G12: the journal is replayed before anything else happens; what it holds is redone.
  const { catalog, journal, replayed } = await Catalog.open(config.state_dir, {
    storages: storageList.map((s) => s.id),
    historyMaxEntries: config.history_max_entries,
    ramdiskRoot: config.target,
    hasExternal: storageList.some((s) => s.type === 'EXTERNAL'),
  });
  // A storage section removed: its rows leave the status, so its going is said here, once per start while files
  // held had no copy there (found by hostile tester h8).
  for (const { storage, uncopied } of catalog.unconfigured) {
    if (uncopied === 0) continue;
    log.warn({ storage, uncopied }, `storage '${storage}' is in grimseld's journal but no longer in the configuration: ` +
      `nothing is copied there now and the status shows no counts for it. ${uncopied} of the files grimseld held at this start are not ` +
      `known to have a copy there: they are copied there if its section is restored while grimseld still holds them (until their ramdisk ` +
      `originals are cleaned up, G5: after their shift, or as the ramdisk fills)`);
  }
  const book = catalog.shifts;
  const dispatcher = new Dispatcher(catalog, storageList, messages, log);
  // G3, G12: copy temp names carry a MAC under this key, kept in state_dir, and only such names are ever swept.
  const tempKey = loadTempKey(config.state_dir, log);
  const copyOptions = (id: string): CopyOptions => {
    const own = config.storage[id];
    return { preserveUid: own?.preserve_uid ?? config.preserve_uid, preserveGid: own?.preserve_gid ?? config.preserve_gid, verifyCopies: config.verify_copies, tempKey };
  };
  const storages = storageList.map((info) => new Storage(info, copyOptions(info.id), dispatcher.feed(info.id)));
  // G5, G13: a storage's disk swapped for another (an empty one) is noticed by its mark, and the copies it took are made again.
  const marks = new StorageMarks(catalog, dispatcher, storageList, messages, log);
  // G5, G7: a copy gone from the same disk (its user moved or deleted it) is made again before its original goes.
  const lostCopies = new LostCopies(catalog, dispatcher, messages, log);
  // G3, G12: temp files of copies that will never be renamed are swept from the storages' roots and failed copies' directories.
  const temps = new TempSweeper(storageList, dispatcher, tempKey, config.temp_max_age_s * 1000, log);
  // G6: the fill state is the ramdisk's only if a file system of its own is mounted there (h12: a plain directory
  // went unsaid, and the guard watched the root file system's fill instead).
  if (!(await isMountPoint(config.ramdisk_mountpoint).catch(() => true))) {
    log.warn({ ramdisk_mountpoint: config.ramdisk_mountpoint }, `ramdisk_mountpoint ${config.ramdisk_mountpoint} is not a mount point: the fill guard (G6) ` +
      'watches the file system it lies on, not a ramdisk of its own; mount the ramdisk there, or name its mount point');
  }
  const reclaimer = new Reclaimer(catalog, storageList.find((s) => s.type === 'INTERNAL')!, storageList.find((s) => s.type === 'EXTERNAL'), {
    ramdiskRoot: config.target,
    ramdiskMountpoint: config.ramdisk_mountpoint,
    createLinks: config.create_links,
    fillLimitPercent: config.fillstate_limit,
    intervalMs: 250,
    tempKey,
    diskCheck: (st) => marks.check(st),
    copyGone: (rec, st) => lostCopies.copyAgainIfGone(rec, st),
  }, messages, log);
  const intake = new Intake(catalog, dispatcher, messages, log, () => reclaimer.shiftStarted(), () => reclaimer.earlierShiftDelivered(),
    new StateDirRoom(config.state_dir, messages, log), (uid) => everyTargetRefuses(storageList, (id) => copyOptions(id).preserveUid, uid));
  // G12: files furkad delivered that the journal lost (moved away, emptied, restored) are named, not forgotten.
  const unjournaled = new UnjournaledFiles(catalog, log, {
    ramdiskRoot: config.target, stateDir: config.state_dir, fifo: config.fifo, tempKey, settleMs: UNJOURNALED_SETTLE_MS,
  });
  const fifo = new FileFifo(config.fifo, (paths) => intake.addMany(paths), log);
  const statusServer = new StatusServer(book, log);
  const messageServer = new MessageServer(messages, log);
  // Optional Prometheus endpoint: it counts the dispatcher's copy events. prom-client is loaded only then:
  // otherwise it is ~1 MB resident for nothing (BENCHMARKS.md).
  const metrics = config.metrics_address === undefined ? undefined : new (await import('./metrics.js')).GrimseldMetrics(book, messages, dispatcher, () => [
    { what: 'ramdisk', path: config.ramdisk_mountpoint },
    ...Object.entries(config.storage).map(([id, s]) => ({ what: `storage ${id}`, path: s.mountpoint ?? s.target })),
  ]);
  const metricsServer = metrics && new MetricsServer(metrics.registry, log);
  const bus = connectSystemBus();
  const busWatch = new BusWatch(bus, log);
  const iface = new GrimselInterface(GRIMSEL_IFACE, {
    queryStatus: (n) => book.query(n),
    queryVerified: (n) => book.queryVerified(n),
    queryStatusVerified: (n) => book.queryStatusVerified(n),
    tcpPorts: () => ({ status: statusServer.port, message: messageServer.port }),
    license: () => license,
    storages: () => storageList.map((st) => [st.id, st.type, st.target, st.writers]),
    addFile: async (p, uid) => {
      try {
        // G8, docs/threat-model.md: root adds any file; anyone else (an operator) only one they could read.
        await intake.add(p, uid === 0 ? undefined : await callerOf(uid));
      } catch (e) {
        if (e instanceof NotReadable) {
          log.warn({ path: p, uid }, `AddFile refused: ${e.message}`);
          throw new DBusError(ErrorNames.NotAllowed, e.message);
        }
        if (e instanceof RejectedPath) {
          log.warn({ path: p }, `AddFile refused: ${e.message}`);
          throw invalidArgs(e.message);
        }
        throw e;
      }
    },
  });

  const statusLine = (): string => {
    const s = book.current;
    const per = storageList.map((st) => {
      const c = s?.counts.get(st.id);
      return `${st.id}: ${c?.pending ?? 0} pending, ${c?.copied ?? 0} copied, ${c?.failed ?? 0} failed`;
    }).join('; ');
    // Files of ended shifts still pending or failed: without this, `systemctl status` looked clean right after a
    // shift change while the ended shift's copies were failing (hostile tester h14).
    let pending = 0n;
    let failed = 0n;
    for (const row of book.query(-1)) {
      if (row[0] === s?.usertime) continue;
      pending += row[4];
      failed += row[6];
    }
    const earlier = pending || failed ? `; earlier shifts: ${pending} pending, ${failed} failed` : '';
    return `shift ${s ? `${s.uid}:${s.gid}` : '-'}; ${per}${earlier}${license.valid ? '' : `; unlicensed, one writer per storage: ${license.reason}`}`;
  };
  // S1, G12: a copy thread that spins without copying stops the watchdog's pings, and systemd restarts
  // grimseld; one waiting in the kernel on a hung storage is reported and left (why: copy-watch.ts).
  let copiersHealthy = true;
  const watchCopiers = (): void => {
    const now = monotonicMs();
    let healthy = true;
    for (const st of storages) {
      for (const stall of st.stalls(now)) {
        const seconds = Math.round(stall.stalledMs / 1000);
        if (stall.verdict === 'spinning') {
          healthy = false;
          if (stall.news) log.error({ storage: st.id, seconds }, 'a copy thread is busy but has copied nothing for this long: wedged; the watchdog pings stop so that systemd restarts grimseld');
        } else if (stall.news) {
          log.warn({ storage: st.id, seconds }, 'a copy has waited in the kernel this long (a hung storage?); its writer stays blocked until the storage answers, the other storages go on');
        }
      }
    }
    copiersHealthy = healthy;
  };

  // Started in this order, stopped in reverse: everything listens before the name appears (G9, G10: whoever sees
  // the name can read StatusPort/MessagePort), and the copies resumed are queued (dispatcher) before files come in.
  const components = new Components([
    component('journal', () => undefined, () => journal.close()),
    component('dispatcher', () => {
      dispatcher.resume();
      if (replayed) log.info({ journaled: replayed, live: catalog.size }, 'journal replayed; unfinished copies resumed');
    }, () => dispatcher.stop()),
    loopComponent('storage marks', (signal) => marks.run(signal)),
    loopComponent('temp sweeper', (signal) => temps.run(signal, Math.min(config.temp_max_age_s, 600) * 1000)),
    loopComponent('reclaimer', (signal) => reclaimer.run(signal)),
    timerComponent('journal compaction', 10_000, () => {
      catalog.pruneSettled();
      catalog.compactIfWorthIt().catch((e: unknown) => log.error({ err: e }, 'journal compaction failed'));
    }),
    component('fifo', () => fifo.open(), () => fifo.close()),
    component('bus', () => {
      exportInterface(bus, GRIMSEL_PATH, iface, GRIMSEL_IFACE, GRIMSEL_METHODS, GRIMSEL_WITH_CALLER);
      messages.subscribe((m) => iface.Message(m.errcode, m.shortMessage, m.longMessage));
      exportInterface(bus, GRIMSEL_PATH, new IntakeInterface(INTAKE_IFACE, intake), INTAKE_IFACE, INTAKE_METHODS);
    }, () => {
      // Also when a later component failed to start: the connection's end is grimseld's own, not a lost bus.
      busWatch.stopping();
      bus.disconnect();
    }),
    component('status server', () => listenConfigured(args.config, 'status_port', () => statusServer.start(config.status_port, config.status_address)),
      () => statusServer.stop()),
    component('message server', () => listenConfigured(args.config, 'message_port', () => messageServer.start(config.message_port, config.message_address)),
      () => messageServer.stop()),
    metricsServer && component('metrics server', () => listenConfigured(args.config, 'metrics_port', () => metricsServer.listen(config.metrics_port, config.metrics_address!)),
      () => metricsServer.close()),
    // After the bus and the message server, so stopped before them: a copy of the last batch that fails while grimseld
    // stops is still told to subscribers. Stopped after them, its COPY_ERROR went nowhere, and the next start, finding
    // the failure journaled, never said it either (hostile tester h14: 13 of 27).
    loopComponent('storages', async (signal) => {
      const copies = Promise.all(storages.map((s) => s.run(signal))).then(() => dispatcher.recorded());
      // A copy waiting in the kernel on a hung storage never ends: after STORAGES_STOP_MS the stop goes on without it
      // (what it copies is journaled pending and copied after the next start), so that furkad sees grimseld gone and
      // keeps its files, rather than grimseld taking them until systemd kills it (reviewer r6).
      const late = new Promise<void>((resolve) => signal.addEventListener('abort', () => setTimeout(resolve, STORAGES_STOP_MS).unref(), { once: true }));
      if (await Promise.race([copies.then(() => false), late.then(() => true)])) {
        log.warn({ seconds: STORAGES_STOP_MS / 1000 }, 'copies still in flight after this long (a hung storage?): stopping without them; they are copied after the next start');
      }
    }),
    component('bus name', () => ownName(bus, GRIMSEL_NAME), () => undefined),
    loopComponent('ramdisk check', (signal) => unjournaled.run(signal)),
    timerComponent('status', 1000, () => {
      watchCopiers();
      notifier.status(statusLine());
    }),
  ], log);
  const stop = Promise.race([stopRequested(), busWatch.lost]);
  if (await components.start(stop)) {
    notifier.ready(statusLine(), () => copiersHealthy);
    log.info({ storages: storageList.map((s) => `${s.id}(${s.type}, ${s.writers} writers) -> ${s.target}`) }, 'grimseld ready');
    await stop;
  }
  busWatch.stopping();
  log.info('stopping');
  notifier.stopping();
  await components.stop();
  log.info('stopped');
  return busWatch.gone === undefined ? 0 : 1;
}

runDaemon('grimseld', main);

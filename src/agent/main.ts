#!/usr/bin/env node
// furka-agent's service contract: arguments → config → components (watches and first scan, listener) started →
// READY=1 → run → STOPPING=1 → components stopped in reverse → exit code.
import { realpathSync } from 'node:fs';
import { parseDaemonArgs } from '../common/daemon-args.js';
import { configOrExit, loadConfigOrExit } from '../common/config-file.js';
import { createLogger } from '../common/logger.js';
import { checkLogfile, logfileNote, openLogfile } from '../common/logfile-config.js';
import { Notifier } from '../common/notify.js';
import { component, Components, runDaemon, stopRequested, timerComponent } from '../common/service.js';
import { AllowList } from './allow.js';
import { Catalog } from './catalog.js';
import { RootLink, ROOT_LINK_CHECK_MS } from './root-link.js';
import { checkAgentRoot, DEFAULT_CONFIG_PATH, loadAgentConfig, loadAgentKey } from './config.js';
import { KeyCheck } from '../common/shared-key.js';
import { EventRetry } from './event-retry.js';
import { NameFilter, words } from './name-filter.js';
import { LeaseCheck } from './lease-check.js';
import { AgentServer } from './server.js';
import { Watcher } from './watcher.js';
import { prepareChecksums } from '../common/checksum.js';

function statusLine(catalog: Catalog, server: AgentServer, watcher?: Watcher): string {
  const degraded = watcher?.degraded;
  return `${catalog.known} files known, ${catalog.waiting} being written; ${server.clients} clients connected${degraded ? `; ${degraded}` : ''}`;
}

async function main(): Promise<number> {
  const args = parseDaemonArgs('furka-agent', DEFAULT_CONFIG_PATH);
  const config = loadConfigOrExit('furka-agent', args.config, loadAgentConfig);
  // Every request must carry this key (A1): an agent whose key is missing or readable by others does not start.
  const key = configOrExit('furka-agent', () => loadAgentKey(args.config, config));
  configOrExit('furka-agent', () => checkAgentRoot(args.config, config));
  if (args.check) {
    configOrExit('furka-agent', () => checkLogfile(args.config, config));
    const note = logfileNote('furka-agent', config);
    if (note) process.stderr.write(`furka-agent: ${args.config}: ${note}\n`);
    process.stdout.write(`${args.config}: configuration is valid (root ${config.root}, port ${config.port}, key ${config.key_file})\n`);
    return 0;
  }
  const log = createLogger('furka-agent', config, configOrExit('furka-agent', () => openLogfile(args.config, config)));
  const notifier = new Notifier(log);
  // Paths are compared with what the kernel reports and with real paths: the root as it really is.
  const root = realpathSync.native(config.root);
  const rootLink = new RootLink(config.root, root, log);

  // Hashers made ahead: the first files sent do not wait for WebAssembly to compile (I1).
  await prepareChecksums(2);
  const catalog = new Catalog(root, new NameFilter(config.exclude), log);
  // Whether a file is still open for writing anywhere, asked of the kernel (a read lease) before a file is sent
  // as whole and before its source is deleted: a writer with a second descriptor is not done at its first close.
  const leases = new LeaseCheck({ root, onTrouble: (why) => log.warn({ why }, 'cannot ask the kernel whether a file is still open for writing: ' +
    'files acknowledged meanwhile are checked by a walk of /proc instead (slower), files sent meanwhile not at all') });
  leases.prepare();
  const server = new AgentServer(catalog, new AllowList(words(config.allow)), new KeyCheck(key), log, config.send_timeout * 1000, leases);
  // An event or rescan that fails (out of descriptors) is said and followed by a rescan, not the process's end.
  const retry = new EventRetry(() => catalog.rescan(), log);
  // Each (re)established watch set is followed by a full rescan: events before it were not seen (A2).
  const watcher = new Watcher(root, {
    event: (e) => retry.run(`a file event (${e.kind})`, () => catalog.event(e)),
    established: () => retry.rescanNow('the rescan after watches were set up'),
    rescan: () => retry.rescanNow('a rescan'),
    // A file system mounted on the root or unmounted from it: the old root's handles are let go at once (the
    // rescan after the new run's walk does the rest).
    rootReplaced: () => catalog.files.forgetRoot(),
    unwatched: (dirs) => {
      try {
        catalog.scanUnwatched(dirs);
      } catch (e) {
        log.error({ err: e }, 'cannot look into directories inotifywait does not watch');
      }
    },
  }, log);
  // inotifywait skips a directory without a word when a file in it is renamed while it sets the watch up: every
  // directory a scan walks is checked against the kernel's list of watches (watch-check.ts), and a barrier
  // looks into those not known to be watched (A5).
  catalog.walked.on((dirs) => watcher.check(dirs));
  catalog.unwatched = () => watcher.unwatched();
  catalog.allWatched = () => watcher.everyDirWatched();
  // A barrier's mark goes into the root as it is now, watched: one replaced under the agent is watched anew first.
  catalog.checkRoot = () => { watcher.checkRoot(true); };

  // Started in this order, stopped in reverse: clients are served once the catalog knows what is there.
  const components = new Components([
    watcher,
    component(`listener on ${config.address}:${config.port}`, () => server.listen(config.port, config.address), () => server.close()),
    timerComponent('root link check', ROOT_LINK_CHECK_MS, () => rootLink.check()),
  ], log);
  const stop = stopRequested();
  if (await components.start(stop)) {
    notifier.ready(statusLine(catalog, server));
    log.info({ root, address: config.address, port: config.port, allow: config.allow, keyFile: config.key_file, known: catalog.known }, 'furka-agent ready');
    const statusTimer = setInterval(() => notifier.status(statusLine(catalog, server, watcher)), 1000);
    // Files made by link(2) and files changed without a close have no event that completes them (A2).
    const sweepTimer = setInterval(() => {
      try {
        catalog.sweepWaiting();
      } catch (e) {
        log.error({ err: e }, 'cannot look at files waiting for their close');
      }
    }, 1000);
    await stop;
    clearInterval(statusTimer);
    clearInterval(sweepTimer);
  }
  retry.close();

  log.info('stopping');
  notifier.stopping();
  await components.stop();
  leases.close();
  log.info('stopped');
  return 0;
}

runDaemon('furka-agent', main);

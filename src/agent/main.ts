#!/usr/bin/env node
// furka-agent's service contract: arguments → config → watches and first scan → listen → READY=1 → run → STOPPING=1.
import { realpathSync, statSync } from 'node:fs';
import { parseDaemonArgs } from '../common/daemon-args.js';
import { loadConfigOrExit } from '../common/config-file.js';
import { createLogger } from '../common/logger.js';
import { Notifier } from '../common/notify.js';
import { runDaemon, stopRequested } from '../common/service.js';
import { AllowList } from './allow.js';
import { Catalog } from './catalog.js';
import { DEFAULT_CONFIG_PATH, loadAgentConfig } from './config.js';
import { NameFilter, words } from './name-filter.js';
import { AgentServer } from './server.js';
import { Watcher } from './watcher.js';
import { prepareChecksums } from '../common/checksum.js';

function statusLine(catalog: Catalog, server: AgentServer): string {
  return `${catalog.known} files known, ${catalog.waiting} being written; ${server.clients} clients connected`;
}

async function main(): Promise<number> {
  const args = parseDaemonArgs('furka-agent', DEFAULT_CONFIG_PATH);
  const config = loadConfigOrExit('furka-agent', args.config, loadAgentConfig);
  if (args.check) {
    process.stdout.write(`${args.config}: configuration is valid (root ${config.root}, port ${config.port})\n`);
    return 0;
  }
  const log = createLogger('furka-agent', config);
  const notifier = new Notifier(log);
  // Paths are compared with what the kernel reports and with real paths: the root as it really is.
  if (!statSync(config.root, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`root ${config.root}: not a directory`);
  const root = realpathSync.native(config.root);

  // Hashers made ahead: the first files sent do not wait for WebAssembly to compile (I1).
  await prepareChecksums(2);
  const catalog = new Catalog(root, new NameFilter(config.exclude), log);
  const server = new AgentServer(catalog, new AllowList(words(config.allow)), log);
  catalog.onAnnounce = (a) => server.announce(a);
  // Each (re)established watch set is followed by a full rescan: events before it were not seen (A2).
  const watcher = new Watcher(root, { event: (e) => catalog.event(e), established: () => catalog.rescan() }, log);
  await watcher.start();
  await server.listen(config.port, config.address);

  notifier.ready(statusLine(catalog, server));
  log.info({ root, address: config.address, port: config.port, allow: config.allow, known: catalog.known }, 'furka-agent ready');
  const statusTimer = setInterval(() => notifier.status(statusLine(catalog, server)), 1000);

  await stopRequested();
  log.info('stopping');
  notifier.stopping();
  clearInterval(statusTimer);
  watcher.stop();
  await server.close();
  log.info('stopped');
  return 0;
}

runDaemon('furka-agent', main);

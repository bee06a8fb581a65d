// A `root` reached through a symbolic link (root = /ramdisk, a link to /dev/shm/det): the agent serves the directory
// the link named at its start, since it compares paths with what the kernel reports, and keeps held handles. A link
// pointed elsewhere later was not followed and not said: files written in the new place stayed on the detector
// until a restart (found by a hostile tester, session 36). Now it is said: at start, and each time the link is
// found to name another directory (looked at every ROOT_LINK_CHECK_MS), with what to do.
import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../common/logger.js';

/** How often the configured root is resolved again. */
export const ROOT_LINK_CHECK_MS = 5000;

export class RootLink {
  /** The directory the configured root last resolved to that was said (the one served, at first). */
  #said: string;

  constructor(private readonly configured: string, private readonly served: string, private readonly log: Logger,
    private readonly resolve: (p: string) => string = (p) => realpathSync.native(p)) {
    this.#said = served;
    if (path.resolve(configured) !== served) {
      log.info({ root: configured, served }, `root ${configured} is ${served} (a symbolic link on the way): served as that; ` +
        'pointing the link elsewhere is said, and followed only by a restart (systemctl restart furka-agent)');
    }
  }

  /** Resolves the configured root again; says once when it names another directory than the one served. */
  check(): void {
    let now: string;
    try {
      now = this.resolve(this.configured);
    } catch {
      return; // gone or not reachable: the watcher says so of the root it serves
    }
    if (now === this.#said) return;
    this.#said = now;
    if (now === this.served) {
      this.log.info({ root: this.configured, served: this.served }, `root ${this.configured} is ${this.served} again, the directory served`);
      return;
    }
    this.log.warn({ root: this.configured, now, served: this.served }, `root ${this.configured} now leads to ${now}, but the agent serves ` +
      `${this.served}, where it led at start: files written in ${now} are not announced until furka-agent is restarted ` +
      '(systemctl restart furka-agent)');
  }
}

// Room in grimseld's state_dir for its journal: a delivery (or an operator's addition) is taken only once its
// journal line is written (G12), so a full state_dir refuses them all. Said once per episode, in the log and to
// subscribers (DISK_OVERFLOW of the state_dir's mount point, G10), and to each caller with the state_dir named:
// furkad keeps the files on the ramdisk and hands them over again, and shows that error (G9, G10).
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { mountOf, mountsOf } from '../common/mounts.js';
import type { Logger } from '../common/logger.js';
import type { MessageHub } from './messages.js';

/** errno codes of a file system that takes no more: full, over quota. */
const NO_ROOM = new Set(['ENOSPC', 'EDQUOT']);

/** A journal write refused for want of room, as its caller sees it (the D-Bus error's text). */
export class StateDirFull extends Error {}

export class StateDirRoom {
  /** The state_dir is full (said), until a write goes through again. */
  #full = false;

  constructor(private readonly stateDir: string, private readonly messages: MessageHub, private readonly log: Logger) {}

  /**
   * Runs `write` (one that may append to the journal). A full state_dir is said when it starts, and its end when
   * a write that `wrote` (new files noted, not a shift already known) goes through again; the caller gets a
   * StateDirFull that names it. Other errors pass as they are.
   */
  async writing<T>(write: () => Promise<T>, wrote = true): Promise<T> {
    let result: T;
    try {
      result = await write();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === undefined || !NO_ROOM.has(code)) throw e;
      const why = `grimseld's state_dir ${this.stateDir} is full (${(e as Error).message}): its journal (journal.jsonl) cannot note new files, ` +
        'so deliveries and added files are refused until there is room there; furkad keeps delivered files on the ramdisk and hands them over again';
      if (!this.#full) {
        this.#full = true;
        this.messages.publish('DISK_OVERFLOW', await this.#mountPoint(), why);
      }
      throw new StateDirFull(why);
    }
    if (this.#full && wrote) {
      this.#full = false;
      this.log.info({ stateDir: this.stateDir }, "room again in grimseld's state_dir: deliveries are taken again");
    }
    return result;
  }

  /** The mount point holding the state_dir (DISK_OVERFLOW names a mount point, G10); the state_dir if not found. */
  async #mountPoint(): Promise<string> {
    const mounts = mountsOf(await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''));
    return mountOf(path.resolve(this.stateDir), mounts)?.at ?? this.stateDir;
  }
}

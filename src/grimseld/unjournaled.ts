// Files on the ramdisk that furkad delivered and grimseld's journal does not hold (G12, S4): the journal moved away
// after "line N is corrupt", emptied, or /var/lib restored from a backup. The journal is the only record of what
// still needs copying, so without this such files would never be copied, nobody would be told, and a tmpfs
// ramdisk would lose them at the next reboot. They are found by furkad's provenance (I3) on the files themselves
// and named, with the command that hands them over: grimseld does not take them in itself, because the part to
// replicate (the './' in furkad's detector target, G4) is not on the file, and a guessed one would put the copies
// under another path than furkad's own hand-over of the same file would (README: How grimseld never loses a file).
import { closeSync, constants, fstatSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { sleep } from '../common/abort.js';
import { DirFd } from '../common/dir-fd.js';
import { writeDurably } from '../common/durable-file.js';
import type { Logger } from '../common/logger.js';
import { hasControl, STAGING_NAME } from '../common/paths.js';
import { readProvenance } from '../common/provenance.js';
import type { Catalog } from './catalog.js';
import { isOwnTemp, type TempKey } from './temp-names.js';

/** The list of the files found, in state_dir: one path a line, for the command the error names. */
export const UNJOURNALED_LIST = 'not-in-journal.txt';
/** Paths named in the log line itself. */
const SAMPLE = 5;
/** Entries looked at between two turns of the event loop: a ramdisk of 100 000 files holds up nothing. */
const PER_TURN = 256;

export interface UnjournaledSettings {
  /** grimseld's ramdisk directory (`target`). */
  ramdiskRoot: string;
  stateDir: string;
  fifo: string;
  tempKey: TempKey;
  /**
   * How long after start the ramdisk is first looked at, and how long a file found then is given before it is
   * named: furkad hands over what its outbox holds when grimseld appears (or at its own start), and a file placed
   * a moment ago is handed over a moment later. Neither is a file the journal lost.
   */
  settleMs: number;
}

interface Found {
  src: string;
  ino: number;
  dev: number;
  size: number;
  mtimeMs: number;
}

export class UnjournaledFiles {
  constructor(private readonly catalog: Catalog, private readonly log: Logger, private readonly settings: UnjournaledSettings) {}

  /** Looks once, in the background (READY=1 does not wait for it), and says what it found; returns the files named. */
  async run(signal: AbortSignal): Promise<string[]> {
    try {
      await sleep(this.settings.settleMs, signal);
      if (signal.aborted) return [];
      const found = await this.#walk(signal);
      if (signal.aborted) return [];
      if (found.length) {
        // Given the same time again: whatever furkad handed over meanwhile is the catalog's now.
        await sleep(this.settings.settleMs, signal);
        if (signal.aborted) return [];
      }
      const still = found.filter((f) => !this.#known(f) && this.#stillThere(f));
      if (still.length) {
        this.#say(still.map((f) => f.src));
      } else {
        // A list an earlier start left names nothing to hand over any more.
        rmSync(path.join(this.settings.stateDir, UNJOURNALED_LIST), { force: true });
        this.log.debug({ root: this.settings.ramdiskRoot }, 'every file on the ramdisk that furkad delivered is in the journal');
      }
      return still.map((f) => f.src);
    } catch (e) {
      this.log.error({ err: e }, 'cannot look for files on the ramdisk that the journal does not hold');
      return [];
    }
  }

  /** Whether the catalog holds this very file (live: not copied everywhere, or its original not cleaned up yet). */
  #known(f: Found): boolean {
    const rec = this.catalog.latestAt(f.src);
    return rec !== undefined && rec.ino === f.ino && rec.dev === f.dev && rec.size === f.size && rec.mtimeMs === f.mtimeMs;
  }

  /** Whether `f` is still on the ramdisk as it was found (looked at as the walk did, without following links). */
  #stillThere(f: Found): boolean {
    try {
      const held = DirFd.openParent(this.settings.ramdiskRoot, path.relative(this.settings.ramdiskRoot, f.src));
      if (!held) return false;
      const st = DirFd.with(held.dir, (d) => d.lstat(held.name));
      return st !== undefined && st.isFile() && st.ino === f.ino && st.dev === f.dev;
    } catch {
      return false;
    }
  }

  /**
   * The regular files below the ramdisk directory that carry furkad's provenance and that the catalog does not
   * hold. Every directory is opened below the one before it without following a link (users own their shift
   * directories: docs/threat-model.md); links, furkad's staging and grimseld's own temp names are passed by.
   * Only a file the catalog does not know is opened, to read its attributes: a restart that lost nothing costs a
   * listing and an lstat per file.
   */
  async #walk(signal: AbortSignal): Promise<Found[]> {
    let top: DirFd;
    try {
      top = DirFd.open(this.settings.ramdiskRoot);
    } catch {
      return []; // not there (not mounted): nothing on it to lose, and the fill guard says it
    }
    const found: Found[] = [];
    // Named as intake names a delivered file (unmark: normalized), so that the catalog finds the ones it holds.
    const stack: Array<{ dir: DirFd; shown: string }> = [{ dir: top, shown: path.normalize(this.settings.ramdiskRoot).replace(/\/+$/, '') }];
    let looked = 0;
    try {
      while (stack.length) {
        const { dir, shown } = stack.pop()!;
        try {
          let names: Buffer[];
          try {
            names = dir.list();
          } catch {
            continue; // gone meanwhile
          }
          for (const raw of names) {
            if (++looked % PER_TURN === 0) {
              await new Promise((r) => setImmediate(r));
              if (signal.aborted) return [];
            }
            const name = raw.toString('utf8');
            // Not a name furkad delivers (not UTF-8, a control character): grimseld could not take it either.
            if (!Buffer.from(name, 'utf8').equals(raw) || hasControl(name)) continue;
            const st = dir.lstat(raw);
            if (!st) continue;
            const src = `${shown}/${name}`;
            if (st.isDirectory()) {
              if (name === STAGING_NAME) continue;
              try {
                stack.push({ dir: dir.child(raw), shown: src });
              } catch {
                /* swapped for a link or removed meanwhile: not followed */
              }
              continue;
            }
            if (!st.isFile() || isOwnTemp(this.settings.tempKey, name)) continue;
            const f: Found = { src, ino: st.ino, dev: st.dev, size: st.size, mtimeMs: st.mtimeMs };
            if (this.#known(f) || !this.#delivered(dir, raw, st.ino)) continue;
            found.push(f);
          }
        } finally {
          dir.close();
        }
      }
    } finally {
      for (const { dir } of stack) dir.close();
    }
    return found;
  }

  /** Whether entry `name` of `dir` is the regular file `ino` and carries furkad's provenance (a shift, I3). */
  #delivered(dir: DirFd, name: Buffer, ino: number): boolean {
    let fd: number;
    try {
      // O_NONBLOCK: a file swapped for a FIFO meanwhile must not hold the walk; O_NOFOLLOW (openFile): nor a link.
      fd = dir.openFile(name, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.ino !== ino) return false;
      return readProvenance(fd)?.shift !== undefined;
    } catch {
      return false;
    } finally {
      closeSync(fd);
    }
  }

  /** One error for all of them: how many, a few of them, where the list is and the command that hands them over. */
  #say(paths: string[]): void {
    const root = path.normalize(this.settings.ramdiskRoot).replace(/\/+$/, '');
    const list = path.join(this.settings.stateDir, UNJOURNALED_LIST);
    let listed = true;
    try {
      writeDurably(list, `${paths.join('\n')}\n`, 0o600);
    } catch (e) {
      listed = false;
      this.log.error({ err: e, file: list }, 'cannot write the list of files on the ramdisk that the journal does not hold');
    }
    const command = handOverCommand(root, list, this.settings.fifo);
    this.log.error({ count: paths.length, files: paths.slice(0, SAMPLE), ...(listed ? { list } : {}), command },
      `${paths.length} files on the ramdisk that furkad delivered are not in the journal (moved away, emptied or restored ` +
      `from a backup?): grimseld does not copy them until they are handed over again, and a ramdisk (tmpfs) loses them at ` +
      `the next reboot. ${listed ? `They are listed in ${list}; hand them over with: ${command}` : 'Hand them over with the FIFO'} ` +
      `(this puts the './' right after grimseld's target, as furkad's detector targets in the shipped furkad.conf have it, ` +
      `e.g. ${root}/./1mf; put it where furkad's targets have it). A file already copied is recognised and not copied again. ` +
      `Files are added to the current shift: if grimseld has none yet, wait for furkad's next file or restart furkad first ` +
      `(README: How grimseld never loses a file).`);
  }
}

/**
 * The shell command that writes the paths listed in `list` (one a line, each below `root`) to grimseld's FIFO, each
 * with the './' right after `root`: any characters in the three paths are taken literally.
 */
export function handOverCommand(root: string, list: string, fifo: string): string {
  return `sed ${shellWord(`s|^${sedPattern(`${root}/`)}|${sedReplacement(`${root}/./`)}|`)} ${shellWord(list)} > ${shellWord(fifo)}`;
}

/** `w` as one word of a POSIX shell command: bare when it holds nothing the shell reads, else single-quoted. */
function shellWord(w: string): string {
  return /^[\w./:=@%+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/** `text` as a sed basic regular expression matching it literally, `|` the delimiter. */
function sedPattern(text: string): string {
  return text.replace(/[\\|.*[\]^$]/g, '\\$&');
}

/** `text` as a sed replacement giving it literally, `|` the delimiter. */
function sedReplacement(text: string): string {
  return text.replace(/[\\|&]/g, '\\$&');
}

// The agent's table of complete files: id → path and identity, kept from scans and the watcher's events (A2, A4).
import type { BigIntStats } from 'node:fs';
import type { Logger } from '../common/logger.js';
import { Topic } from '../common/topic.js';
import { NameFilter } from './name-filter.js';
import { fileKey, filesBeingWritten } from './open-writers.js';
import { DEEP_MAX, scanFiles, type Found } from './scanner.js';
import { barrierName, barrierOf } from './barrier.js';
import { fileId, isAsideName, SourceFiles, type Sameness } from './source-files.js';
import { baseId } from '../common/file-id.js';
import type { WatchEvent } from './watcher.js';
import type { DirId } from './watch-check.js';
import { hasControl, STAGING_NAME } from '../common/paths.js';
import { monotonicMs } from '../common/monotonic.js';
import { FurkadTargets, isFurkadStaging } from './furkad-targets.js';

export { fileId, type Sameness };

/** One announced file, as it was when announced; `id` is INO:SIZE:MTIME_NS (docs/agent-protocol.md). */
export interface FileEntry {
  id: string;
  /** Relative to the root, '/'-separated, valid UTF-8. */
  path: string;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  /** Permission bits (the type is always "regular file"). */
  mode: number;
}

export type Announcement =
  /** `live`: its completion was just reported by the kernel (not found by a scan): its body may be pushed. */
  | { t: 'file'; entry: FileEntry; live?: boolean }
  /** `path` is the name shown (not UTF-8: with U+FFFD), `bytes` the name's own bytes in hex (two names may show alike). */
  | { t: 'refused'; path: string; reason: string; bytes: string }
  /** A name refused before is gone (renamed, deleted): nothing of it is left on the detector. */
  | { t: 'unrefused'; path: string; bytes: string }
  | { t: 'synced' }
  /** Every file complete before barrier `id` was asked for has been announced before this (barrier.ts). */
  | { t: 'barrier'; id: string };

/** How many rewrites an id counts (baseId): 0 for INO:SIZE:MTIME_NS, N for INO:SIZE:MTIME_NS:N. */
function rewrites(id: string): number {
  const extra = id.slice(baseId(id).length + 1);
  return extra === '' ? 0 : Number(extra);
}

/** Decodes a name as UTF-8, or undefined if its bytes are not valid UTF-8 (round-trip check). */
export function utf8(bytes: Buffer): string | undefined {
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}

/** The key of a name (given as UTF-8 text) in the maps below, which keep names as their bytes (latin1). */
function keyOf(path: string): string {
  return Buffer.from(path).toString('latin1');
}

const NOT_UTF8 = 'name is not valid UTF-8';
/** grimseld takes no name with a control character (common/paths.ts): announced, it would be delivered and never copied. */
const TOO_DEEP = `a directory deeper than the agent watches (its path ${DEEP_MAX} bytes or more, PATH_MAX is 4096): nothing in it is sent`;
const CONTROL_IN_NAME = 'name holds a control character (a newline, a tab, …)';
const PAST_MAX = 10_000;
/** How long a created file may wait for its close before sweepWaiting() looks whether anyone still writes it. */
const WAITING_CHECK_MS = 2000;
/** The longest pause between two looks at a file that is still being written (sweepWaiting()). */
const WAITING_RECHECK_MAX_MS = 30_000;

/** Names left aside by a killed agent that are said one by one per rescan; more are counted in one line. */
const ASIDES_SAID = 10;

export class Catalog {
  /** Keys are the latin1 form of a path's bytes (relative to the root): any name is a key. */
  #byPath = new Map<string, FileEntry>();
  #byId = new Map<string, FileEntry>();
  #refused = new Map<string, { path: string; reason: string; bytes: string }>();
  /**
   * Files being written (created and not yet closed, or found open for writing by a scan), and files whose
   * announced id went stale without an event (suspect()), with when sweepWaiting() looks at them next (ms)
   * and the pause it waited before that.
   */
  #waiting = new Map<string, { due: number; pause: number }>();
  /**
   * Entries no longer current (their file was rewritten, deleted or acknowledged), the latest PAST_MAX of them:
   * a late request for such an id is answered 410 / `changed` or `gone`, not as an id never heard of.
   */
  #past = new Map<string, FileEntry>();
  /**
   * Files the agent put back under their names after taking them by mistake while deleting an acknowledged one
   * (SourceFiles.remove): link(2) says only "created", so their next "created" event is taken as "complete".
   * (One put back by rename, on a file system without hard links, is "complete" by itself; its mark goes at
   * the next rescan, or takes a later "created" of that name as complete: then the file is announced early,
   * and its changed id keeps it from being placed until its close announces it again.)
   */
  #restored = new Set<string>();
  /**
   * Aside names (latin1 keys) of files put back because their writer still had them open after an
   * acknowledgement (stillWritten), with the names they have again: that writer's close is reported under the
   * aside name, and announces the file under its own.
   */
  #closesAs = new Map<string, string>();
  /**
   * Names (latin1) a file still being written was put back under by rename(2) (stillWritten): the MOVED_TO that
   * rename makes is not its writer's close, which comes under that name later.
   */
  #movedBack = new Set<string>();
  /**
   * Entries a scan announced complete (not the kernel's word): the close that completed each may still be on
   * its way, and is not a rewrite (#consider).
   */
  #closeDue = new WeakSet<FileEntry>();
  /** Names whose file holds another version than its entry, of the same id (newVersion). */
  #newVersions = new Set<string>();
  /** During a rescan, the entries before it (their rewrite counts). */
  #prior: Map<string, FileEntry> | undefined;
  /** New directories not yet looked into (#scanNewDirs), and the turn of the loop that will. */
  #newDirs: Buffer[] = [];
  #newDirsTimer: NodeJS.Immediate | undefined;
  /** The files on disk, reached without following links (docs/threat-model.md): the server reads and deletes through it too. */
  readonly files: SourceFiles;
  /** Directories a furkad on this host places into: nothing below them is announced (furkad-targets.ts). */
  readonly #furkadTargets: FurkadTargets;

  /** Raised for every announcement, to be passed to the clients whose source covers it. */
  readonly announced = new Topic<Announcement>();
  /** Raised after each scan with the directories it walked (identity -> path, watch-check.ts): the watcher checks they are watched. */
  readonly walked = new Topic<Map<DirId, Buffer>>();
  /**
   * Directories whose watch is not known to be in place (Watcher.unwatched): a barrier looks into them, as the
   * kernel's stream of events, which the barrier's mark follows, says nothing of their files.
   */
  unwatched: () => Buffer[] = () => [];
  /**
   * Whether every directory below the root is known to be watched (Watcher.everyDirWatched, main.ts): only then
   * are directory handles kept between operations (source-files.ts). Not known until said.
   */
  allWatched: () => boolean = () => false;
  /**
   * Makes sure the root watched is the root as it is now (Watcher.checkRoot, main.ts): one replaced by a mount is
   * watched anew, and the rescan after that finds what is in it. Asked before a barrier's mark is placed (A5).
   */
  checkRoot: () => void = () => undefined;

  constructor(readonly root: string, readonly filter: NameFilter, private readonly log: Logger) {
    this.files = new SourceFiles(root, () => this.allWatched());
    this.#furkadTargets = new FurkadTargets((dir) => isFurkadStaging(this.files.lstat(dir === '' ? STAGING_NAME : `${dir}/${STAGING_NAME}`)), (dir) => {
      this.log.warn({ dir: Buffer.from(dir, 'latin1').toString('utf8') || '.' }, `not announcing anything below ${dir === '' ? 'the root' : Buffer.from(dir, 'latin1').toString('utf8')}: ` +
        `it is a furkad's target (it holds ${STAGING_NAME}), where a furkad on this host places the files it fetched; announced, each would ` +
        "be fetched again and placed one level deeper, for ever. Give this agent a root that holds the detector's files alone (README, test box)");
    });
  }

  get known(): number { return this.#byPath.size; }
  get waiting(): number { return this.#waiting.size; }

  byId(id: string): FileEntry | undefined {
    return this.#byId.get(id) ?? this.#past.get(id);
  }

  /**
   * The entry of `id` named `path` (below the root): that name's own entry if it is of this id (a file with two
   * names, hard links, has one per name), else the id's (the name it has now after a rename, or one forgotten).
   */
  byIdAt(id: string, path: string): FileEntry | undefined {
    const here = this.#byPath.get(keyOf(path));
    return here?.id === id ? here : this.byId(id);
  }

  /** Whether `entry` is the one its name has now (not one forgotten: deleted, or gone). */
  current(entry: FileEntry): boolean {
    return this.#byPath.get(keyOf(entry.path)) === entry;
  }

  /** Everything a newly connected client is told first: complete files and refused names. */
  *listing(): Iterable<Announcement> {
    // Paced by the client (server.ts): a rescan meanwhile puts a new map in place, whose entries are the ones to
    // send (a stale id after a newer live line would replace it at furkad); what only the new map has, the
    // rescan announces itself.
    for (const key of this.#byPath.keys()) {
      const entry = this.#byPath.get(key);
      if (entry) yield { t: 'file', entry };
    }
    for (const r of this.#refused.values()) yield { t: 'refused', ...r };
  }

  /**
   * Puts barrier `id` into the kernel's event stream: its mark's close comes after every file completed before
   * now, and when it comes, `{t:'barrier'}` is announced (barrier.ts). Throws if the mark cannot be made (a full
   * or missing root): then no barrier line comes.
   */
  placeBarrier(id: string): void {
    // A root replaced under the agent (a file system mounted on it) that no check has found yet: its old watches
    // would pass the mark (made through a handle on the old root) without a word of the new root's files. Watched
    // anew first, the mark is in the new root, and the rescan after the new walk finds it after every file there.
    this.checkRoot();
    this.files.createMark(barrierName(id));
  }

  /**
   * Compares the file at an entry's path with the entry (a link on the way or in its place is not the file).
   * One its name has a newer entry of (a rewrite the file system cannot tell, baseId) has changed.
   */
  sameness(entry: FileEntry): Sameness {
    if (this.rewritten(entry)) return 'changed';
    return this.files.sameness(entry.path, entry.id);
  }

  /**
   * The file of `entry`, of its id still, is not what was sent for it (server.ts compared ctimes or bytes
   * before deleting it): rewritten in place with the same size and mtime, its writer's close not read yet, or
   * taken for the close that completed it. Announced again as a new version, unless that happened meanwhile
   * (or another file has the name now).
   */
  newVersion(entry: FileEntry): void {
    if (!this.current(entry) || this.files.lstat(Buffer.from(entry.path))?.ino !== entry.ino) return;
    const key = keyOf(entry.path);
    this.#newVersions.add(key);
    this.#complete(Buffer.from(entry.path));
    this.#newVersions.delete(key);
  }

  /** Whether a newer version of `entry`'s file is announced under its name, one the file system cannot tell apart. */
  rewritten(entry: FileEntry): boolean {
    const now = this.#byPath.get(keyOf(entry.path));
    return now !== undefined && now.id !== entry.id && baseId(now.id) === baseId(entry.id);
  }

  /** `rel` was put back after an acknowledgement took it by mistake: announced again on its "created" event. */
  restored(rel: string): void {
    this.#restored.add(keyOf(rel));
  }

  /** Drops an entry whose file was deleted (by an ack) or is known gone. */
  forget(entry: FileEntry): void {
    const key = keyOf(entry.path);
    if (this.#byPath.get(key) === entry) this.#byPath.delete(key);
    if (this.#byId.get(entry.id) === entry) this.#byId.delete(entry.id);
    this.#past.delete(entry.id);
    this.#past.set(entry.id, entry);
    if (this.#past.size > PAST_MAX) this.#past.delete(this.#past.keys().next().value as string);
  }

  /**
   * Full rescan (start, watcher restart, event queue overflow): the table becomes what is on disk now. Every
   * file no process holds open for writing is announced again, then `synced`. Writers are looked up after
   * the walk: a file opened during it is skipped (and announced on its close), and one closed during it was
   * stat'ed at a size it no longer has, so its id will never match (410) and its close announces it again.
   */
  rescan(): void {
    // It walks every directory: new ones waiting to be looked into are among them.
    this.#newDirs.length = 0;
    this.files.forgetRoot();
    this.#furkadTargets.clear();
    this.#restored.clear();
    let dirs = new Map<DirId, Buffer>();
    const deep: Buffer[] = [];
    const tooDeep = (d: Buffer): void => { deep.push(d); };
    let found = scanFiles(this.root, Buffer.alloc(0), dirs, tooDeep);
    // Files an agent killed in the middle of a deletion left aside: finished first, and a file put back is found again.
    if (this.#recoverAsides(found)) found = scanFiles(this.root, Buffer.alloc(0), (dirs = new Map()), tooDeep);
    const writers = writersOf(found);
    // Rewrite counts (#consider) outlive a rescan: the file, unchanged, keeps the id it was announced by.
    this.#prior = this.#byPath;
    this.#byPath = new Map();
    this.#byId.clear();
    const wasRefused = new Map(this.#refused);
    this.#refused.clear();
    this.#waiting.clear();
    const barriers: string[] = [];
    try {
      for (const f of found) {
        const barrier = barrierOf(f.rel);
        if (barrier !== undefined) {
          // A mark whose close this scan replaces (the kernel's queue overflowed, or the watch was restarted):
          // it is passed once everything found is announced. One left by an agent that was killed is just removed.
          barriers.push(barrier);
          continue;
        }
        this.#consider(f, writers, true);
      }
    } finally {
      this.#prior = undefined;
    }
    for (const d of new Set(deep.map((b) => b.toString('latin1')))) this.#refuse(d, Buffer.from(d, 'latin1'), TOO_DEEP);
    for (const [key, r] of wasRefused) if (!this.#refused.has(key)) this.announced.emit({ t: 'unrefused', path: r.path, bytes: r.bytes });
    this.log.debug({ known: this.known, waiting: this.waiting }, 'rescanned');
    for (const id of barriers) this.#passBarrier(id, true);
    this.announced.emit({ t: 'synced' });
    this.walked.emit(dirs);
  }

  /**
   * Aside names among `found` (an agent was killed between taking an acknowledged file aside and deleting it):
   * each is finished (SourceFiles.recoverAside). True if a file was put back under a name of its own.
   */
  #recoverAsides(found: Found[]): boolean {
    let restored = false;
    // A deletion in progress (its acknowledgement waits for the kernel's answer) is not a killed agent's leftover.
    const asides = found.filter((f) => isAsideName(f.rel) && !this.files.inFlight(f.rel));
    if (asides.length === 0) return false;
    // Which of them some process still writes: one walk of /proc for all of them, not one each. A user can make
    // such names (hard links to a file of theirs held open): a walk each made every rescan, and the agent's start,
    // take a minute for a thousand of them, with the event loop held (found by a hostile tester).
    const writing = filesBeingWritten(new Set(asides.map((f) => fileKey(f.stat))));
    let leftForAPerson = 0;
    for (const f of asides) {
      const shown = f.rel.toString('utf8');
      let done;
      try {
        done = this.files.recoverAside(f.rel, (t) => writing.has(t.file));
      } catch (e) {
        this.log.error({ err: e, path: shown }, 'cannot finish the deletion an earlier agent left undone; left as it is');
        continue;
      }
      if (done.outcome === 'deleted') {
        this.log.info({ path: shown }, 'an acknowledged file an earlier agent had taken aside to delete is deleted now');
      } else if (done.outcome === 'restored' && done.written) {
        restored = true;
        if (++leftForAPerson <= ASIDES_SAID) {
          this.log.warn({ path: shown, restoredAs: done.as }, 'an acknowledged file an earlier agent had taken aside to delete is still being written: put back, announced again when its writer closes it');
        }
      } else if (done.outcome === 'restored') {
        restored = true;
        // Put back with link(2), which the kernel reports as "created" only: taken as complete then. By rename(2)
        // its MOVED_TO does (and the rescan that follows finds it).
        if (!done.renamed) this.restored(done.as);
        this.log.warn({ path: shown, restoredAs: done.as }, 'a file an earlier agent took aside by mistake while deleting an acknowledged one is put back');
      } else if (++leftForAPerson <= ASIDES_SAID) {
        this.log.warn({ path: shown }, 'a file set aside for deletion by an agent that was killed, whose name does not say which file it was: ' +
          'either an acknowledged file or one to be put back under its name; left as it is, for a person to look at');
      }
    }
    if (leftForAPerson > ASIDES_SAID) this.log.warn({ more: leftForAPerson - ASIDES_SAID }, 'more such names left as they are (not each said)');
    return restored;
  }

  event(e: WatchEvent): void {
    switch (e.kind) {
      case 'overflow':
        this.log.warn('kernel event queue overflowed: rescanning');
        this.rescan();
        return;
      case 'root-gone':
        this.log.error({ root: this.root }, 'the root was deleted or moved away; waiting for it to be back');
        this.files.forgetRoot();
        this.#byPath.clear();
        this.#byId.clear();
        for (const r of this.#refused.values()) this.announced.emit({ t: 'unrefused', path: r.path, bytes: r.bytes });
        this.#refused.clear();
        this.#waiting.clear();
        this.#newDirs.length = 0;
        this.#closesAs.clear();
        this.#movedBack.clear();
        return;
      case 'created':
        if (this.#restored.delete(e.rel.toString('latin1'))) return this.#complete(e.rel);
        if (!this.#skips(e.rel)) this.#wait(e.rel.toString('latin1'));
        return;
      case 'complete': {
        // Only a close: the agent's own rename of the file to that name (MOVED_TO) is reported as complete too.
        const putBack = e.closed ? this.#closesAs.get(e.rel.toString('latin1')) : undefined;
        if (putBack !== undefined) {
          // The writer of a file kept after its acknowledgement closed it (under the aside name it had then).
          this.#closesAs.delete(e.rel.toString('latin1'));
          this.log.info({ path: Buffer.from(putBack, 'latin1').toString('utf8') }, 'the writer of a file kept after its acknowledgement closed it: announced again');
          return this.#complete(Buffer.from(putBack, 'latin1'));
        }
        // The rename that put back a file its writer still holds: it waits for that writer (sweepWaiting, its close).
        if (!e.closed && this.#movedBack.delete(e.rel.toString('latin1'))) return this.#wait(e.rel.toString('latin1'));
        const barrier = barrierOf(e.rel);
        if (barrier !== undefined) return this.#passBarrier(barrier);
        return this.#complete(e.rel, e.closed === true);
      }
      case 'dir-new':
        // A directory moved onto an empty one of the same name replaces it with no other event.
        this.files.forgetDir(e.rel);
        this.#furkadTargets.dirGone(e.rel);
        this.#furkadTargets.dirNew(e.rel);
        // Files made in it before inotifywait's watch on it existed have no events: looked for after this
        // turn of the loop, together with every other directory that came meanwhile (one walk of /proc for all).
        this.#newDirs.push(e.rel);
        this.#newDirsTimer ??= setImmediate(() => this.#scanNewDirs());
        return;
      case 'gone':
        this.#drop(e.rel.toString('latin1'));
        return;
      case 'dir-gone': {
        this.files.forgetDir(e.rel);
        this.#furkadTargets.dirGone(e.rel);
        const prefix = `${e.rel.toString('latin1')}/`;
        for (const key of [...this.#byPath.keys(), ...this.#refused.keys(), ...this.#waiting.keys()]) {
          if (key.startsWith(prefix)) this.#drop(key);
        }
        return;
      }
    }
  }

  /**
   * Looks for files in the directories that came since the last look (dir-new): each walked once (one below
   * another that came too is walked with it), and one walk of /proc for the writers of all their files. A run
   * of 800 new directories took one walk each before (~13 ms each here with maps: seconds in all).
   */
  #scanNewDirs(): void {
    if (this.#newDirsTimer) clearImmediate(this.#newDirsTimer);
    this.#newDirsTimer = undefined;
    const dirs = this.#scanDirs(this.#newDirs.splice(0));
    if (dirs.size > 0) this.walked.emit(dirs);
  }

  /**
   * Looks again for new files in directories inotifywait does not watch (Watcher.unwatched): nothing else
   * would tell of them until it is run again. Not passed on to the watcher's check: they are checked already.
   */
  scanUnwatched(rels: Buffer[]): void {
    // No event says when a directory below one of these is renamed or removed: no handle of them is kept.
    for (const rel of rels) this.files.forgetDir(rel);
    this.#scanDirs(rels, monotonicMs());
  }

  /**
   * Announces the new and changed files below `rels` (each walked once: one below another is walked with it),
   * with one walk of /proc for the writers of those. With `waitingBefore`, files waiting for their close are
   * looked at only once due then (sweepWaiting's pace), not at every look. Returns the directories walked
   * (identity -> path).
   */
  #scanDirs(rels: Buffer[], waitingBefore?: number): Map<DirId, Buffer> {
    const dirs = new Map<DirId, Buffer>();
    const keys = new Set(rels.map((r) => r.toString('latin1')));
    const found: Found[] = [];
    // The root ('') holds them all.
    for (const key of keys.has('') ? [''] : keys) {
      // Below another directory of this batch: walked with it.
      let under = false;
      for (let at = key.lastIndexOf('/'); at > 0 && !under; at = key.lastIndexOf('/', at - 1)) under = keys.has(key.slice(0, at));
      if (!under) {
        found.push(...scanFiles(this.root, Buffer.from(key, 'latin1'), dirs, (d) => {
          if (!this.#refused.has(d.toString('latin1'))) this.#refuse(d.toString('latin1'), d, TOO_DEEP);
        }));
      }
    }
    // Files announced as they are now, or refused, are passed over before the walk of /proc (~ms): a directory
    // looked into again and again while it has no watch costs a listing.
    const fresh = found.filter((f) => {
      const key = f.rel.toString('latin1');
      if (this.#refused.has(key) || this.#skips(f.rel) || baseId(this.#byPath.get(key)?.id ?? '') === fileId(f.stat)) return false;
      return waitingBefore === undefined || (this.#waiting.get(key)?.due ?? 0) <= waitingBefore;
    });
    if (fresh.length > 0) {
      const writers = writersOf(fresh);
      for (const f of fresh) this.#consider(f, writers, false);
    }
    return dirs;
  }

  #wait(key: string): void {
    if (!this.#waiting.has(key)) this.#waiting.set(key, { due: monotonicMs() + WAITING_CHECK_MS, pause: WAITING_CHECK_MS });
  }

  /**
   * The file at `path` is no longer the one announced, and the kernel may never say more (a bare utime(2) after
   * the announcement changes the id without a close): looked at by the next sweepWaiting().
   */
  suspect(path: string): void {
    this.#waiting.set(keyOf(path), { due: 0, pause: WAITING_CHECK_MS });
  }

  /**
   * The announced file of `entry` is still open for writing somewhere (lease-check.ts): a writer with a second
   * descriptor has more to put in it. Forgotten, so that its next close announces it again even if nothing
   * changed, and looked at by sweepWaiting() meanwhile.
   */
  stillWritten(entry: FileEntry, putBack?: { aside: string; as: string }, renamedBackAs?: string): void {
    this.forget(entry);
    this.suspect(entry.path);
    if (renamedBackAs !== undefined) {
      this.suspect(renamedBackAs);
      this.#movedBack.add(keyOf(renamedBackAs));
      if (this.#movedBack.size > PAST_MAX) this.#movedBack.delete(this.#movedBack.values().next().value as string);
    }
    if (putBack) {
      // Taken aside and put back with link(2): its writer's descriptor still names the aside name, and the
      // kernel reports that writer's close under it.
      this.#closesAs.set(Buffer.from(putBack.aside).toString('latin1'), Buffer.from(putBack.as).toString('latin1'));
      if (this.#closesAs.size > PAST_MAX) this.#closesAs.delete(this.#closesAs.keys().next().value as string);
    }
  }

  /**
   * Files waiting longer than WAITING_CHECK_MS for the event that completes them, and suspects: each that no
   * process holds open for writing (one walk of /proc for all of them) is complete and announced. That is a
   * name made by link(2) (a writer publishing with link+unlink, a user's hard link, `cp -al`): the kernel says
   * only "created" of it, never a close. One still open for writing waits on (an in-place writer's pause).
   * `all`: every waiting file, due or not (a barrier).
   */
  sweepWaiting(now = monotonicMs(), all = false): void {
    const due = [...this.#waiting].filter(([, w]) => all || w.due <= now).map(([key]) => key);
    if (due.length === 0) return;
    const found: Array<{ key: string; rel: Buffer; stat: BigIntStats; file: string }> = [];
    for (const key of due) {
      const rel = Buffer.from(key, 'latin1');
      const stat = this.files.lstat(rel);
      if (stat?.isFile()) found.push({ key, rel, stat, file: fileKey(stat) });
      else this.#drop(key);
    }
    // By the files themselves, not their names: a link's writer has it open under the other name.
    const writing = filesBeingWritten(new Set(found.map((f) => f.file)));
    for (const f of found) {
      if (writing.has(f.file)) {
        if (all && (this.#waiting.get(f.key)?.due ?? 0) > now) continue; // not due: its pause stays as it was
        // Written still: looked at again after a pause that grows while it lasts (its close announces it anyway).
        const pause = Math.min((this.#waiting.get(f.key)?.pause ?? WAITING_CHECK_MS) * 2, WAITING_RECHECK_MAX_MS);
        this.#waiting.set(f.key, { due: now + pause, pause });
      } else {
        this.#consider({ rel: f.rel, stat: f.stat }, undefined, false);
      }
    }
  }

  /**
   * Barrier `id`'s mark came: everything before it is announced. The mark goes (A5). `rescanned`: found by a
   * rescan, which has just looked at everything.
   */
  #passBarrier(id: string, rescanned = false): void {
    // Files complete before the mark that no event of the kernel's stream stands for are looked for first: those
    // of new directories not yet looked into, of directories inotifywait may not watch (it gives one up when a
    // file in it is renamed while it sets the watch up), and names made by link(2), waiting for their sweep.
    try {
      if (!rescanned) {
        for (const rel of this.unwatched()) {
          this.files.forgetDir(rel);
          this.#newDirs.push(rel);
        }
        this.#scanNewDirs();
        this.sweepWaiting(monotonicMs(), true);
      }
    } catch (e) {
      // The barrier line comes all the same: furkad would otherwise wait for it, and then go on without.
      this.log.error({ err: e, barrier: id }, 'cannot look for files without events before a barrier');
    }
    try {
      const restoredAs = this.files.removeMark(barrierName(id))?.restoredAs;
      if (restoredAs !== undefined) this.log.warn({ barrier: id, restoredAs }, 'a file was renamed onto a barrier mark while it was being deleted: it is kept');
    } catch (e) {
      this.log.warn({ err: e, barrier: id }, 'cannot remove a barrier mark');
    }
    this.announced.emit({ t: 'barrier', id });
  }

  /**
   * A file the kernel says is complete (`closed`: by a writer's close): looked at without following links;
   * gone (or only reachable through one): dropped.
   */
  #complete(rel: Buffer, closed = false): void {
    // A name never announced (the agent's own aside names among them: each deletion renames one in) is not looked at.
    if (this.#skips(rel)) return;
    const stat: BigIntStats | undefined = this.files.lstat(rel);
    if (!stat) return this.#drop(rel.toString('latin1'));
    this.#consider({ rel, stat }, undefined, false, true, closed);
  }

  #skips(rel: Buffer): boolean {
    return this.filter.skipsPath(rel.toString('utf8')) || this.#furkadTargets.contains(rel);
  }

  #drop(key: string): void {
    const entry = this.#byPath.get(key);
    if (entry) this.forget(entry);
    const refused = this.#refused.get(key);
    if (refused && this.#refused.delete(key)) this.announced.emit({ t: 'unrefused', path: refused.path, bytes: refused.bytes });
    this.#waiting.delete(key);
  }

  /** A complete file whose name cannot be delivered: said (logged once), and told to every client; it stays here. */
  #refuse(key: string, rel: Buffer, reason: string): void {
    const shown = rel.toString('utf8');
    const bytes = rel.toString('hex');
    if (!this.#refused.has(key)) this.log.warn({ path: shown, bytes }, `refused: ${reason}; it stays on the detector`);
    this.#refused.set(key, { path: shown, reason, bytes });
    this.announced.emit({ t: 'refused', path: shown, reason, bytes });
  }

  /**
   * One regular file that may be complete. `writers` (from a scan: fileKey()s) leaves out files open for writing;
   * `again` announces even an id already announced for that path (a rescan re-announces everything); `live`:
   * the kernel just said it is complete.
   */
  #consider(f: Found, writers: Set<string> | undefined, again: boolean, live = false, closed = false): void {
    if (!f.stat.isFile() || this.#skips(f.rel)) return;
    const key = f.rel.toString('latin1');
    if (writers?.has(fileKey(f.stat))) {
      this.#wait(key);
      return;
    }
    this.#waiting.delete(key);
    const text = utf8(f.rel);
    if (text === undefined || hasControl(text)) {
      this.#refuse(key, f.rel, text === undefined ? NOT_UTF8 : CONTROL_IN_NAME);
      return;
    }
    const base = fileId(f.stat);
    const old = this.#byPath.get(key);
    let id = base;
    const same = old ?? this.#prior?.get(key);
    if (same && baseId(same.id) === base) {
      const known = this.#newVersions.delete(key);
      if (old && (known || (live && closed))) {
        // Closed by a writer again with the same inode, size and mtime: rewritten within one tick of the
        // kernel's coarse clock, or the close of what a scan found complete, still on its way. The first close
        // after a scan is taken as the latter; any other as a new version, which must not be deleted as the
        // one announced (A4): a new id, one more in the count. So is one whose bytes are known to differ.
        if (this.#closeDue.delete(old) && !known) return;
        id = `${base}:${rewrites(old.id) + 1}`;
      } else if (old && !again) {
        return;
      } else {
        id = same.id;
      }
    }
    if (old) this.forget(old);
    const entry: FileEntry = {
      id, path: text, ino: f.stat.ino, size: f.stat.size, mtimeNs: f.stat.mtimeNs, mode: Number(f.stat.mode & 0o7777n),
    };
    this.#byPath.set(key, entry);
    this.#byId.set(id, entry);
    if (!live) this.#closeDue.add(entry);
    this.announced.emit({ t: 'file', entry, live });
  }
}

/**
 * Which of the files a scan found some process writes (by the files themselves: a writer holding one under
 * another name, or under the hidden name it had while it was taken aside, counts too).
 */
function writersOf(found: Found[]): Set<string> {
  return filesBeingWritten(new Set(found.filter((f) => f.stat.isFile()).map((f) => fileKey(f.stat))));
}

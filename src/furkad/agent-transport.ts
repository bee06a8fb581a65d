// The agent transport: files the detector's furka-agent announces as complete (the kernel said so) are fetched
// over one HTTP/2 connection into staging, placed by the loop, and acknowledged so the agent deletes their
// sources (A2–A5, docs/agent-protocol.md). No polling: a run starts when something was announced.
import { readdir, rm, unlink } from 'node:fs/promises';
import { closeSync, fchmodSync, fchownSync } from 'node:fs';
import { setFileTimes } from '../common/file-times.js';
import * as path from 'node:path';
import { AgentClient, FileGone, type Announced } from './agent-client.js';
import { arrival, shownSent } from '../common/checksum-trailer.js';
import { ShiftDir } from './shift-dir.js';
import { isStagingName } from './shift-sweep.js';
import { STAGING_NAME } from '../common/paths.js';
import { tagged } from '../common/checksum.js';
import { baseId } from '../common/file-id.js';
import { StagedProvenance } from './staged-provenance.js';
import { placement, withSum, type AgentPlaced, type Placed, type SetAside } from './agent-placed.js';
import type { Logger } from '../common/logger.js';
import type { Assignment } from './shift.js';
import type { OwedShift, RunContext, RunOutcome, Transport } from './transport.js';
import { wakeOrAbort } from '../common/abort.js';
import { availableBytes, roomOf } from '../common/statfs.js';
import { makeDirs } from '../common/make-dirs.js';
import { noRoomMessage, RoomNotice } from './room-notice.js';
import { monotonicMs } from '../common/monotonic.js';
import { DEFAULT_AGENT_KEY_FILE, readKeyFile } from '../common/shared-key.js';
import { UnplacedFiles } from './unplaced-files.js';
import { removeEmptiedParents } from './staging-dirs.js';
import { escapeName } from './rsync-names.js';
import { keyFileOutcome, ppuSideOf } from './ppu-side.js';
import { hostPort } from './host-lookup.js';

/** An acknowledgement that failed on a connection still up is sent again after a pause doubling from the first to the last (ms). */
const ACK_RETRY_MS = [1000, 30_000] as const;
/** Ids in one acknowledgement: its body stays far below the agent's limit on it. */
const MAX_ACK = 1000;
/**
 * Files fetched at once on the one connection: IN_FLIGHT whatever their size, and up to IN_FLIGHT_MAX while
 * the bytes being fetched stay within IN_FLIGHT_BYTES (each body is held whole in memory, here and at the
 * agent). Small files need more than 8: each waits a round trip (the agent's check that no one still writes it,
 * the placement here), and at 8 both furkad and the agent sat idle 40-60 % of a 10 000-file pull
 * (BENCHMARKS.md, session 17). Pushes stay at IN_FLIGHT.
 */
const IN_FLIGHT = 8;
const IN_FLIGHT_MAX = 24;
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** Files from this size on are fetched only when the PPU ramdisk has room for them (#roomFor). */
const ROOM_LOOK_BYTES = 8 * 1024 * 1024;
/**
 * How long a run goes on taking files announced after it started. Bounded, so that the loop's other work
 * between runs (files of an ended shift tried again, the sweep, the status) is never held up for long.
 */
const EXTEND_MS = 1000;
/** Ids whose first announcement is remembered (#learned): far more than a detector ramdisk holds. */
const LEARNED_MAX = 200_000;
/**
 * Placed files whose name went before the agent deleted them (#leftName): at most those placed and not yet
 * acknowledged when a directory was renamed, far fewer than this.
 */
const LEFT_NAME_MAX = 10_000;
/**
 * A file that arrived damaged is fetched again: the first time by the next run, then after a pause that
 * doubles from the first to the last of these (ms) while it keeps arriving damaged (I2).
 */
const REFETCH_MS = [100, 10_000] as const;

/**
 * How long a shift change waits for the agent's barrier (A5). It comes in a millisecond or two; an agent that
 * does not pass it in this time is a busy or broken one, and the change goes on with the moment it was asked for.
 */
const BARRIER_MAX_MS = 2000;

/** #fetchOne's answer for a file whose bytes arrived other than the agent sent them. */
const DAMAGED = Symbol('damaged');

/** A placed file's id and, where known, the checksum of what was placed: what its acknowledgement carries. */
type Noted = Omit<Placed, 'rel'>;

/** An announcement waiting to be taken, and when furkad learned of it (A5: that decides its shift). */
interface Waiting extends Announced {
  learnedAt: number;
}

export class AgentTransport implements Transport {
  #client: AgentClient | undefined;
  /** Announced, not yet taken, by path: a newer announcement of the same path replaces an older one. */
  #waiting = new Map<string, Waiting>();
  /** Names the agent will not send (not UTF-8, control characters): by their bytes, each with the path shown (below the source). */
  readonly #refused = new Map<string, string>();
  /**
   * Placed files' ids and checksums by path, until their acknowledgement is sent (afterPlaced), which carries
   * both; also those that could not be placed.
   */
  #placed = new Map<string, Noted>();
  /** Files the loop set aside for an ended shift (forget), by asideKey: acknowledged once it places them, never fetched again. */
  #setAside = new Map<string, Noted>();
  #wake: (() => void) | undefined;
  /**
   * While a run lasts: starts another worker for a file announced meanwhile (run), given when furkad learned of
   * it, or for whatever may have become takeable (no argument).
   */
  #more: ((learnedAt?: number) => void) | undefined;
  /** Ids to acknowledge, sent together by the one acknowledgement in flight (#ack). */
  #toAck: Placed[] = [];
  /**
   * Paths being fetched or placed: a path announced again meanwhile (a rescan, a rewrite) waits until that is
   * over. Two fetches of one path would share its staging name, and one could place the other's half-written file.
   */
  #busy = new Set<string>();
  /**
   * Files in staging that could not be placed, and announcements skipped because their files are set aside, by
   * placement (id and path): what to fetch again if the copy kept for an ended shift is lost (keptCopyLost).
   */
  #parked = new Map<string, Waiting>();
  /** Files in staging that could not be placed: offered again by this transport after a growing wait (unplaced-files.ts). */
  readonly #unplaced = new UnplacedFiles<Waiting>();
  /**
   * When furkad first learned of each announced id, across announcements again (a rescan) and reconnects: the
   * time that decides its shift (A5), which an announcement made again after a shift change was asked for must
   * not move into the next shift. Forgotten once the file is placed; the oldest go beyond LEARNED_MAX.
   */
  #learned = new Map<string, number>();
  /**
   * The connection's listing is in (the agent said `synced`). Until then, after a reconnect (a fetch in flight cut
   * short by a stop or shift change closes the connection), files learned of before are not yet waiting again.
   */
  #synced = false;
  /**
   * Ids learned of before a shift change that its drain did not take (a full PPU ramdisk, the drain out of time),
   * with the ended shift they belong to (owe(), A5): fetched with its owner and set aside for it, never placed in
   * a later one. Kept in agent-placed.jsonl (all of them, whether waiting or learned before a lost connection): a
   * furkad started later fetches them for that shift too. Forgotten as #learned is, and when the agent no longer lists them.
   */
  #owed = new Map<string, OwedShift>();
  /** Directories below staging known to exist (#fetchOne). */
  #stagingDirs = new Set<string>();
  /** Ids being fetched or placed, each with the name it was taken under (#otherName). */
  #busyIds = new Map<string, string>();
  /**
   * Placed files whose name was gone when their acknowledgement came (the agent answered `moved` or `gone`):
   * renamed on the detector after their fetch, a renamed directory's files among them. By id, with the name
   * placed as and the checksum of what was placed: the file announced under its new name is acknowledged with
   * that checksum, not placed a second time (A4, #placedRenamed). The oldest go beyond LEFT_NAME_MAX.
   */
  #leftName = new Map<string, Placed>();
  /** Announcements (by path) that wait for the answer about another name of their file (#otherName). */
  #held = new Set<string>();
  /** Placements (id and path) whose acknowledgement is out, and those asked again on this connection (#otherName). */
  #acksOut = new Set<string>();
  #reacked = new Set<string>();
  #acking = false;
  /** Pause before an acknowledgement that failed on a connection still up is sent again (#ack); 0 after one succeeded. */
  #ackRetryMs = 0;
  /** A placement record could not be written (furkad's state_dir full), and none has been since (#record). */
  #stateFull = false;
  #lastDown = '';
  /** Why the connection was lost since the last run ended (unreachable): the loop shows it until a run reports. */
  #lost: string | undefined;
  /** Files (by id) whose last fetch arrived damaged: how often in a row, and not to be fetched before when (I2). */
  #damaged = new Map<string, { times: number; notBefore: number; path: string }>();
  /** This connection's agent sends no checksum furkad can check against: said once per connection. */
  #saidUnchecked = false;
  /** What the log says of files a fetch found no room for on the PPU ramdisk: each once until a run goes through (S4). */
  readonly #noRoom: RoomNotice;
  readonly #provenance: StagedProvenance;

  constructor(
    readonly id: string,
    private readonly placedStore: AgentPlaced,
    private readonly log: Logger,
  ) {
    this.#provenance = new StagedProvenance(id, log);
    this.#noRoom = new RoomNotice(id, log);
    // Set aside by an earlier furkad: still not to be fetched, and acknowledged once the loop places them.
    for (const f of placedStore.setAsideFiles(id)) this.#setAside.set(asideKey(f.usertime, f.rel), withSum({ id: f.id }, f.sum));
    // Owed to an ended shift at a change before a restart: still that shift's (A5).
    const shifts = new Map<string, OwedShift>();
    for (const { id: fileId, shift } of placedStore.owedFiles(id)) {
      let owed = shifts.get(shift.usertime);
      if (!owed) shifts.set(shift.usertime, (owed = { ...shift, usertime: BigInt(shift.usertime) }));
      this.#owed.set(fileId, owed);
    }
  }

  /**
   * Resolves once something was announced (a file, or a name refused or gone), the connection went down (the
   * next run reconnects), a damaged file's pause is over, or `signal` aborts.
   */
  async waitForWork(signal: AbortSignal): Promise<void> {
    const wait = Math.min(this.#untilReady(), this.#unplaced.untilDue());
    if (wait === 0 || !this.#client?.connected) return;
    let timer: NodeJS.Timeout | undefined;
    await wakeOrAbort((wake) => {
      this.#wake = wake;
      if (wait < Infinity) timer = setTimeout(wake, wait);
    }, signal);
    clearTimeout(timer);
    this.#wake = undefined;
  }

  wake(): void {
    this.#wake?.();
  }

  /** ms until a waiting file may be fetched: 0 now, Infinity when none is waiting. */
  #untilReady(): number {
    const now = monotonicMs();
    let wait = Infinity;
    for (const w of this.#waiting.values()) {
      if (this.#held.has(w.path)) continue; // #release wakes the loop
      const notBefore = this.#damaged.get(w.id)?.notBefore ?? 0;
      if (notBefore <= now) return 0;
      wait = Math.min(wait, notBefore - now);
    }
    return wait;
  }

  /**
   * A shift change was asked for: the agent's barrier says when furkad had heard of every file completed
   * before now (A5). Without it, a file closed a moment before the call and announced a moment after it
   * would go to the next shift.
   */
  async barrier(): Promise<number | undefined> {
    const client = this.#client;
    if (!client?.connected) {
      this.log.warn({ detector: this.id }, 'no connection to the agent at a shift change or stop, so no barrier: files it announces once back go to the next shift, even if completed before the change');
      return undefined;
    }
    try {
      return await client.passBarrier(BARRIER_MAX_MS);
    } catch (e) {
      this.log.warn({ detector: this.id, err: (e as Error).message },
        'no barrier from the agent at a shift change or stop: files announced after the change was asked for go to the next shift, even if completed just before it');
      return undefined;
    }
  }

  connected(): boolean {
    return this.#client?.connected === true;
  }

  pendingSince(since: number, _a?: Assignment, learnedBy = Infinity): boolean {
    // The drain's cutoff (the moment the shift change was asked for) bounds it too: what was announced after
    // that is the next shift's, not something the drain should wait for (A5).
    const by = Math.min(since, learnedBy);
    for (const w of this.#waiting.values()) if (w.learnedAt <= by) return true;
    // Connected again and the agent still listing: a file learned of by then and not placed since (one whose
    // fetch the stop or change cut short, a 2 GB HDF5 file, say) is announced again in a moment. Without this
    // the drain ended before it came, and a stop gave it to the next furkad's default shift, unsaid (A5, F6).
    if (this.#client?.connected && !this.#synced) for (const at of this.#learned.values()) if (at <= by) return true;
    return false;
  }

  async run(ctx: RunContext): Promise<RunOutcome> {
    const a = ctx.assignment;
    // Aborted (a stop, a shift change that stopped waiting, a drain out of time): nothing more is taken, and a connection still being made, or fetches
    // an agent that stopped answering leaves hanging, are cut by closing it (unacknowledged files are sent again).
    const cut = (): void => this.#client?.close();
    ctx.signal.addEventListener('abort', cut, { once: true });
    try {
      return await this.#run(ctx, a);
    } finally {
      ctx.signal.removeEventListener('abort', cut);
      // Said by this run's outcome from now on (unreachable).
      this.#lost = undefined;
    }
  }

  /**
   * Single-thread mode (F8), before the run takes the one transfer slot: the connection made (within the connect
   * timeout) and answering a ping. An agent that stopped answering (a frozen detector server) is retried with
   * back-off without ever holding the slot, and said so (`retrying`, why).
   */
  async answers(ctx: RunContext): Promise<RunOutcome | undefined> {
    const cut = (): void => this.#client?.close();
    ctx.signal.addEventListener('abort', cut, { once: true });
    let why: string | undefined;
    try {
      await this.#connected(ctx.assignment);
      why = await this.#client?.answers();
    } catch (e) {
      this.#lost = undefined;
      return { verdict: 'retry', ...keyFileOutcome('agent_key_file', e), transferred: 0, bytes: 0 };
    } finally {
      ctx.signal.removeEventListener('abort', cut);
    }
    // Cut short (a stop, a shift change that stopped waiting) it is no answer either: a run would connect anew.
    if (why === undefined) return undefined;
    this.#lost = undefined;
    return { verdict: 'retry', message: why, transferred: 0, bytes: 0 };
  }

  async #run(ctx: RunContext, a: Assignment): Promise<RunOutcome> {
    try {
      await this.#connected(a);
    } catch (e) {
      return { verdict: 'retry', ...keyFileOutcome('agent_key_file', e), transferred: 0, bytes: 0 };
    }
    await this.#placeAgain(ctx);
    const started = monotonicMs();
    // Placements (id and path) set aside for an ended shift: that name of the file is not fetched into this one.
    const aside = new Set([...this.#setAside].map(([key, n]) => placement(n.id, key.slice(key.indexOf('\n') + 1))));
    let transferred = 0;
    let bytes = 0;
    let failure: Error | undefined;
    /** Arrived damaged in this run: fetched again by the next run at the earliest (#fetchAgain). */
    const damagedHere = new Set<string>();
    /** Files being fetched by this run's workers, and their announced bytes. */
    let fetching = 0;
    let fetchingBytes = 0;
    /** The paths this run's workers took: their directories in staging go once the run's fetches have ended. */
    const fetched: string[] = [];
    /** A worker ended because the bytes were spent: more are started once some are free again. */
    let refused = false;
    /**
     * The next announced file to fetch in this run. What was announced before the run started belongs to its
     * shift (A5); so does what is announced while it lasts, since a shift change ends it first (wantsEnd). The
     * run goes on taking those as they come, without the round of a new run, unless another detector waits
     * for the licence's single slot (F8). A damaged file waits out its pause (I2).
     */
    /** Whether the run still takes files announced after it started (see take). */
    const extends_ = (now: number): boolean => now - started < EXTEND_MS && !ctx.othersWaiting();
    const take = (): Waiting | undefined => {
      if (failure || ctx.signal.aborted || ctx.wantsEnd()) return undefined;
      const now = monotonicMs();
      const extend = extends_(now);
      for (const w of this.#waiting.values()) {
        if (w.learnedAt > ctx.learnedBy) continue; // the next shift's (a drain run at a shift change, A5)
        if (w.learnedAt > started && !extend) continue;
        if ((this.#damaged.get(w.id)?.notBefore ?? 0) > now || damagedHere.has(w.id)) continue;
        if (this.#busy.has(w.path) || this.#held.has(w.path)) continue;
        // Beyond IN_FLIGHT only within the bytes: this worker ends, and the others take the rest.
        if (fetching >= IN_FLIGHT && fetchingBytes + w.size > IN_FLIGHT_BYTES) {
          refused = true;
          return undefined;
        }
        let was: Placed | 'wait' | undefined;
        try {
          // It may settle an intent of the other name (writes to state_dir): a full one fails the run, as below.
          was = this.#otherName(w);
        } catch (e) {
          failure ??= new Error(`cannot note the placement of ${w.path} in furkad's state_dir: ${(e as Error).message}`);
          return undefined;
        }
        if (was === 'wait') {
          this.#held.add(w.path);
          continue;
        }
        this.#waiting.delete(w.path);
        this.#pushWhileKeepingUp();
        try {
          if (this.#placedBefore(w)) continue;
          if (was) {
            this.#placedRenamed(w, was);
            continue;
          }
        } catch (e) {
          // Its placement record could not be written (a full state_dir): this run fails saying so, and the file
          // waits for the next, as one whose fetch failed. Thrown on, it would end furkad (and each restart).
          failure ??= new Error(`cannot note the placement of ${w.path} in furkad's state_dir: ${(e as Error).message}`);
          if (!this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
          return undefined;
        }
        if (aside.has(placement(w.id, w.path))) {
          this.#parked.set(placement(w.id, w.path), w);
          continue;
        }
        // Fetched again (announced again): what is in staging under its name is replaced, and placed as this.
        this.#unplaced.drop(w.path);
        return w;
      }
      return undefined;
    };
    const worker = async (): Promise<void> => {
      for (let w = take(); w; w = take()) {
        fetched.push(w.path);
        this.#busy.add(w.path);
        this.#busyIds.set(w.id, w.path);
        fetching++;
        fetchingBytes += w.size;
        try {
          // Learned of before a shift change its drain could not finish: that ended shift's, with its owner (A5).
          const owedTo = this.#owed.get(w.id);
          const owed = owedTo !== undefined && owedTo.usertime !== ctx.shift.usertime ? owedTo : undefined;
          let got: string | undefined | typeof DAMAGED;
          try {
            await this.#roomFor(ctx, w);
            got = await this.#fetchOne(ctx, w, owed);
          } finally {
            fetching--;
            fetchingBytes -= w.size;
          }
          if (refused && fetchingBytes < IN_FLIGHT_BYTES && !failure) {
            refused = false;
            this.#more?.();
          }
          if (got === DAMAGED) {
            damagedHere.add(w.id);
            this.#fetchAgain(w);
          } else if (got !== undefined && owed) {
            // Not this shift's bytes (Detectors counts files and bytes per shift), as the left-behind retry counts none.
            transferred++;
            if (await this.#setAsideOwed(ctx, w, got, owed)) aside.add(placement(w.id, w.path));
            else {
              failure ??= new Error(`cannot set ${w.path} aside for the earlier shift it belongs to (${owed.uid}:${owed.gid}); it is fetched again`);
              if (!this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
            }
          } else if (got !== undefined) {
            transferred++;
            bytes += w.size;
            // Known before complete() returns: the loop calls afterPlaced from inside it.
            this.#placed.set(w.path, { id: w.id, sum: got });
            try {
              this.placedStore.intend(this.id, w.id, ctx.dir.root, w.path, got);
            } catch (e) {
              // Not the PPU ramdisk's ENOSPC (#named): furkad's own state_dir is what is full.
              throw new Error(`cannot note the placement of ${w.path} in furkad's state_dir: ${(e as Error).message}`);
            }
            const placed = await ctx.complete([w.path], new Map([[w.path, tagged(got)]]));
            // One that could not be placed keeps its id: the loop may place it later (leaveBehind), then acknowledge it.
            if (!placed.placed.includes(w.path) && !placed.failed.includes(w.path)) {
              this.#placed.delete(w.path);
              // Nor its intent: it is fetched again, with an intent of its own. Kept, the intents of a state_dir too
              // full to note files for grimseld piled up with every run, until they alone filled the room freed
              // there, and nothing was placed any more (a record that fails to be written is dropped all the same).
              try {
                this.placedStore.dropIntent(this.id, w.id, w.path);
              } catch {
                // dropped in memory: what is written next (a rewrite from what is live) leaves it out
              }
            }
            // Not noted for grimseld (a full state_dir; the run fails): it waits again, as one whose fetch failed.
            // Nothing else would announce it again on this connection.
            if (![...placed.placed, ...placed.failed, ...placed.gone].includes(w.path) && !this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
            if (placed.failed.includes(w.path)) {
              this.#parked.set(placement(w.id, w.path), w);
              this.#unplaced.failed(w);
            }
          }
        } catch (e) {
          failure ??= await this.#named(e as NodeJS.ErrnoException, ctx, w);
          // Not taken: it waits again for the next run (a full ramdisk, a stream timed out: the connection may
          // well be up, and then nothing would announce it again), unless a newer version of it was announced.
          if (!this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
        } finally {
          this.#busy.delete(w.path);
          this.#busyIds.delete(w.id);
          this.#release();
        }
      }
    };
    // Up to IN_FLIGHT_MAX workers; one more is started for an announcement that comes while fewer are at work.
    await new Promise<void>((resolve) => {
      let active = 0;
      const more = (learnedAt?: number): void => {
        // A file announced once this run no longer takes new ones: the next run takes it. Started for it, a
        // worker's take() would walk every waiting file to find nothing, once per announcement of a burst.
        if (learnedAt !== undefined && learnedAt > started && !extends_(monotonicMs())) return;
        while (active < IN_FLIGHT_MAX && (active < IN_FLIGHT || fetchingBytes < IN_FLIGHT_BYTES) && this.#untilReady() === 0 && !failure) {
          active++;
          const before = fetching;
          void worker().finally(() => {
            if (--active > 0) return;
            this.#more = undefined;
            resolve();
          });
          // It took nothing (the worker's first take() runs before its first await): nor would the next.
          if (fetching === before) break;
        }
      };
      this.#more = more;
      more();
      if (active === 0) {
        this.#more = undefined;
        resolve();
      }
    });
    this.#noRoom.say();
    // Every fetch of the run has ended: the directories placing emptied in staging go (else staging kept an empty
    // one of every run directory delivered until the next shift change or restart; found by a hostile tester).
    await this.#removeEmptied(ctx.staging, fetched);
    if (failure) {
      return { verdict: 'retry', message: failure.message, transferred, bytes, ...ppuSideOf(failure, ctx.staging),
        ...((failure as NodeJS.ErrnoException).code === 'ENOSPC' ? { noRoom: true } : {}) };
    }
    // Every fetch found room: a file that does not fit later is news again.
    this.#noRoom.clear();
    return { verdict: 'ok', message: '', transferred, bytes, refused: [...this.#refused.values()] };
  }

  /**
   * Staged files the loop could not place, due again (unplaced-files.ts): offered as they are, never fetched
   * again. Placed, they are acknowledged (afterPlaced) and their sources go; not yet, they wait twice as long.
   * One gone from staging meanwhile is fetched again: its source was never acknowledged.
   */
  async #placeAgain(ctx: RunContext): Promise<void> {
    if (ctx.signal.aborted || ctx.wantsEnd()) return;
    const due: Waiting[] = [];
    for (const w of this.#unplaced.due()) {
      if (this.#busy.has(w.path)) continue;
      // Fetched again since, or let go of (set aside, placed): nothing of this one is left to offer.
      if (this.#placed.get(w.path)?.id !== w.id) this.#unplaced.drop(w.path);
      else due.push(w);
    }
    if (due.length === 0) return;
    for (const w of due) {
      this.#busy.add(w.path);
      this.#busyIds.set(w.id, w.path);
    }
    try {
      const sums = new Map<string, string>();
      for (const w of due) {
        const sum = this.#placed.get(w.path)?.sum;
        if (sum !== undefined) sums.set(w.path, tagged(sum));
      }
      const got = await ctx.complete(due.map((w) => w.path), sums);
      for (const w of due) {
        if (got.placed.includes(w.path)) {
          this.#unplaced.drop(w.path);
          continue;
        }
        // Not placed (or not noted: furkad's state_dir full): still in staging, offered again later.
        if (!got.gone.includes(w.path)) {
          this.#unplaced.failed(w);
          continue;
        }
        this.#unplaced.drop(w.path);
        this.#placed.delete(w.path);
        this.#parked.delete(placement(w.id, w.path));
        if (!this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
      }
    } finally {
      for (const w of due) {
        this.#busy.delete(w.path);
        this.#busyIds.delete(w.id);
      }
      this.#release();
    }
  }

  /**
   * A large file is fetched only if the PPU ramdisk has room for it now: else the fetch would fill the ramdisk to
   * its last byte before failing, and again at each retry, under every other writer there (other detectors, online
   * processing, grimseld's fill guard). The bound rsync's runs get from --max-size; a small file's fetch is tried
   * as it is (a look at the free space per file would cost more than such a failure). Fails as ENOSPC would.
   */
  async #roomFor(ctx: RunContext, w: Waiting): Promise<void> {
    if (w.size < ROOM_LOOK_BYTES) return;
    const free = await availableBytes(ctx.staging).catch(() => Infinity);
    if (free < w.size) throw Object.assign(new Error(`ENOSPC: ${w.size} bytes, ${free} free`), { code: 'ENOSPC' });
  }

  /** A fetch's error with the file named: a full PPU ramdisk (ENOSPC) says which file did not fit, and how big it is. */
  async #named(e: NodeJS.ErrnoException, ctx: RunContext, w: Waiting): Promise<Error> {
    if (e.code !== 'ENOSPC') return e;
    const room = await roomOf(ctx.staging);
    const free = room?.bytes;
    // Logged when it starts (at the run's end, with the other workers' files that failed alike), not at each retry.
    this.#noRoom.found([w.path], free, w.size);
    const message = noRoomMessage(w.path, w.size, free, room?.inodes);
    return Object.assign(new Error(`${message} (${e.message})`), { code: e.code });
  }

  /**
   * Placed by this furkad, or by one killed before it noted so (an intent, and the file found where it was meant
   * to go: it counts as placed, whatever the shift is now, F6 starts a new one at a restart), acknowledgement
   * unanswered: acknowledged again, never placed twice (A4). An intent whose file is not there is dropped, and
   * the file fetched as new.
   */
  #placedBefore(w: Waiting): boolean {
    // Of this name: an intent for another name of the same file (renamed or linked since) is that name's.
    const meant = this.placedStore.intent(this.id, w.id, w.path);
    if (meant) {
      // By its checksum too where the intent has one: another version of the same size and mtime is not it.
      if (ShiftDir.holds(meant.dir, meant.rel, w.size, Number(w.mtimeNs / 1_000_000n), meant.sum)) {
        this.placedStore.placed(this.id, [withSum({ id: w.id, rel: w.path }, meant.sum)]);
      } else {
        this.placedStore.dropIntent(this.id, w.id, w.path);
      }
    }
    if (!this.placedStore.has(this.id, w.id, w.path) && !this.#rewritePlaced(w)) return false;
    this.#ack([withSum({ id: w.id, rel: w.path }, this.placedStore.sumOf(this.id, w.id, w.path))]);
    return true;
  }

  /**
   * A restarted agent announces under its base id a file whose rewrite (`id:N`) was placed and not yet
   * acknowledged: that placement is this announcement's now, and acknowledged with the checksum of what was
   * placed; the agent deletes the file only if it still holds those bytes (A4), and otherwise answers that it
   * changed, and the next announcement is fetched. Without this it was fetched again and placed a second time,
   * in whatever shift was current by then (A5).
   */
  #rewritePlaced(w: Waiting): boolean {
    if (baseId(w.id) !== w.id) return false;
    // The latest rewrite (the highest N) holds the bytes the file has now; earlier ones are over with it.
    const count = (id: string): number => Number(id.slice(w.id.length + 1)) || 0;
    const rewrites = this.placedStore.placements(this.id).filter((p) => p.rel === w.path && p.id !== w.id && baseId(p.id) === w.id)
      .sort((x, y) => count(y.id) - count(x.id));
    const latest = rewrites[0];
    if (!latest) return false;
    const sum = this.placedStore.sumOf(this.id, latest.id, w.path);
    this.placedStore.placed(this.id, [withSum({ id: w.id, rel: w.path }, sum)]);
    this.placedStore.answered(this.id, rewrites.map((p) => p.id), rewrites.map(() => w.path));
    return true;
  }

  /**
   * Whether another name of `w`'s file (the same id) is placed, or being placed: a file renamed on the detector
   * after its fetch keeps its id, and is announced again under its new name (docs/agent-protocol.md). Returns
   * that placement if its name is known to be gone (#leftName: `w` is the file placed, renamed since); 'wait'
   * while that is not known (its fetch or its acknowledgement is under way, or asked again now: the agent's
   * answer tells a name that went from a hard link that stays, placed as itself); undefined if there is none.
   */
  #otherName(w: Waiting): Placed | 'wait' | undefined {
    const busy = this.#busyIds.get(w.id);
    if (busy !== undefined && busy !== w.path) return 'wait';
    // Fetched under another name and waiting in staging to be placed (#unplaced): that placement comes first, and
    // its acknowledgement's answer (moved, or deleted for a hard link) then decides this name, as above.
    if (this.#unplaced.size > 0) {
      for (const [other, noted] of this.#placed) if (noted.id === w.id && other !== w.path && this.#unplaced.has(other)) return 'wait';
    }
    const left = this.#leftName.get(w.id);
    if (left && left.rel !== w.path) return left;
    const { placed, meant } = this.placedStore.otherNames(this.id, w.id, w.path);
    // An intent of a furkad killed before it noted the file placed: found where it was meant to go, it is a
    // placement like any other (as #placedBefore takes one of the same name); not found, it came to nothing.
    for (const m of meant) {
      if (ShiftDir.holds(m.dir, m.rel, w.size, Number(w.mtimeNs / 1_000_000n), m.sum)) {
        const p = withSum({ id: w.id, rel: m.rel }, m.sum);
        this.placedStore.placed(this.id, [p]);
        placed.push(p);
      } else {
        this.placedStore.dropIntent(this.id, w.id, m.rel);
      }
    }
    if (placed.length === 0) return undefined;
    // Placed before a restart of furkad (or its acknowledgement failed): asked again, once per connection.
    for (const p of placed) {
      const key = placement(p.id, p.rel);
      if (this.#acksOut.has(key) || this.#reacked.has(key)) continue;
      this.#reacked.add(key);
      this.#ack([p]);
    }
    return 'wait';
  }

  /**
   * `w` was placed under the name it had before it was renamed on the detector (`was`): it stays placed under
   * that one, once (A4); a second copy under the new name would be counted and copied twice. Its source, under
   * the new name, is acknowledged with the checksum of what was placed, so the agent deletes it only if it
   * still holds those bytes: rewritten since, it is kept and announced as a new file, fetched as such.
   */
  #placedRenamed(w: Waiting, was: Placed): void {
    const now = withSum({ id: w.id, rel: w.path }, was.sum);
    // Noted under the new name before the old one is ended: a restart in between asks the agent again.
    this.placedStore.placed(this.id, [now]);
    if (this.placedStore.otherNames(this.id, w.id, w.path).placed.some((p) => p.rel === was.rel)) {
      this.placedStore.answered(this.id, [w.id], [was.rel]);
    }
    this.#leftName.delete(w.id);
    this.#learned.delete(w.id);
    this.#owed.delete(w.id);
    this.log.info({ detector: this.id, file: w.path, placedAs: was.rel, id: w.id },
      'a file renamed on the detector after it was placed is not placed again: it stays under the name it was placed as, and its source is deleted under its new name');
    this.#ack([now]);
  }

  /** The name `f` was placed as was gone when its acknowledgement was answered (#leftName). */
  #nameLeft(f: Placed): void {
    this.#leftName.delete(f.id);
    this.#leftName.set(f.id, f);
    if (this.#leftName.size > LEFT_NAME_MAX) this.#leftName.delete(this.#leftName.keys().next().value as string);
  }

  /** Something an announcement held back waits for came (#otherName): it is looked at again. */
  #release(): void {
    if (this.#held.size === 0) return;
    this.#held.clear();
    this.#wake?.();
    this.#more?.();
  }

  /** Placed and noted for grimseld: only now may the agent delete their sources (A4). */
  afterPlaced(rels: string[], setAsideOf?: bigint): void {
    const from = setAsideOf !== undefined ? this.#setAside : this.#placed;
    const files: Placed[] = [];
    for (const rel of rels) {
      const key = setAsideOf !== undefined ? asideKey(String(setAsideOf), rel) : rel;
      const noted = from.get(key);
      from.delete(key);
      if (noted === undefined) continue;
      files.push({ ...noted, rel });
      this.#parked.delete(placement(noted.id, rel));
      if (setAsideOf === undefined) this.#unplaced.drop(rel);
      this.#learned.delete(noted.id);
      this.#owed.delete(noted.id);
    }
    if (files.length === 0) return;
    // Placed and noted for grimseld: acknowledged whether or not the placement record fits now. The intent on
    // disk already tells a restarted furkad that they were placed; the record follows with the next write.
    this.#record(() => this.placedStore.placed(this.id, files));
    this.#ack(files);
  }

  /**
   * Writes a placement record of what is already true (placed, or deleted by the agent): a full state_dir is
   * said once, not taken for the agent's failure; the record is written with the next one that fits (RewritableLog).
   */
  #record(write: () => void): void {
    try {
      write();
      this.#stateFull = false;
    } catch (e) {
      if (!this.#stateFull) {
        this.log.error({ detector: this.id, err: (e as Error).message }, "cannot write agent placement records in furkad's state_dir (full?); " +
          'they are written with the next that fits');
      }
      this.#stateFull = true;
    }
  }

  /**
   * A shift change is over for `shift`: every file learned of by `learnedBy` and not taken is that shift's
   * whenever it is fetched (A5), unless owed to an earlier one already. Returns how many of them wait now.
   */
  owe(learnedBy: number, shift: OwedShift): number {
    for (const [id, at] of this.#learned) if (at <= learnedBy && !this.#owed.has(id)) this.#owed.set(id, shift);
    // All of them are noted for a furkad started later and counted for the log: those waiting now, and those learned
    // before a lost connection that come back when the agent announces them again. Noting the waiting ones alone
    // left the others in memory only, and a stop (or a kill) while the agent was away gave them to the next
    // furkad's shift (found by a reviewer). A noted id the agent no longer lists is dropped at its next listing.
    const owed: string[] = [];
    for (const [id, s] of this.#owed) if (s === shift) owed.push(id);
    this.#record(() => this.placedStore.owe(this.id, { ...shift, usertime: String(shift.usertime) }, owed));
    return owed.length;
  }

  /**
   * `w`, fetched into staging for the ended shift `owed` it is owed to (with its owner and provenance), is set
   * aside for that shift by the loop (ctx.setAside), placed into its directory and handed over with it, then
   * acknowledged (afterPlaced with its usertime), as files set aside at the change are (forget). False: it is
   * still in staging, and was not set aside.
   */
  async #setAsideOwed(ctx: RunContext, w: Waiting, sum: string, owed: OwedShift): Promise<boolean> {
    // Not set aside (its keeping place could not even be made: no room for its record on the old target): the copy
    // goes, its source stays on the detector and is fetched again. Left in staging, it would stay there for good
    // if no later shift targeted this target again (the ended shift's target may be another one).
    const moved = await ctx.setAside(owed, [w.path]).catch(async (e: Error) => {
      await unlink(path.join(ctx.staging, w.path)).catch(() => undefined);
      throw e;
    });
    if (!moved.includes(w.path)) {
      await unlink(path.join(ctx.staging, w.path)).catch(() => undefined);
      return false;
    }
    const noted = withSum({ id: w.id }, sum);
    this.#setAside.set(asideKey(String(owed.usertime), w.path), noted);
    this.#parked.set(placement(w.id, w.path), w);
    // Kept across a restart: the agent's next announcement must neither place it into the new shift nor be forgotten.
    this.#record(() => this.placedStore.setAside(this.id, [{ ...noted, rel: w.path, usertime: String(owed.usertime) }]));
    return true;
  }

  /** Files the loop set aside for the shift that ended: their sources stay announced, but are not fetched again. */
  forget(rels: string[], usertime: bigint): void {
    const noted: SetAside[] = [];
    for (const rel of rels) {
      const placed = this.#placed.get(rel);
      this.#placed.delete(rel);
      this.#unplaced.drop(rel);
      if (placed === undefined) continue;
      this.#setAside.set(asideKey(String(usertime), rel), placed);
      noted.push({ ...placed, rel, usertime: String(usertime) });
    }
    // Kept across a restart: otherwise the agent's next announcement of them would place them a second time,
    // into the new shift (A5), and nothing would acknowledge them once placed for theirs.
    this.placedStore.setAside(this.id, noted);
  }

  /**
   * Bodies are pushed only while furkad keeps up with the detector: once more files wait than it fetches at
   * once (a burst beyond its pace, a shift change holding the detector), a pushed body would wait behind them
   * and be cancelled unread, to be sent a second time. Pushes resume once it has caught up to half that: a
   * steady few waiting files must not keep them off. Files paused after arriving damaged do not count: they
   * cannot be taken now, and would keep pushes off for the length of their pause.
   */
  #pushWhileKeepingUp(): void {
    const now = monotonicMs();
    let paused = 0;
    // Over the few damaged files, not the many waiting ones: this runs for every announcement and every take.
    for (const [id, d] of this.#damaged) if (d.notBefore > now && this.#waiting.get(d.path)?.id === id) paused++;
    const ready = this.#waiting.size - paused;
    if (ready > IN_FLIGHT) this.#client?.takePushes(false);
    else if (ready <= IN_FLIGHT / 2) this.#client?.takePushes(true);
  }

  /** When furkad first learned of `id` (now, if this is the first time). */
  #learnedAt(id: string): number {
    const known = this.#learned.get(id);
    if (known !== undefined) return known;
    const now = monotonicMs();
    this.#learned.set(id, now);
    if (this.#learned.size > LEARNED_MAX) {
      const oldest = this.#learned.keys().next().value as string;
      this.#learned.delete(oldest);
      this.#owed.delete(oldest);
    }
    return now;
  }

  /** Set-aside files whose kept copy is gone: their sources, if the agent still has them, are fetched again. */
  keptCopyLost(rels: string[], usertime: bigint): void {
    const lost: Placed[] = [];
    for (const rel of rels) {
      const key = asideKey(String(usertime), rel);
      const id = this.#setAside.get(key)?.id;
      if (id === undefined) continue;
      this.#setAside.delete(key);
      lost.push({ id, rel });
      const w = this.#parked.get(placement(id, rel));
      this.#parked.delete(placement(id, rel));
      if (w && !this.#waiting.has(w.path)) this.#waiting.set(w.path, { ...w, learnedAt: monotonicMs() });
    }
    this.placedStore.dropSetAside(this.id, lost);
    if (lost.length) this.#wake?.();
  }

  /** Staging of the agent transport holds only fetches cut short: their sources are still there, announced again. */
  async adoptLeftovers(ctx: RunContext): Promise<void> {
    this.#stagingDirs.clear();
    for (const e of await readdir(ctx.staging).catch(() => [])) await rm(path.join(ctx.staging, e), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    this.#client?.close();
    this.#client = undefined;
  }

  /**
   * Connects (or reconnects) for the assignment's source; the agent then announces every file it has. Called
   * by run() only (runs never overlap), so an agent that is away is an outage with back-off, not a crash.
   */
  async #connected(a: Assignment): Promise<void> {
    const url = `http://${hostPort(a.config.remoteIP, a.config.port)}`;
    if (this.#client?.connected && this.#client.url === url && this.#client.source === a.source) return;
    this.#client?.close();
    this.#waiting.clear();
    this.#parked.clear();
    this.#unplaced.clear();
    this.#damaged.clear();
    this.#held.clear();
    this.#reacked.clear();
    this.#saidUnchecked = false;
    // The agent pushes up to as many bodies at once as run() fetches whatever their size: each is claimed by the
    // fetch that takes its file.
    // Read at every connection: a key copied in after a 401 is taken at the next try (A1).
    const keyFile = a.config.agent_key_file ?? DEFAULT_AGENT_KEY_FILE;
    const key = readKeyFile(keyFile, 'copy'); // a KeyFileError: the PPU's own file, not the detector (#run)
    const client = new AgentClient(url, a.source, { value: key, file: keyFile }, IN_FLIGHT);
    // Files announced since this connection opened, by id and by placement (id and path): once the agent has
    // listed everything (synced), a placement whose acknowledgement was never answered and that the agent no
    // longer has under that name (gone, or renamed) counts as answered (one made by id alone, when the agent no
    // longer has the id). Otherwise it would stay "placed" for ever, and a later file that happened to get the
    // same id and name would be acknowledged (deleted) instead of fetched (A4).
    const listed = new Set<string>();
    this.#synced = false;
    client.on('file', (f) => {
      // furkad's own name anywhere in the path: with usrdir empty such a file would be placed into furkad's
      // staging itself (docs/threat-model.md): never taken, left on the detector and reported like a name furkad
      // cannot hand over.
      if (isStagingName(f.path)) {
        const key = `own\n${f.path}`;
        if (!this.#refused.has(key)) {
          this.log.error({ detector: this.id, file: f.path }, `a file named as furkad's own directory (${STAGING_NAME}) is never taken; it stays on the detector`);
        }
        this.#refused.set(key, f.path);
        this.#wake?.();
        return;
      }
      listed.add(f.id);
      listed.add(placement(f.id, f.path));
      const learnedAt = this.#learnedAt(f.id);
      this.#waiting.set(f.path, { ...f, learnedAt });
      this.#pushWhileKeepingUp();
      this.#wake?.();
      this.#more?.(learnedAt);
    });
    client.once('synced', () => {
      if (this.#client === client) this.#synced = true;
      // A rewrite's placement (INO:SIZE:MTIME_NS:N) whose file a restarted agent lists under its base id again
      // (it counts rewrites only while it runs) is not stale: #placedBefore takes it for that announcement.
      const relisted = (p: { id: string; rel: string | null }): boolean => p.rel !== null && baseId(p.id) !== p.id && listed.has(placement(baseId(p.id), p.rel));
      // Nor is one whose file is listed under another name only (renamed since): that name's announcement asks
      // the agent about it again (#otherName), and it is not placed a second time.
      const renamed = (p: { id: string; rel: string | null }): boolean => p.rel !== null && listed.has(p.id);
      const stale = this.placedStore.placements(this.id).filter((p) => !listed.has(p.rel === null ? p.id : placement(p.id, p.rel)) && !relisted(p) && !renamed(p));
      if (stale.length) this.placedStore.answered(this.id, stale.map((p) => p.id), stale.map((p) => p.rel ?? ''));
      // A file owed to an ended shift that the agent no longer has (deleted on the detector) is owed no more.
      const gone = [...this.#owed.keys()].filter((fileId) => !listed.has(fileId));
      for (const fileId of gone) this.#owed.delete(fileId);
      if (gone.length) this.#record(() => this.placedStore.dropOwed(this.id, gone));
      // Set-aside notes stay although the listing lacks them: an agent whose root was unmounted, or a file open
      // for writing, lists nothing of them, and the same id announced later must not go to another shift.
    });
    // Files left on the detector for their names, reported by the loop (Detectors lastError, metric) until gone.
    this.#refused.clear();
    client.on('refused', (p, reason, key) => {
      if (!this.#refused.has(key)) this.log.error({ detector: this.id, file: p, reason }, 'the agent will not send a file; it stays on the detector');
      // Shown from its bytes (the agent's key is their hex), as rsync shows such a name (`\#351`), not with U+FFFD
      // in place of each byte that is not UTF-8, which names no file an administrator can find (found by a tester).
      this.#refused.set(key, /^(?:[0-9a-f]{2})+$/.test(key) ? escapeName(Buffer.from(key, 'hex')) : p);
      this.#wake?.();
    });
    client.on('unrefused', (_p, key) => {
      if (this.#refused.delete(key)) this.#wake?.();
    });
    client.on('down', (why) => {
      if (this.#client !== client) return; // a connection given up already: not this detector's state now
      if (why !== this.#lastDown) this.log.warn({ detector: this.id, why }, 'connection to the agent lost; reconnecting');
      this.#lastDown = why;
      this.#lost = why;
      this.#wake?.();
    });
    this.#client = client;
    await client.connect();
    this.#lastDown = '';
  }

  unreachable(): string | undefined {
    return this.#client?.connected ? undefined : this.#lost;
  }

  /** The directories of `rels` in staging that placing emptied, removed (staging-dirs.ts); a failure is logged, never the run's. */
  async #removeEmptied(staging: string, rels: string[]): Promise<void> {
    if (rels.length === 0) return;
    try {
      await removeEmptiedParents(staging, rels, (dir) => this.#stagingDirs.delete(dir));
    } catch (e) {
      this.log.warn({ detector: this.id, dir: staging, err: e }, 'cannot remove the directories placing emptied; tried again when staging is next prepared');
    }
  }

  /**
   * Fetches one announced file into staging, checks it against the agent's checksum (I2), and gives it the
   * shift's owner, the source's mtime and its provenance (I3). Returns its checksum (hex); undefined if it is
   * not to be placed (changed or gone at the source), DAMAGED if it arrived other than sent.
   */
  async #fetchOne(ctx: RunContext, w: Waiting, shift: Pick<OwedShift, 'usertime' | 'uid' | 'gid'> = ctx.shift): Promise<string | undefined | typeof DAMAGED> {
    const staged = path.join(ctx.staging, w.path);
    const dir = path.dirname(staged);
    // A directory of staging made once, not once per file: a recursive mkdir costs as much as placing a
    // small file. One that went since (adoptLeftovers, an operator) is made again on ENOENT.
    if (!this.#stagingDirs.has(dir)) {
      await makeDirs(dir, 0o700);
      this.#stagingDirs.add(dir);
    }
    let got;
    try {
      got = await this.#client!.fetch(w.id, staged, w.path).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST') await unlink(staged);
        else if (e.code === 'ENOENT') await makeDirs(dir, 0o700);
        else throw e;
        return this.#client!.fetch(w.id, staged, w.path);
      });
    } catch (e) {
      if (e instanceof FileGone) {
        this.#damaged.delete(w.id);
        return undefined; // changed or gone: a changed file is announced again when complete
      }
      throw e;
    }
    // Still open from the fetch: one descriptor for the rest. As rsync without --perms gives a new file, the
    // source's bits less the umask's, never set-id (F3); the shift's owner; the source's mtime; then the
    // provenance (I3).
    const fd = got.fd;
    let keep = false;
    try {
      if (!got.unchanged || got.bytes !== w.size) {
        // It changed while it was sent (F2): not this file. The agent announces it again once complete.
        this.#damaged.delete(w.id);
        return undefined;
      }
      const verdict = arrival(got.sent, got.checksum);
      if (verdict === 'mismatch') {
        // Never placed, never acknowledged: the source stays on the detector, and is fetched again (#fetchAgain).
        this.log.error({ detector: this.id, file: w.path, id: w.id, sent: shownSent(got.sent), received: tagged(got.checksum), size: w.size },
          "a file arrived damaged: its checksum is not the agent's; dropped, not placed, its source kept, fetched again");
        return DAMAGED;
      }
      if (verdict === 'unchecked' && !this.#saidUnchecked) {
        this.#saidUnchecked = true;
        this.log.warn({ detector: this.id, agent: this.#client!.url, sent: shownSent(got.sent) }, 'the agent sends no checksum furkad can check ' +
          '(an older furka-agent?): files from it are not checked on arrival; furkad computes their checksums from what it received (said once per connection)');
      }
      this.#damaged.delete(w.id);
      fchmodSync(fd, w.mode & 0o755);
      fchownSync(fd, shift.uid, shift.gid);
      // The detector's mtime to the microsecond, before 1970 too (common/file-times.ts); the ramdisk's tmpfs keeps any.
      setFileTimes(fd, w.mtimeNs, w.mtimeNs);
      this.#provenance.write(fd, got.checksum, shift, w.path);
      keep = true;
    } finally {
      closeSync(fd);
      if (!keep) await unlink(staged).catch(() => undefined);
    }
    return got.checksum;
  }

  /**
   * A file that arrived damaged waits again, with the time furkad first learned of it (A5): fetched by the
   * next run, and after a growing pause if it keeps arriving damaged, on this connection: nothing announces it
   * again, since at the source it did not change (I2).
   */
  #fetchAgain(w: Waiting): void {
    const d = this.#damaged.get(w.id) ?? { times: 0, notBefore: 0, path: w.path };
    d.times++;
    d.notBefore = monotonicMs() + (d.times === 1 ? 0 : Math.min(REFETCH_MS[0] * 2 ** (d.times - 2), REFETCH_MS[1]));
    this.#damaged.set(w.id, d);
    // Unless the agent announced a newer version of that path meanwhile.
    if (!this.#waiting.has(w.path)) this.#waiting.set(w.path, w);
    this.#wake?.();
  }

  /**
   * Acknowledges `files` (each with the path it was placed as, which the agent compares with the name the file
   * has now): with those of other files placed meanwhile, one request at a time, so that at a high rate of small
   * files the agent answers one request per batch, not one per file.
   */
  #ack(files: Placed[]): void {
    this.#toAck.push(...files);
    for (const f of files) this.#acksOut.add(placement(f.id, f.rel));
    if (this.#acking) return;
    this.#acking = true;
    void (async () => {
      try {
        while (this.#toAck.length > 0) {
          const batch = this.#toAck.splice(0, MAX_ACK);
          try {
            if (!this.#client) throw new Error('not connected to the agent');
            const answer = await this.#client.ack(batch);
            // Each of the batch once answered (the same id may be in it under two names), as placed under its name.
            const said = new Set([...answer.deleted, ...answer.kept.map((k) => k.id)]);
            const reasons = new Map(answer.kept.map((k) => [k.id, k.reason]));
            // That name is gone and the agent deleted nothing: the file was renamed (or that link removed) after
            // its fetch. Announced under its new name it is the file placed (#placedRenamed), where the checksum
            // of what was placed lets the agent tell it is still that. One `moved` stays noted until then: a
            // restart in between asks the agent again.
            const left = (f: Placed): boolean => f.sum !== undefined && (reasons.get(f.id) === 'moved' || reasons.get(f.id) === 'gone');
            for (const f of batch) if (left(f)) this.#nameLeft(f);
            const done = batch.filter((f) => said.has(f.id) && !(left(f) && reasons.get(f.id) === 'moved'));
            this.#ackRetryMs = 0;
            this.#record(() => this.placedStore.answered(this.id, done.map((f) => f.id), done.map((f) => f.rel)));
            for (const k of answer.kept) {
              if (k.reason === 'gone' || (k.reason === 'moved' && this.#leftName.has(k.id))) continue;
              this.log.warn({ detector: this.id, id: k.id, reason: k.reason }, KEPT_SAYS[k.reason] ?? KEPT_SAYS['changed']!);
            }
          } catch (e) {
            // Kept in the placed store. On a connection still up nothing announces the files again: sent again
            // after a pause (doubling, ACK_RETRY_MS). A lost connection's files are acknowledged again when the
            // agent announces them after reconnecting.
            const client = this.#client;
            if (client?.connected) {
              this.#ackRetryMs = Math.min(Math.max(this.#ackRetryMs * 2, ACK_RETRY_MS[0]), ACK_RETRY_MS[1]);
              this.log.warn({ detector: this.id, err: (e as Error).message, files: batch.length }, `acknowledgement to the agent failed; sent again in ${this.#ackRetryMs} ms`);
              setTimeout(() => { if (this.#client === client && client.connected) this.#ack(batch); }, this.#ackRetryMs).unref();
            } else {
              this.log.warn({ detector: this.id, err: (e as Error).message, files: batch.length }, 'acknowledgement to the agent failed; it is repeated after reconnecting');
            }
          } finally {
            for (const f of batch) this.#acksOut.delete(placement(f.id, f.rel));
            this.#release();
          }
        }
      } finally {
        this.#acking = false;
      }
    })();
  }
}

/** What furkad logs for a placed file the agent kept, by the agent's reason (docs/agent-protocol.md, /v1/ack). */
const KEPT_SAYS: Record<string, string> = {
  written: 'the agent kept a placed file: its writer still has it open for writing; it is announced again when closed',
  changed: 'the agent kept a placed file (it changed after it was sent); it is announced again',
  moved: 'the agent kept a placed file: it has another name now (renamed or linked after it was complete); with no checksum of what was placed to tell it by, it is placed under that name too',
};

/** How a set-aside file is known: its ended shift and its path (one path may be set aside in two shifts). */
function asideKey(usertime: string, rel: string): string {
  return `${usertime}\n${rel}`;
}

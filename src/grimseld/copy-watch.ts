// Whether a busy copy thread is wedged (S1, G12): systemd's watchdog must see a copier that spins
// without copying, as it sees a hung event loop. See copy-threads.ts for where the figures come from.
//
// Why "no progress and busy on the CPU", not only "no progress": a copy also makes no progress while a
// storage hangs (an NFS server gone, a dying disk), its thread asleep in the kernel in write or fsync. A
// restart cannot end that sleep (the process cannot even exit while a thread is in an uninterruptible
// wait), the new grimseld would hang on the same storage at once, and meanwhile no storage is copied at all
// and the ramdisk fills: G1 wants one slow storage to hold back no other. Such a copy is reported in the
// log and left to the kernel. A thread that burns its CPU for STALL_MS without a byte, flush or rename
// can only be a fault in grimseld (as the copy loop that spun on a source that shrank, copier.ts): then a
// restart is the cure, and the journal (G12) redoes the copies the restart cut off.

/**
 * No progress for this long makes a busy copy thread stalled. A step of a copy is one chunk (256 KiB), one
 * fsync or one rename: milliseconds, seconds on a slow disk. 60 s is far above any of them, and a spinning
 * thread costs one core until then; systemd restarts grimseld at most WatchdogSec (20 s) later.
 */
export const STALL_MS = 60_000;

/** A stalled thread that used at least this share of a CPU since its last progress spins; less, it waits. */
const SPINNING_CPU_SHARE = 0.5;

/** What a copy thread is doing: copying, stalled in the kernel (a hung storage), or spinning (wedged). */
export type CopyVerdict = 'moving' | 'blocked' | 'spinning';

/** The watch over one copy thread. `look` is called now and then while it has a copy in hand. */
export class CopyWatch {
  #progress: number | undefined;
  #since = 0;
  #cpuSince: number | undefined;
  #said: CopyVerdict = 'moving';

  constructor(private readonly stallMs = STALL_MS) {}

  /**
   * One look at a busy thread: `progress`, its count of steps done (any number that changes), and `cpuMs`,
   * the CPU time it has used (undefined where the kernel does not tell, see copy-threads.ts). `news` is true
   * the first time a verdict other than 'moving' is given for one stall (to say it once).
   */
  look(now: number, progress: number, cpuMs: number | undefined): { verdict: CopyVerdict; stalledMs: number; news: boolean } {
    if (progress !== this.#progress) {
      this.#progress = progress;
      this.#since = now;
      this.#cpuSince = cpuMs;
      this.#said = 'moving';
      return { verdict: 'moving', stalledMs: 0, news: false };
    }
    const stalledMs = now - this.#since;
    let verdict: CopyVerdict = 'moving';
    if (stalledMs >= this.stallMs) {
      // Without the thread's CPU time the two cannot be told apart: a restart then, as a wedged copier wants.
      const cpu = cpuMs === undefined || this.#cpuSince === undefined ? undefined : cpuMs - this.#cpuSince;
      verdict = cpu === undefined || cpu >= stalledMs * SPINNING_CPU_SHARE ? 'spinning' : 'blocked';
    }
    const news = verdict !== 'moving' && verdict !== this.#said;
    this.#said = verdict;
    return { verdict, stalledMs, news };
  }

  /** The thread has no copy in hand: nothing to watch until it gets one. */
  idle(): void {
    this.#progress = undefined;
    this.#said = 'moving';
  }
}

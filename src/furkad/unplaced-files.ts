// Complete files in staging that the loop could not give their final names (a full PPU ramdisk out of inodes, a
// link planted in the shift's directory), for both transports: offered again by the transport itself, after a
// wait that doubles from UNPLACED_RETRY_MS[0] to UNPLACED_RETRY_MS[1], so that one that keeps failing neither
// floods the log nor spins the loop (F1, F10). Their sources stay on the detector until they are placed (A4).
import { monotonicMs } from '../common/monotonic.js';

/** The first and the longest wait before a staged file that could not be placed is offered again. */
export const UNPLACED_RETRY_MS = [250, 30_000] as const;

/** One staged file waiting to be offered again: what is known of it, and when it is due (monotonicMs()). */
interface Unplaced<W> {
  file: W;
  due: number;
  pause: number;
}

/**
 * The staged files of one transport that wait to be placed, by path. `id`, where a transport knows one (the
 * agent's announcement), tells another file fetched under the same path, which starts from the first wait.
 */
export class UnplacedFiles<W extends { path: string; id?: string }> {
  readonly #files = new Map<string, Unplaced<W>>();

  /** `file` could not be placed (again): offered after a wait twice as long as the last, up to the longest. */
  failed(file: W, now = monotonicMs()): void {
    const last = this.#files.get(file.path);
    // One offered without a wait (offer) has no last wait to double: it starts from the first.
    const pause = last && last.file.id === file.id ? Math.min(Math.max(last.pause * 2, UNPLACED_RETRY_MS[0]), UNPLACED_RETRY_MS[1]) : UNPLACED_RETRY_MS[0];
    this.#files.set(file.path, { file, due: now + pause, pause });
  }

  /** A complete file found in staging, offered with the next run, without a wait; one already waiting keeps its wait. */
  offer(file: W): void {
    if (!this.#files.has(file.path)) this.#files.set(file.path, { file, due: 0, pause: 0 });
  }

  /** Placed, gone from staging, set aside for an ended shift, or fetched again: no longer offered by this. */
  drop(path: string): void {
    this.#files.delete(path);
  }

  has(path: string): boolean {
    return this.#files.has(path);
  }

  /** The files due to be offered again now. */
  due(now = monotonicMs()): W[] {
    return [...this.#files.values()].filter((u) => u.due <= now).map((u) => u.file);
  }

  /** ms until the next one is due: 0 now, Infinity when none waits. */
  untilDue(now = monotonicMs()): number {
    let wait = Infinity;
    for (const u of this.#files.values()) wait = Math.min(wait, Math.max(0, u.due - now));
    return wait;
  }

  clear(): void {
    this.#files.clear();
  }

  get size(): number {
    return this.#files.size;
  }
}

// How long a shift change (or a stop's drain) waited, step by step and for which detector (F6). A change that
// takes long is said: busctl gives up waiting for StartShift after 25 s and reports a timeout, though the change
// is made all the same, and the operator is left to guess why and whether it was.
import { monotonicMs } from '../common/monotonic.js';

/** Above this a shift change is logged as a warning with what it waited for: busctl's default timeout is 25 s. */
export const SLOW_CHANGE_MS = 15_000;

interface Step {
  what: string;
  ms: number;
  /** The detector that took longest in it. */
  slowest: string;
}

export class ChangeTimer {
  readonly #began: number;
  readonly #steps: Step[] = [];

  constructor(private readonly now: () => number = monotonicMs) {
    this.#began = now();
  }

  /** Runs `step` for every loop at once (as Promise.all), noting how long that took and which loop was the last. */
  async each<L extends { id: string }>(what: string, loops: readonly L[], step: (loop: L) => Promise<void>): Promise<void> {
    const start = this.now();
    let slowest = '';
    await Promise.all(loops.map(async (loop) => {
      await step(loop);
      slowest = loop.id;
    }));
    this.#steps.push({ what, ms: this.now() - start, slowest });
  }

  /** Notes the wait since the change was asked for as a step (one waiting for the change before it), if it was one. */
  waited(what: string): void {
    const ms = this.now() - this.#began;
    if (ms >= 100) this.#steps.push({ what, ms, slowest: '' });
  }

  /** What is left of `budgetMs` since the change was asked for (negative once it is spent). */
  left(budgetMs: number): number {
    return budgetMs - (this.now() - this.#began);
  }

  /** Milliseconds since the change began. */
  get ms(): number {
    return Math.round(this.now() - this.#began);
  }

  get slow(): boolean {
    return this.ms > SLOW_CHANGE_MS;
  }

  /** Each step with its time and its slowest detector: `waiting for the runs in flight 7.1 s (1MF), …`. */
  describe(): string {
    return this.#steps.map((s) => `${s.what} ${(s.ms / 1000).toFixed(1)} s${s.slowest ? ` (${s.slowest})` : ''}`).join(', ');
  }
}

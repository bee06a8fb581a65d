// A transport of bookkeeping only, for the detector loop's unit tests: files "arrive" when a test says so, each
// run stages and offers them, verdicts come from a script, and everything the loop asks of it is written down.
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Assignment } from '../../src/furkad/shift.js';
import type { Placed, RunContext, RunOutcome, Transport, Verdict } from '../../src/furkad/transport.js';

/** The checksum the fake says a file arrived with (I1): one of its own per path. */
export function fakeChecksum(rel: string): string {
  return `xxh128:${Buffer.from(rel).toString('hex').padEnd(32, '0').slice(0, 32)}`;
}

export class FakeTransport implements Transport {
  runs = 0;
  /** Runs in flight now, and the most there ever were (shared between fakes to see a gate at work). */
  readonly active: { now: number; most: number };
  /** Files now on the "detector": the next run stages and offers them. */
  incoming: string[] = [];
  /** One verdict per run, in order; `ok` once used up. */
  verdicts: Verdict[] = [];
  /** One per failed run, in order, beside `verdicts`: its message (`fake <verdict>` once used up). */
  messages: string[] = [];
  /** Failed runs fail on the PPU's side, at this path (RunOutcome.ppu). */
  ppu?: string;
  /** Failed runs fail for want of room on the PPU ramdisk (RunOutcome.noRoom). */
  noRoom = false;
  /** One per run, in order, beside `verdicts`: the run's process was ended by a signal (RunOutcome.interrupted). */
  interrupted: boolean[] = [];
  /** What the loop made of each offer. */
  placed: Placed[] = [];
  /** Awaited at the start of each run, before it takes `incoming`: tests count, hold or stop runs here. */
  duringRun: (ctx: RunContext) => Promise<void> | void = () => {};
  waitForWork?: (signal: AbortSignal) => Promise<void>;
  pendingSince?: (since: number, assignment: Assignment, learnedBy: number) => boolean;
  connected?: () => boolean;
  answers?: (ctx: RunContext) => Promise<RunOutcome | undefined>;
  barrier?: () => Promise<number | undefined>;
  adoptLeftovers?: (ctx: RunContext) => Promise<void>;

  /** `events` is shared with the fake hand-over, so their order can be read across both. */
  constructor(readonly events: string[] = [], active?: { now: number; most: number }) {
    this.active = active ?? { now: 0, most: 0 };
  }

  async run(ctx: RunContext): Promise<RunOutcome> {
    this.runs++;
    this.active.now++;
    this.active.most = Math.max(this.active.most, this.active.now);
    try {
      await this.duringRun(ctx);
      const files = this.incoming.splice(0);
      for (const rel of files) {
        mkdirSync(path.dirname(path.join(ctx.staging, rel)), { recursive: true });
        writeFileSync(path.join(ctx.staging, rel), rel);
      }
      if (files.length > 0) {
        this.events.push(`complete ${files.join(' ')}`);
        this.placed.push(await ctx.complete(files, new Map(files.map((rel) => [rel, fakeChecksum(rel)]))));
      }
      const verdict = this.verdicts.shift() ?? 'ok';
      const interrupted = this.interrupted.shift() ?? false;
      return { verdict, message: verdict === 'ok' ? '' : this.messages.shift() ?? `fake ${verdict}`, ...(verdict !== 'ok' && this.ppu !== undefined ? { ppu: this.ppu } : {}), ...(verdict !== 'ok' && this.noRoom ? { noRoom: true as const } : {}), transferred: files.length, bytes: 10 * files.length, ...(interrupted ? { interrupted } : {}) };
    } finally {
      this.active.now--;
    }
  }

  afterPlaced(rels: string[]): void {
    this.events.push(`afterPlaced ${rels.join(' ')}`);
  }
}

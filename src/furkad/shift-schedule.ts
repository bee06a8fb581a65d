// Scheduled shift rotation: at every `shift_schedule` boundary (cron syntax, local time) a new shift
// with the configured defaults starts, so nobody has to remember the restart the vendor manual insists on.
import * as cron from 'node-cron';
import convertExpression from 'node-cron/src/convert-expression/index.js';
import type { Logger } from '../common/logger.js';
import type { Component } from '../common/service.js';
import { Topic } from '../common/topic.js';

/** Is `expr` a cron expression node-cron accepts (5 fields, or 6 with seconds first)? */
export function validSchedule(expr: string): boolean {
  return cron.validate(expr);
}

const FIELDS = [['second', '0-59'], ['minute', '0-59'], ['hour', '0-23'], ['day of month', '1-31'], ['month', '1-12 or jan-dec'],
  ['day of week', '0-7 or sun-sat']] as const;

/**
 * Which field of a schedule node-cron refuses, and the value in it (`hour 24`): `cron.validate` only says no, and
 * `0 8,16,24 * * *` was refused with the whole expression. Each field is tried alone, the others '*'.
 */
export function scheduleProblem(expr: string): string | undefined {
  // Counted first: node-cron 3 checks only the first six fields, so it took a seventh (a year, say) and ignored it.
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) return `it has ${fields.length} ${fields.length === 1 ? 'field' : 'fields'}, not 5 (or 6 with seconds first)`;
  if (validSchedule(expr)) return undefined;
  const names = fields.length === 6 ? FIELDS : FIELDS.slice(1);
  for (let i = 0; i < fields.length; i++) {
    const alone = (v: string) => validSchedule(fields.map((f, j) => (j === i ? v : '*')).join(' '));
    if (alone(fields[i]!)) continue;
    const [name, range] = names[i]!;
    const bad = fields[i]!.split(',').find((v) => !alone(v)) ?? fields[i]!;
    return `the ${name} field takes ${range}, '*', a range (a-b) or a step (*/n), not '${bad}'`;
  }
  return undefined;
}

/**
 * The first boundary strictly after `after`, within eight years (a 29 February comes in that time); undefined if
 * there is none (31 February). Uses node-cron's normalisation of the expression. A time of day in the hour summer
 * time skips is taken as the same time an hour later (JavaScript's Date does so), and one in the hour repeated when
 * it ends as its first occurrence.
 */
export function nextBoundary(expr: string, after: Date): Date | undefined {
  const fields = convertExpression(expr).split(' ').map((f) => f.split(',').map(Number).sort((a, b) => a - b));
  const [seconds, minutes, hours, days, months, weekdays] = fields as [number[], number[], number[], number[], number[], number[]];
  const day = new Date(after.getFullYear(), after.getMonth(), after.getDate());
  for (let i = 0; i <= 366 * 8; i++, day.setDate(day.getDate() + 1)) {
    if (!months.includes(day.getMonth() + 1) || !days.includes(day.getDate()) || !weekdays.includes(day.getDay())) continue;
    for (const h of hours) {
      for (const m of minutes) {
        for (const s of seconds) {
          const t = new Date(day.getFullYear(), day.getMonth(), day.getDate(), h, m, s);
          if (t > after) return t;
        }
      }
    }
  }
  return undefined;
}

/**
 * How long at most between two looks at the wall clock while a boundary is ahead: a step of the clock (the hourly
 * ntpdate, an administrator's `date -s`) is noticed within this.
 */
const CHECK_EVERY_MS = 1000;

export class ShiftSchedule implements Component {
  #timer: NodeJS.Timeout | undefined;
  #next: Date | undefined;
  #planned = false;
  /** The wall clock when `next` was last planned: a clock found earlier than this went back (#check). */
  #lookedAt = 0;
  /** The boundary fired last (ms since the epoch): a clock gone back never plans one before it again. */
  #fired = -Infinity;
  /** Raised whenever `next` changes. */
  readonly nextChanged = new Topic();
  readonly name = 'shift schedule';

  /** `from`: plan from this moment (wall clock, ms) instead of the start, if earlier (a resumed shift's check). */
  constructor(readonly expression: string, private readonly rotate: () => Promise<void>, private readonly log: Logger, private readonly from?: number) {}

  /** The next scheduled shift change. */
  get next(): Date | undefined {
    return this.#next;
  }

  /**
   * Fires at the boundary this schedule planned (`next`), by the wall clock, looked at least once a second; not
   * by node-cron's scheduler, which counts the seconds it missed with a monotonic clock and matches only the last
   * one or two against the expression: a forward step of the clock across a boundary (3 s or more) skipped that
   * shift change, and `next` stayed in the past; at the end of summer time a boundary in the repeated hour came
   * twice, and one in the hour skipped in spring never (found by hostile tester h9). node-cron still checks and
   * normalises the expression (scheduleProblem, nextBoundary).
   */
  start(): void {
    const now = Date.now(); // wall clock: the schedule is in times of day
    // From the moment a crashed furkad's shift was found to go on (main.ts), if one was: a boundary since is due now.
    this.#plan(Math.min(this.from ?? now, now), now);
    this.#arm();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    if (!this.#next) return; // none within the years nextBoundary looks at (said by #plan)
    // wall clock: how far the planned time of day is; looked at again within a second whatever it says
    const wait = Math.min(Math.max(this.#next.getTime() - Date.now(), 0), CHECK_EVERY_MS);
    this.#timer = setTimeout(() => this.#check(), wait);
    this.#timer.unref();
  }

  #check(): void {
    const now = Date.now(); // wall clock: the schedule is in times of day
    const due = this.#next;
    if (due && now >= due.getTime()) {
      // One shift however many boundaries a step of the clock (or a stalled process) passed; the next is the first
      // after now. A step back does not bring a boundary fired already back.
      this.#fired = due.getTime();
      this.#plan(Math.max(now, due.getTime()), now);
      this.log.info({ schedule: this.expression, boundary: due.toISOString(), late_ms: now - due.getTime() }, 'scheduled shift change');
      // A rotation that throws before it is a promise (planShift refusing the defaults) is said like one that
      // fails later: the shift running goes on, and so does furkad (an uncaught throw here ended it).
      Promise.resolve().then(() => this.rotate()).catch((e: unknown) => this.log.error({ err: e }, 'scheduled shift change failed: the running shift goes on'));
    } else if (now < this.#lookedAt) {
      // The clock went back past the moment the plan was made (it was ahead: an RTC read in the wrong zone, a date -s
      // corrected): the boundaries from now to the one planned would be skipped. Planned again from now, never from
      // before the boundary fired last, which does not come twice (found by reviewer r3).
      this.#plan(Math.max(now, this.#fired), now);
    }
    this.#arm();
  }

  /** Plans the first boundary after `afterMs`; `lookedAt`: the wall clock then, to notice it going back. */
  #plan(afterMs: number, lookedAt: number): void {
    this.#lookedAt = lookedAt;
    const next = nextBoundary(this.expression, new Date(afterMs));
    if (next?.getTime() === this.#next?.getTime() && this.#planned) return;
    this.#planned = true;
    this.#next = next;
    this.log.info({ next: this.#next?.toISOString() ?? 'never' }, 'next scheduled shift change');
    this.nextChanged.emit();
  }
}

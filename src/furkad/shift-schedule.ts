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
  if (fields.length !== 5 && fields.length !== 6) return `it has ${fields.length} fields, not 5 (or 6 with seconds first)`;
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
 * The first boundary strictly after `after`, within a year and a day; undefined if there is none (31 February).
 * Uses node-cron's own normalisation, so it names the instant node-cron fires at.
 */
export function nextBoundary(expr: string, after: Date): Date | undefined {
  const fields = convertExpression(expr).split(' ').map((f) => f.split(',').map(Number).sort((a, b) => a - b));
  const [seconds, minutes, hours, days, months, weekdays] = fields as [number[], number[], number[], number[], number[], number[]];
  const day = new Date(after.getFullYear(), after.getMonth(), after.getDate());
  for (let i = 0; i <= 367; i++, day.setDate(day.getDate() + 1)) {
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

export class ShiftSchedule implements Component {
  #task: cron.ScheduledTask | undefined;
  #next: Date | undefined;
  /** Raised whenever `next` changes. */
  readonly nextChanged = new Topic();
  readonly name = 'shift schedule';

  constructor(readonly expression: string, private readonly rotate: () => Promise<void>, private readonly log: Logger) {}

  /** The next scheduled shift change. */
  get next(): Date | undefined {
    return this.#next;
  }

  start(): void {
    // node-cron 3.0.3 with recoverMissedExecutions (kept: a loop stalled across a boundary must not skip the
    // change) fires a boundary twice, the second time a second later as a "missed" one: its record of the
    // last execution drops the milliseconds only after comparing with them. So each boundary (the second
    // node-cron says it matched) starts one shift.
    let last: number | undefined;
    this.#task = cron.schedule(this.expression, (when?: Date | string) => {
      const second = Math.floor((when instanceof Date ? when.getTime() : Date.now()) / 1000); // wall clock, as node-cron's
      if (second === last) return;
      last = second;
      this.#plan();
      this.log.info({ schedule: this.expression }, 'scheduled shift change');
      this.rotate().catch((e: unknown) => this.log.error({ err: e }, 'scheduled shift change failed'));
    }, { recoverMissedExecutions: true });
    this.#plan();
  }

  stop(): void {
    this.#task?.stop();
    this.#task = undefined;
  }

  #plan(): void {
    // node-cron fires within the matching second: "after now" from inside it must skip that second. Wall clock:
    // the schedule is in times of day.
    const now = new Date();
    now.setMilliseconds(999);
    this.#next = nextBoundary(this.expression, now);
    this.log.info({ next: this.#next?.toISOString() ?? 'never' }, 'next scheduled shift change');
    this.nextChanged.emit();
  }
}

// Types for the parts of node-cron 3 furkad uses (the package ships none).
declare module 'node-cron' {
  export interface ScheduledTask {
    start(): void;
    stop(): void;
  }
  export interface ScheduleOptions {
    scheduled?: boolean;
    timezone?: string;
    /** Fire for seconds the 1 s polling loop skipped (a busy event loop must not lose a boundary). */
    recoverMissedExecutions?: boolean;
  }
  export function schedule(expression: string, fn: (now: Date | 'manual' | 'init') => void, options?: ScheduleOptions): ScheduledTask;
  export function validate(expression: string): boolean;
}

declare module 'node-cron/src/convert-expression/index.js' {
  /** Normalises an expression to six space-separated fields of comma-separated numbers (seconds first). */
  const convert: (expression: string) => string;
  export default convert;
}

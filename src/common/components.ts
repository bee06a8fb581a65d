// A daemon's components, started in order and stopped in reverse, each stop on its own (zigbee2mqtt's
// controller): one that fails to stop is logged and the ones before it still stop.
import type { Logger } from './logger.js';

export interface Component {
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

/** A component that is a loop: started, it runs until stopped; stopping aborts it and waits for it to end. */
export function loopComponent(name: string, run: (signal: AbortSignal) => Promise<unknown>): Component {
  const stop = new AbortController();
  let running: Promise<unknown> | undefined;
  return {
    name,
    start: () => { running = run(stop.signal); },
    stop: async () => {
      stop.abort();
      await running;
    },
  };
}

/** A component that is a timer: `tick` every `ms` while it runs. */
export function timerComponent(name: string, ms: number, tick: () => void): Component {
  let timer: NodeJS.Timeout | undefined;
  return { name, start: () => { timer = setInterval(tick, ms); }, stop: () => clearInterval(timer) };
}

export class Components {
  readonly #started: Component[] = [];

  constructor(private readonly log: Logger) {}

  /** Starts `list` in order, after those started already; a failure is thrown once the ones started are stopped. */
  async start(...list: Component[]): Promise<void> {
    for (const c of list) {
      try {
        await c.start?.();
      } catch (e) {
        await this.stop();
        throw e;
      }
      this.#started.push(c);
    }
  }

  /** Stops every component started, the last started first, each on its own: a failure is logged, never thrown. */
  async stop(): Promise<void> {
    for (let c = this.#started.pop(); c; c = this.#started.pop()) {
      try {
        await c.stop?.();
      } catch (e) {
        this.log.error({ err: e, component: c.name }, `stopping ${c.name} failed`);
      }
    }
  }
}

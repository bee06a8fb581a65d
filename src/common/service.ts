// The shape the daemons share: run main, start and stop its components, wait for SIGTERM/SIGINT, exit with a
// code systemd understands.
import { setMaxListeners } from 'node:events';
import { logsWritten } from './log-rotation.js';
import { isJournalStream, type Logger } from './logger.js';

/** Resolves on the first SIGTERM or SIGINT. */
export function stopRequested(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve(sig));
  });
}

/**
 * Runs a daemon's main; an unexpected failure is one line on stderr and exit code 1, never a stack dump (once
 * the lines logged before it are in the log file, for at most 2 s). Once
 * main has stopped everything, the process ends when its event loop is empty (the logs flushed); what still
 * holds it after `graceMs` (a stat of a hung NFS mount in libuv's pool, which nothing can cancel) does not
 * keep it from exiting, so that a stop does not wait for systemd's SIGKILL.
 */
export function runDaemon(name: string, main: () => Promise<number>, graceMs = 5000): void {
  main().then(
    (code) => {
      process.exitCode = code;
      setTimeout(() => process.exit(code), graceMs).unref();
    },
    (e: unknown) => {
      // An error's line is an error in the journal; one that marks itself a configuration error (a bus address
      // that is none) ends with EX_CONFIG, which the units do not restart.
      process.stderr.write(`${isJournalStream(2) ? '<3>' : ''}${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      const code = (e as { exitCode?: unknown } | undefined)?.exitCode === 78 ? 78 : 1;
      process.exitCode = code;
      // What was logged before the error (why the stop failed, what was still open) is still on its way to a log
      // file: ended at once, the process would drop it.
      void logsWritten(2000).then(() => process.exit(code));
    },
  );
}

/**
 * A part of a daemon that runs between start and stop. `signal` aborts when a stop comes while the daemon is
 * still starting: a start that waits long should give up then (its stop still follows).
 */
export interface Component {
  readonly name: string;
  start(signal: AbortSignal): Promise<void> | void;
  stop(): Promise<void> | void;
}

/** A component made of two functions, for parts whose own methods have other names or arguments. */
export function component(name: string, start: (signal: AbortSignal) => Promise<unknown> | void, stop: () => Promise<unknown> | void): Component {
  return { name, start: async (signal) => { await start(signal); }, stop: async () => { await stop(); } };
}

/** A component that is a loop: started, it runs until stopped; stopping aborts it and waits for it to end. */
export function loopComponent(name: string, run: (signal: AbortSignal) => Promise<unknown>): Component {
  const stop = new AbortController();
  // Every waiter of the loop listens while it waits (a storage's writers: up to 20 each), and removes its listener
  // after: many at once is no leak, and Node's warning at 11 ("MaxListenersExceededWarning") misled the journal.
  setMaxListeners(0, stop.signal);
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

/** Components started in order and stopped all at once: parts that must not wait for each other to stop. */
export function together(name: string, parts: Iterable<Component>): Component {
  const list = [...parts];
  return {
    name,
    start: async (signal) => { for (const c of list) await c.start(signal); },
    stop: async () => { await Promise.all(list.map(async (c) => c.stop())); },
  };
}

/**
 * A daemon's components (zigbee2mqtt's controller): started in the order given, stopped in reverse, each stop
 * in its own try/catch so one failing stop does not keep the others from theirs. A stop during start
 * cancels it: the component starting is told through its signal, the rest are never started.
 */
export class Components {
  readonly #list: Component[];
  readonly #started: Component[] = [];
  readonly #starting = new AbortController();
  /** The start in flight: a stop waits for it before stopping that component. */
  #current: Promise<unknown> = Promise.resolve();

  constructor(list: ReadonlyArray<Component | undefined>, private readonly log: Logger) {
    this.#list = list.filter((c): c is Component => c !== undefined);
  }

  /**
   * Starts every component in order; false when `cancel` resolved first (a stop request), what started being
   * left for stop(). A start that fails stops what started before it, and its error is thrown.
   */
  async start(cancel: Promise<unknown>): Promise<boolean> {
    const signal = this.#starting.signal;
    void cancel.then(() => this.#starting.abort(), () => this.#starting.abort());
    for (const c of this.#list) {
      if (signal.aborted) return false;
      this.#started.push(c);
      const started = Promise.resolve().then(() => c.start(signal));
      this.#current = started.catch(() => undefined);
      try {
        await started;
      } catch (e) {
        if (signal.aborted) return false;
        await this.stop();
        throw e;
      }
    }
    return !signal.aborted;
  }

  /** Cancels a start in flight, then stops every started component in reverse order, each on its own. */
  async stop(): Promise<void> {
    this.#starting.abort();
    await this.#current;
    for (const c of this.#started.splice(0).reverse()) {
      try {
        await c.stop();
      } catch (e) {
        this.log.error({ err: e }, `stopping ${c.name} failed`);
      }
    }
  }
}

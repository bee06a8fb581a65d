// Cancellable waiting: every loop of the daemons stops through an AbortSignal.

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Resolves when `arm`'s wake function is called or `signal` aborts. The abort listener is removed either
 * way: a loop that waits a million times must not leave a million listeners on its signal.
 */
export function wakeOrAbort(arm: (wake: () => void) => void, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    arm(done);
  });
}

/**
 * A signal that aborts as soon as any of `signals` does (AbortSignal.any() is Node 20.3; CentOS 7 has 16).
 * dispose() removes its listeners: call it once the signal is no longer needed.
 */
export function anySignal(signals: AbortSignal[]): { signal: AbortSignal; dispose(): void } {
  const any = new AbortController();
  const abort = (): void => any.abort();
  for (const s of signals) {
    if (s.aborted) any.abort();
    else s.addEventListener('abort', abort, { once: true });
  }
  return { signal: any.signal, dispose: () => signals.forEach((s) => s.removeEventListener('abort', abort)) };
}

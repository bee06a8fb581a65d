// Single-thread mode (F8): whether a detector's rsync daemon answers, asked before its run takes the license's one
// transfer slot. A daemon that accepts connections and says nothing (stopped, hung, a listener that never greets)
// is not noticed by rsync's --contimeout, which covers the TCP connect only: the run would hold the slot for
// rsync_timeout_s and more, and every other detector with it.
import * as net from 'node:net';
import { followAddress, hostLookup } from './host-lookup.js';

/** rsync's --contimeout for a run (rsyncArgs), and the probe's bound. */
export function connectTimeoutS(timeoutS: number): number {
  return Math.min(timeoutS, 10);
}

/**
 * Connects to the daemon at host:port and waits for its first bytes (its greeting, `@RSYNCD: <version>`), then
 * closes the connection without a word (the daemon ends that connection quietly). `'greeted'`; `'silent'` when
 * connected and nothing came within `ms`; `'unconnected'` when no connection was made within `ms`; `'failed'` for
 * anything else (refused, reset, closed unanswered, aborted): the run meets it too and says better what it is.
 */
export function daemonGreets(host: string, port: number, ms: number, signal: AbortSignal): Promise<'greeted' | 'silent' | 'unconnected' | 'failed' | { unresolved: string }> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve('failed');
    const socket = net.connect({ host, port, lookup: hostLookup });
    let connected = false;
    const notReached = followAddress(socket, host);
    const done = (how: 'greeted' | 'silent' | 'unconnected' | 'failed' | { unresolved: string }): void => {
      clearTimeout(timer);
      if (!connected && !signal.aborted && typeof how === 'string') notReached();
      signal.removeEventListener('abort', aborted);
      socket.destroy();
      resolve(how);
    };
    const aborted = (): void => done('failed');
    const timer = setTimeout(() => done(connected ? 'silent' : 'unconnected'), ms);
    signal.addEventListener('abort', aborted, { once: true });
    socket.once('connect', () => { connected = true; });
    // A name that does not resolve (or whose DNS servers do not answer): the run's rsync would wait for it too,
    // holding the slot, so it is said as such (host-lookup.ts).
    socket.once('lookup', (e: Error | null) => {
      if (e) done({ unresolved: e.message });
    });
    socket.once('data', () => done('greeted'));
    socket.once('error', () => done('failed'));
    socket.once('close', () => done('failed'));
  });
}

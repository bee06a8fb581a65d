// Detector server names (a `remoteIP` that is a host name) looked up for furkad's own connections, outside its
// process: `getent ahosts`, the C library's lookup through NSS (/etc/hosts, DNS, whatever nsswitch.conf says), as
// Node's would be, bounded in time and killed when over (F1, F10).
//
// Why not Node's dns.lookup: it runs getaddrinfo(3) on libuv's thread pool, which lets at most two lookups run at
// once, nothing can cancel one, and one whose DNS servers do not answer takes their whole timeout (resolv.conf's
// timeout x attempts x nameservers: 30 s with three silent servers, minutes with longer options). Two detectors
// whose names hung so held every slot: every other detector given by name queued behind them and stayed
// `retrying` ("no connection could be made") with its server up and its name in /etc/hosts, as long as the DNS
// servers were away; and a stopping furkad waited for the lookups in flight after it said "stopped", past the
// unit's TimeoutStopSec (found by a hostile tester with a private resolv.conf whose server never answered).
// An address (`remoteIP = 10.10.10.11`, `::1`) is never looked up: Node connects to it as it is.
import { spawn } from 'node:child_process';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { Socket } from 'node:net';

/** How long one lookup may take; below the agent connection's 10 s, so that its reason is the lookup's own. */
export const LOOKUP_TIMEOUT_MS = 8000;

/** The addresses `name` has, in the C library's order (RFC 6724, /etc/gai.conf), each once. */
export function lookUpHost(name: string, timeoutMs = LOOKUP_TIMEOUT_MS): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => {
    // `--`: a name is never taken for an option of getent's.
    const child = spawn('getent', ['ahosts', '--', name], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => settle(() => {
      child.kill('SIGKILL');
      reject(new Error(`the name '${name}' was not resolved within ${timeoutMs / 1000} s: its DNS servers (/etc/resolv.conf) ` +
        'do not answer; give remoteIP as an address, or the name in /etc/hosts'));
    }), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
    // No getent (a minimal system): the C library's lookup in the process, as Node would do it.
    child.once('error', () => settle(() => dnsLookup(name, { all: true }, (e, list) => (e ? reject(e) : resolve(list)))));
    child.once('close', (code) => settle(() => {
      const list = addressesOf(out);
      if (code === 0 && list.length > 0) resolve(list);
      else reject(new Error(`the name '${name}' does not resolve (getent ahosts ${name}: no address): no such host, or its DNS servers failed`));
    }));
  });
}

/** The STREAM lines' addresses of `getent ahosts` output, each once, in order. */
export function addressesOf(out: string): LookupAddress[] {
  const seen = new Set<string>();
  const list: LookupAddress[] = [];
  for (const line of out.split('\n')) {
    const m = /^(\S+)\s+STREAM\b/.exec(line);
    if (!m || seen.has(m[1]!)) continue;
    seen.add(m[1]!);
    list.push({ address: m[1]!, family: m[1]!.includes(':') ? 6 : 4 });
  }
  return list;
}

/**
 * Which of a name's addresses is answered first when Node asks for one only (Node 16, CentOS 7's: it has no
 * autoSelectFamily and connects to that one alone). Always the first, as before, a detector server whose name has
 * an IPv6 address before its IPv4 one while its agent listens on IPv4 only (the shipped `address = 0.0.0.0`) was
 * never reached. So the address after one that could not be reached comes first at the next attempt (the
 * detector's back-off paces them), and one that was reached stays first.
 */
export class AddressOrder {
  /** Per name: the address to try first, and the addresses it had at its last lookup. */
  readonly #first = new Map<string, string>();
  readonly #last = new Map<string, LookupAddress[]>();

  /** `list` from the address to try first on, round to the one before it. */
  order(name: string, list: LookupAddress[]): LookupAddress[] {
    this.#last.set(name, list);
    const at = list.findIndex((a) => a.address === this.#first.get(name));
    return at <= 0 ? list : [...list.slice(at), ...list.slice(0, at)];
  }

  /** No connection could be made to `address`, given for `name`: the next of its addresses is tried first. */
  notReached(name: string, address: string): void {
    const list = this.#last.get(name) ?? [];
    const at = list.findIndex((a) => a.address === address);
    if (at >= 0 && list.length > 1) this.#first.set(name, list[(at + 1) % list.length]!.address);
  }
}

/** The order furkad's connections take their addresses in (hostLookup), told through followAddress. */
export const addressOrder = new AddressOrder();

/**
 * Follows the address `socket` was given for `host` (Node 16 connects to that one alone). The function returned is
 * called when no connection could be made: the name's next address is tried first next time. It does nothing for an
 * address, which is never looked up, or for a name Node tried every address of itself (Node 20).
 */
export function followAddress(socket: Socket, host: string): () => void {
  let looked: string | undefined;
  socket.once('lookup', (e: Error | null, address?: string) => { if (!e) looked = address; });
  return () => { if (looked !== undefined) addressOrder.notReached(host, looked); };
}

/**
 * net.connect's `lookup` option: lookUpHost in the shape Node asks for, one address (Node 16: addressOrder's
 * first) or all of them (`all`, Node 20's autoSelectFamily, which tries them in turn itself). Node calls it only
 * for a name, never for an address.
 */
export function hostLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
  lookUpHost(hostname).then((all) => {
    const list = family === 4 || family === 6 ? all.filter((a) => a.family === family) : all;
    if (list.length === 0) callback(new Error(`the name '${hostname}' has no IPv${family} address`), '');
    else if (options.all) callback(null, list);
    else {
      const [first] = addressOrder.order(hostname, list);
      callback(null, first!.address, first!.family);
    }
  }, (e: Error) => callback(e, ''));
}

/** `host:port` as a URL and a message write it: an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

// Who is at the other end of a TCP connection from this host: the uid owning the peer's socket, read from the
// kernel's socket tables (/proc/net/tcp, tcp6). Lets the daemons' TCP services (grimseld's status and messages,
// both metrics endpoints) share their connections among local users (tcp-listener.ts): over loopback every user
// has the same address.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

const TABLES = ['/proc/net/tcp', '/proc/net/tcp6'];

/** Whether `address` (as Node gives a peer's) is this host's loopback. */
export function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'));
}

/**
 * The uid owning the peer's end of `socket`, a connection accepted from loopback; undefined for another peer,
 * or when the tables do not say. The peer's socket is the one whose local port is the connection's remote port
 * and whose remote port is ours (ports only: on loopback that pair names one connection).
 */
export function loopbackPeerUid(socket: Socket, tables: string[] = TABLES): number | undefined {
  if (!isLoopback(socket.remoteAddress) || socket.remotePort === undefined || socket.localPort === undefined) return undefined;
  const key = `${hexPort(socket.remotePort)}:${hexPort(socket.localPort)}`;
  const now = performance.now();
  // One reading serves a burst of connections: the tables list every socket of the host, and reading them for
  // each of hundreds of connections a peer opens at once held the event loop for seconds.
  // A connection the reading does not list is newer than it (the kernel lists a connection before it is
  // accepted): read again at once. Waiting for a later reading let it through uncounted, under its address
  // instead of its user (a user's ninth connection accepted, found by a flaky test). Connections accepted
  // together share the reading made for the first of them.
  if (!read || read.tables !== tables || (!read.uids.has(key) && now > read.at) || now - read.at > KEPT_MS) {
    read = { tables, at: now, uids: ownersOf(tables) };
  }
  return read.uids.get(key);
}

/** How long one reading of the tables answers for connections it lists. */
const KEPT_MS = 100;
let read: { tables: string[]; at: number; uids: Map<string, number> } | undefined;

/** 'localport:remoteport' (hex) to the owning uid, for every socket in the tables but those in TIME_WAIT (root's). */
function ownersOf(tables: string[]): Map<string, number> {
  const uids = new Map<string, number>();
  for (const table of tables) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue;
    }
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ..."
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length <= 7 || f[3] === TIME_WAIT) continue;
      const key = `${f[1]!.slice(f[1]!.lastIndexOf(':') + 1)}:${f[2]!.slice(f[2]!.lastIndexOf(':') + 1)}`;
      if (!uids.has(key)) uids.set(key, Number(f[7]));
    }
  }
  return uids;
}

/** A closed connection's leftover, listed with uid 0: taken for the peer's, it made a user's connection root's. */
const TIME_WAIT = '06';

function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

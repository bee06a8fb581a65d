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
  const local = `:${hexPort(socket.remotePort)}`;
  const remote = `:${hexPort(socket.localPort)}`;
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
      if (f.length > 7 && f[1]!.endsWith(local) && f[2]!.endsWith(remote)) return Number(f[7]);
    }
  }
  return undefined;
}

function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

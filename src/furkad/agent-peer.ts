// What answers at a detector's remoteIP and port when it is not the furka-agent furkad expected (an HTTP/2
// server): told by the first bytes it sends on a connection of its own, so that Detectors names the wrong peer
// (an SSH server, the rsync daemon, an HTTP/1 server) instead of guessing at the agent's `allow` (A1, S7).
import * as net from 'node:net';
import { hostLookup } from './host-lookup.js';

/** How long the look at the peer may take: it runs only after a connection failed, never on a working one. */
const LOOK_MS = 2000;
/** Enough for a banner's or a status line's first line. */
const ENOUGH = 256;
/** HTTP/2's client connection preface and an empty SETTINGS frame: an HTTP/1 server answers it with a status line. */
const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/**
 * What the server at `host:port` is, from what it sends first, when that is not HTTP/2: a phrase with advice
 * ("an SSH server (it greets with 'SSH-2.0-…'); …"). undefined when it speaks HTTP/2, sends nothing, or cannot
 * be reached again: then nothing more can be told.
 */
export async function notHttp2(host: string, port: number): Promise<string | undefined> {
  return describe(await firstBytes(host, port));
}

/** The first bytes the server sends (after HTTP/2's preface, which makes an HTTP/1 server answer): up to ENOUGH. */
function firstBytes(host: string, port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const socket = net.connect({ host, port, lookup: hostLookup });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, LOOK_MS);
    socket.on('connect', () => socket.write(PREFACE, () => undefined));
    socket.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]).subarray(0, ENOUGH);
      if (got.length >= ENOUGH || got.includes(0x0a) || isHttp2(got)) done();
    });
    socket.on('error', done);
    socket.on('close', done);
  });
}

/** An HTTP/2 server's first frame: SETTINGS (type 4) on stream 0, a multiple of 6 bytes long. */
function isHttp2(b: Buffer): boolean {
  return b.length >= 9 && b[3] === 0x04 && b.readUInt32BE(5) === 0 && b.readUIntBE(0, 3) % 6 === 0;
}

/** The phrase for the peer that sent `b` (see notHttp2). */
export function describe(b: Buffer): string | undefined {
  if (b.length === 0 || isHttp2(b)) return undefined;
  const text = b.toString('latin1');
  const line = shown(text.split(/\r?\n/)[0]!);
  const wrongPort = 'is port (or remoteIP) the furka-agent\'s?';
  if (text.startsWith('@RSYNCD:')) return `an rsync daemon (it greets with '${line}'): to pull from it set transport = rsync, else set port to the furka-agent's`;
  if (text.startsWith('SSH-')) return `an SSH server (it greets with '${line}'); ${wrongPort}`;
  if (/^HTTP\/1\.[01] /.test(text)) return `an HTTP/1 server (it answers '${line}'); ${wrongPort}`;
  if ((b[0] === 0x15 || b[0] === 0x16) && b[1] === 0x03) return `a TLS server; ${wrongPort}`;
  return `something that sends '${shown(text.slice(0, 32))}'; ${wrongPort}`;
}

/** `s` as shown in a message: printable ASCII as it is, anything else as \xNN, at most 80 characters. */
function shown(s: string): string {
  const out = s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/'/g, '\\x27');
  return out.length > 80 ? `${out.slice(0, 80)}…` : out;
}

// Connection to the system bus (or the one DBUS_SYSTEM_BUS_ADDRESS names) and name ownership.
import * as dbus from 'dbus-next';
import type { Logger } from '../common/logger.js';
import { ErrorNames } from './errors.js';
import { monotonicMs } from '../common/monotonic.js';

export type MessageBus = dbus.MessageBus;

const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';

/**
 * The system bus, or the one DBUS_SYSTEM_BUS_ADDRESS names. Unix paths are handed to dbus-next as
 * `socket=`, which makes it use Node's own socket instead of the optional native `usocket`: that one
 * segfaults when a connection is closed while it connects, and we pass no file descriptors.
 */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env): string {
  const address = env['DBUS_SYSTEM_BUS_ADDRESS'] || DEFAULT_SYSTEM_BUS;
  const entries = address.split(';').filter((a) => a);
  // Nothing left, dbus-next would look for a session bus through X11 instead.
  const bad = entries.length ? entries.map(busAddressProblem).find((p) => p) : `'${address}' holds no address`;
  if (bad) throw new BusAddressError(`DBUS_SYSTEM_BUS_ADDRESS: ${bad} (e.g. ${DEFAULT_SYSTEM_BUS})`);
  return address
    .split(';')
    .filter((a) => a)
    .map((a) => a.replace(/^unix:(.*?)\bpath=/, 'unix:$1socket='))
    .join(';');
}

/** DBUS_SYSTEM_BUS_ADDRESS names no bus we can connect to. */
/** A DBUS_SYSTEM_BUS_ADDRESS that is no usable address: a configuration error (exit 78 for a daemon). */
export class BusAddressError extends Error {
  readonly exitCode = 78;
}

/**
 * What is wrong with one `transport:key=value,...` entry, or undefined. dbus-next parses addresses loosely and
 * fails on a bad one with a TypeError ("reading 'split'") or by connecting somewhere else (a tcp port that is
 * not a number is taken for a socket path); this says what is wrong in the words of the D-Bus spec.
 */
function busAddressProblem(entry: string): string | undefined {
  const m = /^([a-z]+):(.*)$/.exec(entry);
  if (!m) return `'${entry}' is not TRANSPORT:KEY=VALUE,...`;
  const params = new Map<string, string>();
  for (const kv of m[2]!.split(',').filter((p) => p)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) return `'${kv}' in '${entry}' is not KEY=VALUE`;
    params.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  switch (m[1]) {
    case 'unix':
      if (params.get('path') || params.get('socket')) return undefined;
      // dbus-next reaches abstract sockets only through the native usocket, which is not built (allowScripts).
      return params.has('abstract') ? `'${entry}': abstract sockets are not supported, name a socket path` : `'${entry}' names no path=`;
    case 'tcp': {
      const port = params.get('port') ?? '';
      return /^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535 ? undefined : `'${entry}' wants port=1..65535`;
    }
    default:
      return `'${m[1]}' in '${entry}' is not a transport we can use (unix or tcp)`;
  }
}

export function connectSystemBus(): MessageBus {
  return endAware(dbus.sessionBus({ busAddress: systemBusAddress() }));
}

/** A call made on, or waiting on, a connection that has ended (the bus daemon gone, or the daemon's own disconnect). */
export class BusEnded extends Error {
  constructor() {
    super('the bus connection has ended: no answer can come');
  }
}

/**
 * Messages sent once the connection has ended (the daemon's own disconnect at its stop, or the bus daemon gone)
 * are dropped: nobody could receive them, and dbus-next throws from send() then. It sends by itself too: the answer
 * to a call that came in meanwhile (a status poller's property read or QueryStatus, queued before the bus daemon
 * saw the end), a PropertiesChanged from a timer. Thrown there, the error was uncaught and ended the daemon with
 * exit code 1 in the middle of its stop, on a SIGTERM that should have ended it with 0.
 *
 * A call waiting for its answer when the connection ends is rejected then (BusEnded), and so is one made after:
 * dbus-next would keep it waiting for ever, and the caller's deadline (20 s for furkad's hand-over to grimseld)
 * stretched a stop during which the bus went away past systemd's TimeoutStopSec, and the daemon was killed.
 */
function endAware(bus: MessageBus): MessageBus {
  const connection = (bus as unknown as { _connection?: { stream?: { writable?: boolean; once?(ev: string, f: () => void): void }; once(ev: string, f: () => void): void } })._connection;
  const stream = connection?.stream;
  let ended = false;
  const waiting = new Set<(e: Error) => void>();
  const end = (): void => {
    ended = true;
    for (const reject of waiting) reject(new BusEnded());
    waiting.clear();
  };
  // The end the bus daemon sent, or the socket closed (an error of the stream; not an error of one message, which
  // dbus-next reports on the same 'error' event and which leaves the connection open).
  connection?.once('end', end);
  stream?.once?.('close', end);
  const over = (): boolean => ended || stream?.writable === false;
  const send = bus.send.bind(bus);
  bus.send = (msg: dbus.Message): void => {
    if (!over()) send(msg);
  };
  const call = bus.call.bind(bus);
  bus.call = (msg: dbus.Message): Promise<dbus.Message | null> => {
    if (over()) return Promise.reject(new BusEnded());
    return new Promise((resolve, reject) => {
      waiting.add(reject);
      call(msg).then(resolve, reject).finally(() => waiting.delete(reject));
    });
  };
  return bus;
}

/** Rejects when the connection fails (no bus socket, bus gone): race a client's calls against it. */
export function busFailure(bus: MessageBus): Promise<never> {
  return new Promise((_, reject) => bus.on('error', (e: Error) => reject(e)));
}

/**
 * Resolves with the reason once the daemon's connection to the bus is gone or failed (no bus socket at start,
 * the bus daemon ended): dbus-next neither reconnects nor says so until the next write fails. A daemon without
 * its bus can be neither asked nor told anything; it stops, with exit code 1, and systemd starts it again
 * (Restart=on-failure) once the bus is back.
 */
export function busLost(bus: MessageBus): Promise<string> {
  return new Promise((resolve) => {
    bus.once('error', (e: Error) => resolve(e.message));
    // The connection's end, as dbus-next's own MessageBus keeps it (it forwards errors only).
    (bus as unknown as { _connection?: { once(ev: 'end', f: () => void): void } })._connection?.once('end', () => resolve('the bus closed the connection'));
  });
}

/**
 * A daemon's watch on its bus connection: errors are logged; its loss (busLost) is said once and resolves
 * `lost`, unless the daemon is stopping and ended the connection itself (disconnect).
 */
export class BusWatch {
  #gone: string | undefined;
  #stopping = false;
  readonly lost: Promise<void>;

  constructor(bus: MessageBus, log: Logger) {
    // Once stopping, an error is the end the daemon asked for (a connection still in its handshake, ended by a
    // failed start, reports "write after end"): not worth a stack in the log.
    bus.on('error', (e) => {
      if (this.#stopping) log.debug({ err: (e as Error).message }, 'bus connection error while stopping');
      else log.error({ err: e }, 'bus connection error');
    });
    this.lost = busLost(bus).then((why) => {
      if (this.#stopping) return;
      this.#gone = why;
      log.error({ why }, 'lost the system bus: stopping (exit code 1), to be started again by systemd once the bus is back');
    });
  }

  /** Why the bus was lost before the daemon began to stop; undefined if it was not. */
  get gone(): string | undefined {
    return this.#gone;
  }

  /** From now on the end of the connection is the daemon's own doing. */
  stopping(): void {
    this.#stopping = true;
  }
}

/** Owns `name` or throws: a second instance must not run silently queued behind the first. */
export async function ownName(bus: MessageBus, name: string): Promise<void> {
  // A bus that cannot be reached never answers: its error ends the wait (and so the daemon's start).
  const reply = await Promise.race([bus.requestName(name, dbus.NameFlag.DO_NOT_QUEUE), busFailure(bus)]);
  if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
    throw new Error(`bus name ${name} is already owned by another process (is another instance running?)`);
  }
}

/** Waits until `name` has an owner on the bus, or `timeoutMs` passes. */
export async function waitForName(bus: MessageBus, name: string, timeoutMs: number): Promise<boolean> {
  const proxy = await bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus');
  const iface = proxy.getInterface('org.freedesktop.DBus');
  const end = monotonicMs() + timeoutMs;
  for (;;) {
    if ((await callMethod(iface, 'NameHasOwner', name)) as boolean) return true;
    if (monotonicMs() >= end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A call that got no answer in time: the peer may be stopped, hung or gone without the bus noticing. */
export class CallTimeout extends Error {}

/**
 * Resolves or rejects as `work` does, or rejects with CallTimeout after `ms`, or with `signal`'s reason when it aborts:
 * dbus-next waits for a reply for ever, and a bus need not have a reply timeout of its own.
 */
export function within<T>(work: Promise<T>, ms: number, what: string, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
    };
    const aborted = (): void => {
      done();
      reject(signal?.reason instanceof Error ? signal.reason : new Error(`${what}: given up`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new CallTimeout(`${what}: no answer within ${ms} ms`));
    }, ms);
    if (signal?.aborted) return aborted();
    signal?.addEventListener('abort', aborted, { once: true });
    work.then((v) => { done(); resolve(v); }, (e: unknown) => { done(); reject(e); });
  });
}

/**
 * Calls `onOwner(owner)` whenever `name` changes hands ('' = no owner now), from the bus's own
 * NameOwnerChanged signal; resolves once the match rule is in place, so no change after it is missed.
 * The rule names the one bus name (arg0): no other name's traffic reaches this process.
 */
export async function watchNameOwner(bus: MessageBus, name: string, onOwner: (owner: string) => void, timeoutMs = 10_000): Promise<void> {
  bus.on('message', (msg: dbus.Message) => {
    if (msg.type === dbus.MessageType.SIGNAL && msg.sender === 'org.freedesktop.DBus' && msg.member === 'NameOwnerChanged' &&
        msg.interface === 'org.freedesktop.DBus' && (msg.body as string[])[0] === name) {
      onOwner((msg.body as string[])[2] ?? '');
    }
  });
  await within(bus.call(new dbus.Message({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch',
    signature: 's', body: [`type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${name}'`],
  })), timeoutMs, `AddMatch for ${name}`);
}

/** Calls a method on a proxy interface; a missing member is an error naming it, not a TypeError. */
export function callMethod(iface: dbus.ClientInterface, member: string, ...args: unknown[]): Promise<unknown> {
  const fn = (iface as unknown as Record<string, ((...a: unknown[]) => Promise<unknown>) | undefined>)[member];
  if (typeof fn !== 'function') return Promise.reject(new Error(`the bus peer has no method ${member}`));
  return fn.apply(iface, args);
}

/** The methods of an interface as given to configureMembers: member name → its signatures. */
export type MethodTable = Record<string, { inSignature?: string; outSignature?: string }>;

/**
 * Exports `iface` (named `name`) at `path`, and answers a call of one of its methods with the wrong argument
 * types with org.freedesktop.DBus.Error.InvalidArgs naming the expected signature. dbus-next matches a call by
 * member *and* signature, so a wrong signature falls through to "Method ... does not exist": a caller who
 * mistyped one argument was told the method is not there. Its public addMethodHandler runs before that match.
 *
 * The members named in `withCaller` are called with one more argument, the caller's uid as the bus daemon
 * knows it (callerUid): dbus-next hands a method its arguments only, never the message or its sender. They
 * return nothing or one value. A caller whose uid cannot be learned is refused (org.ppu.Error.NotAllowed).
 */
export function exportInterface(bus: MessageBus, path: string, iface: dbus.interface.Interface, name: string, methods: MethodTable,
  withCaller: readonly string[] = []): void {
  bus.export(path, iface);
  bus.addMethodHandler((msg: dbus.Message): boolean => {
    if (msg.path !== path || msg.interface !== name || !Object.prototype.hasOwnProperty.call(methods, msg.member)) return false;
    const want = methods[msg.member]!.inSignature ?? '';
    const got = msg.signature ?? '';
    if (got === want) {
      if (!withCaller.includes(msg.member!)) return false;
      void answerWithCaller(bus, msg, iface, methods[msg.member!]!.outSignature ?? '');
      return true;
    }
    bus.send(dbus.Message.newError(msg as unknown as string, 'org.freedesktop.DBus.Error.InvalidArgs',
      `${name}.${msg.member} takes arguments of signature '${want}', got ${got ? `'${got}'` : 'none'}`));
    return true;
  });
}

/** The uid of the connection `sender` (a unique bus name), as the bus daemon has it from the kernel. */
export async function callerUid(bus: MessageBus, sender: string): Promise<number> {
  const reply = await bus.call(new dbus.Message({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member: 'GetConnectionUnixUser', signature: 's', body: [sender],
  }));
  const uid = reply?.body[0] as unknown;
  if (typeof uid !== 'number' || !Number.isInteger(uid) || uid < 0) throw new Error(`the bus daemon gave no uid for ${sender}`);
  return uid;
}

/** Calls member `msg.member` of `iface` with the message's arguments and the sender's uid, and replies (exportInterface). */
async function answerWithCaller(bus: MessageBus, msg: dbus.Message, iface: dbus.interface.Interface, outSignature: string): Promise<void> {
  const call = msg as unknown as string; // dbus-next's typings give newError's message argument as a string
  let uid: number;
  try {
    uid = await callerUid(bus, msg.sender ?? '');
  } catch (e) {
    bus.send(dbus.Message.newError(call, ErrorNames.NotAllowed, `cannot tell who is calling (${(e as Error).message}); refused`));
    return;
  }
  try {
    const fn = (iface as unknown as Record<string, (...a: unknown[]) => unknown>)[msg.member!]!;
    const out = await fn.apply(iface, [...(msg.body as unknown[]), uid]);
    bus.send(dbus.Message.newMethodReturn(msg, outSignature, outSignature === '' ? [] : [out]));
  } catch (e) {
    // As dbus-next does for its own methods: a DBusError leaves with its name, anything else as Failed.
    const err = e instanceof dbus.DBusError ? e : new dbus.DBusError(ErrorNames.Failed, (e as Error).message ?? String(e));
    bus.send(dbus.Message.newError(call, err.type, err.text));
  }
}

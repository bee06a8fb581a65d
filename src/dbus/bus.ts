// Connection to the system bus (or the one DBUS_SYSTEM_BUS_ADDRESS names) and name ownership.
import * as dbus from 'dbus-next';

export type MessageBus = dbus.MessageBus;

const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';

/**
 * The system bus, or the one DBUS_SYSTEM_BUS_ADDRESS names. Unix paths are handed to dbus-next as
 * `socket=`, which makes it use Node's own socket instead of the optional native `usocket`: that one
 * segfaults when a connection is closed while it connects, and we pass no file descriptors.
 */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env): string {
  return (env['DBUS_SYSTEM_BUS_ADDRESS'] || DEFAULT_SYSTEM_BUS)
    .split(';')
    .map((a) => a.replace(/^unix:(.*?)\bpath=/, 'unix:$1socket='))
    .join(';');
}

export function connectSystemBus(): MessageBus {
  return dbus.sessionBus({ busAddress: systemBusAddress() });
}

/** Rejects when the connection fails (no bus socket, bus gone): race a client's calls against it. */
export function busFailure(bus: MessageBus): Promise<never> {
  return new Promise((_, reject) => bus.on('error', (e: Error) => reject(e)));
}

/** Owns `name` or throws: a second instance must not run silently queued behind the first. */
export async function ownName(bus: MessageBus, name: string): Promise<void> {
  const reply = await bus.requestName(name, dbus.NameFlag.DO_NOT_QUEUE);
  if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
    throw new Error(`bus name ${name} is already owned by another process (is another instance running?)`);
  }
}

/** Waits until `name` has an owner on the bus, or `timeoutMs` passes. */
export async function waitForName(bus: MessageBus, name: string, timeoutMs: number): Promise<boolean> {
  const proxy = await bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus');
  const iface = proxy.getInterface('org.freedesktop.DBus');
  const end = Date.now() + timeoutMs;
  for (;;) {
    if ((await callMethod(iface, 'NameHasOwner', name)) as boolean) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Calls a method on a proxy interface; a missing member is an error naming it, not a TypeError. */
export function callMethod(iface: dbus.ClientInterface, member: string, ...args: unknown[]): Promise<unknown> {
  const fn = (iface as unknown as Record<string, ((...a: unknown[]) => Promise<unknown>) | undefined>)[member];
  if (typeof fn !== 'function') return Promise.reject(new Error(`the bus peer has no method ${member}`));
  return fn.apply(iface, args);
}

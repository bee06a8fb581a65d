// Named D-Bus errors: only a DBusError reaches a caller with its own name, so every failure maps here.
import { DBusError } from 'dbus-next';

export const ErrorNames = {
  InvalidArgs: 'org.ppu.Error.InvalidArgs',
  UnknownDetector: 'org.ppu.Error.UnknownDetector',
  NoShift: 'org.ppu.Error.NoShift',
  NotFound: 'org.ppu.Error.NotFound',
  NotAllowed: 'org.ppu.Error.NotAllowed',
  Failed: 'org.ppu.Error.Failed',
} as const;

export function invalidArgs(text: string): DBusError {
  return new DBusError(ErrorNames.InvalidArgs, text);
}

/** Wraps a handler so that anything not already a DBusError leaves as org.ppu.Error.Failed, without a stack. */
export async function named<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof DBusError) throw e;
    throw new DBusError(ErrorNames.Failed, (e as Error).message ?? String(e));
  }
}

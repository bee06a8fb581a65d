// org.ppu.Grimsel1: grimseld's public bus interface, declared once with real types (S2, G8, G9, G10, I2).
// Members: QueryStatus(i nusers) → a(tuusttt) (G9, as the spec fixes it); QueryVerified(i nusers) → a(tuust),
// the copies verified against the file's checksum, per row of QueryStatus (I2); QueryStatusVerified(i nusers) →
// a(tuustttt), both of one moment (what ppuctl reads); AddFile(s) (G8); properties
// StatusPort, MessagePort, License, Storages; signal Message(sss) (G10).
import * as dbus from 'dbus-next';
import { DBusError } from 'dbus-next';
import { ErrorNames, invalidArgs, named } from './errors.js';

/** One row of QueryStatus (G9): (t usertime, u uid, u gid, s storage, t pending, t copied, t failed), newest shift first. */
export type StatusRow = [bigint, number, number, string, bigint, bigint, bigint];

/**
 * One row of QueryVerified (I2): (t usertime, u uid, u gid, s storage, t verified), the rows of QueryStatus in
 * its order. `verified` counts the copies among `copied` that were read back and found to have the file's
 * checksum. A member of its own: QueryStatus's signature is fixed by the spec (S2) and scripts rely on it.
 */
export type VerifiedRow = [bigint, number, number, string, bigint];

/**
 * One row of QueryStatusVerified: a row of QueryStatus with its verified copies last, all counted at one moment, so
 * that verified ≤ copied in every row. Two calls (QueryStatus, then QueryVerified) count at two moments: during a
 * stream a row could show more verified copies than copied ones.
 */
export type StatusVerifiedRow = [bigint, number, number, string, bigint, bigint, bigint, bigint];

export interface GrimselService {
  queryStatus(nusers: number): StatusRow[];
  queryVerified(nusers: number): VerifiedRow[];
  queryStatusVerified(nusers: number): StatusVerifiedRow[];
  /** G8: `callerUid` is who called, as the bus daemon says (exportInterface's withCaller): not root, then checked. */
  addFile(path: string, callerUid: number): Promise<void>;
  /** TCP ports actually bound (G9, G10): with port 0 in the config only the daemon knows them. */
  tcpPorts(): { status: number; message: number };
  /** G14: whether the license key is valid, and why (not). */
  license(): { valid: boolean; reason: string };
  /** Each storage: id, type, target, writers in use. */
  storages(): Array<[string, string, string, number]>;
}

export class GrimselInterface extends dbus.interface.Interface {
  constructor(name: string, private readonly service: GrimselService) {
    super(name);
  }

  QueryStatus(nusers: number): Promise<StatusRow[]> {
    return named(() => {
      if (nusers < -1) throw invalidArgs(`nusers must be -1 (all) or a count, got ${nusers}`);
      return this.service.queryStatus(nusers);
    });
  }

  QueryVerified(nusers: number): Promise<VerifiedRow[]> {
    return named(() => {
      if (nusers < -1) throw invalidArgs(`nusers must be -1 (all) or a count, got ${nusers}`);
      return this.service.queryVerified(nusers);
    });
  }

  QueryStatusVerified(nusers: number): Promise<StatusVerifiedRow[]> {
    return named(() => {
      if (nusers < -1) throw invalidArgs(`nusers must be -1 (all) or a count, got ${nusers}`);
      return this.service.queryStatusVerified(nusers);
    });
  }

  /** Called with the caller's uid (GRIMSEL_WITH_CALLER); without one (not through exportInterface) it refuses. */
  AddFile(path: string, callerUid?: number): Promise<void> {
    return named(() => {
      if (callerUid === undefined) throw new DBusError(ErrorNames.NotAllowed, 'AddFile cannot tell who is calling; refused');
      return this.service.addFile(path, callerUid);
    });
  }

  get StatusPort(): number {
    return this.service.tcpPorts().status;
  }

  get MessagePort(): number {
    return this.service.tcpPorts().message;
  }

  get License(): [boolean, string] {
    const l = this.service.license();
    return [l.valid, l.reason];
  }

  get Storages(): Array<[string, string, string, number]> {
    return this.service.storages();
  }

  /** Emits org.ppu.Grimsel1.Message (G10). */
  Message(errcode: string, shortMessage: string, longMessage: string): [string, string, string] {
    return [errcode, shortMessage, longMessage];
  }
}

/** Its methods, also handed to exportInterface, which refuses a call with other argument types by name. */
export const GRIMSEL_METHODS = {
  QueryStatus: { inSignature: 'i', outSignature: 'a(tuusttt)' },
  // Per shift x storage: start, uid, gid, storage, copies verified against the file's checksum (I2); as QueryStatus.
  QueryVerified: { inSignature: 'i', outSignature: 'a(tuust)' },
  // Both of one moment: QueryStatus's row, then its verified copies (verified <= copied in each row).
  QueryStatusVerified: { inSignature: 'i', outSignature: 'a(tuustttt)' },
  AddFile: { inSignature: 's', outSignature: '' },
} as const;

/** Members called with the caller's uid (exportInterface): AddFile checks a caller who is not root (G8). */
export const GRIMSEL_WITH_CALLER = ['AddFile'] as const;

GrimselInterface.configureMembers({
  methods: GRIMSEL_METHODS,
  properties: {
    // TCP status and message ports actually listened on (0 until listening).
    StatusPort: { signature: 'q', access: dbus.interface.ACCESS_READ },
    MessagePort: { signature: 'q', access: dbus.interface.ACCESS_READ },
    // G14: license valid, and the reason shown to operators.
    License: { signature: '(bs)', access: dbus.interface.ACCESS_READ },
    // id, type, target, writers in use (1 each without a valid license).
    Storages: { signature: 'a(sssu)', access: dbus.interface.ACCESS_READ },
  },
  signals: {
    Message: { signature: 'sss' },
  },
});

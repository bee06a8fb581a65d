// org.ppu.GrimselIntake1: how furkad hands shift starts and delivered files to grimseld. Root only (bus policy).
import * as dbus from 'dbus-next';
import { named } from './errors.js';

export interface IntakeService {
  shiftStarted(usertime: bigint, uid: number, gid: number): Promise<void>;
  /** Resolves once grimseld has journaled the files (G12): only then may furkad forget them. */
  delivered(usertime: bigint, uid: number, gid: number, paths: string[]): Promise<void>;
}

export class IntakeInterface extends dbus.interface.Interface {
  constructor(name: string, private readonly service: IntakeService) {
    super(name);
  }

  ShiftStarted(usertime: bigint, uid: number, gid: number): Promise<void> {
    return named(() => this.service.shiftStarted(usertime, uid, gid));
  }

  /** The reply is sent once grimseld has taken responsibility for the files. */
  Delivered(usertime: bigint, uid: number, gid: number, paths: string[]): Promise<void> {
    return named(() => this.service.delivered(usertime, uid, gid, paths));
  }
}

/** Its methods, also handed to exportInterface, which refuses a call with other argument types by name. */
export const INTAKE_METHODS = {
  ShiftStarted: { inSignature: 'tuu', outSignature: '' },
  Delivered: { inSignature: 'tuuas', outSignature: '' },
} as const;

IntakeInterface.configureMembers({
  methods: INTAKE_METHODS,
});

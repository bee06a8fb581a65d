// org.ppu.GrimselIntake1: how furkad hands shift starts and delivered files to grimseld. Root only (bus policy).
import * as dbus from 'dbus-next';
import { named } from './errors.js';

/**
 * One delivered file as it crosses the bus (`(sss)`): its marked path ('./'), the checksum it arrived with
 * (`xxh128:<hex>`, I1; '' when unknown) and the id of the detector it came from.
 */
export type DeliveredFile = [path: string, checksum: string, detector: string];

export interface IntakeService {
  shiftStarted(usertime: bigint, uid: number, gid: number): Promise<void>;
  /** Resolves once grimseld has journaled the files (G12): only then may furkad forget them. */
  delivered(usertime: bigint, uid: number, gid: number, files: DeliveredFile[]): Promise<void>;
}

export class IntakeInterface extends dbus.interface.Interface {
  constructor(name: string, private readonly service: IntakeService) {
    super(name);
  }

  ShiftStarted(usertime: bigint, uid: number, gid: number): Promise<void> {
    return named(() => this.service.shiftStarted(usertime, uid, gid));
  }

  /** The reply is sent once grimseld has taken responsibility for the files. */
  Delivered(usertime: bigint, uid: number, gid: number, files: DeliveredFile[]): Promise<void> {
    return named(() => this.service.delivered(usertime, uid, gid, files));
  }
}

/**
 * Its methods, also handed to exportInterface, which refuses a call with other argument types by name.
 * Delivered was `tuuas` (paths only) before files carried their checksums: furkad and grimseld ship and are
 * restarted together, and a furkad of the old kind keeps its files in its outbox until it is replaced.
 */
export const INTAKE_METHODS = {
  ShiftStarted: { inSignature: 'tuu', outSignature: '' },
  Delivered: { inSignature: 'tuua(sss)', outSignature: '' },
} as const;

IntakeInterface.configureMembers({
  methods: INTAKE_METHODS,
});

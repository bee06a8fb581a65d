// org.ppu.Furka1: furkad's bus interface, declared once with real types (SPEC S2, F6).
import * as dbus from 'dbus-next';
import { named } from './errors.js';

/** What furkad provides behind the interface. Errors thrown must be DBusErrors to keep their names. */
export interface FurkaService {
  startShift(uid: number, gid: number, detectors: Array<[string, string, string]>): Promise<void>;
  currentShift(): { usertime: bigint; uid: number; gid: number };
  /** The next scheduled shift change, µs since the epoch; 0 or absent = none scheduled. */
  nextShift?(): bigint;
}

export class FurkaInterface extends dbus.interface.Interface {
  constructor(name: string, private readonly service: FurkaService) {
    super(name);
  }

  StartShift(uid: number, gid: number, detectors: Array<[string, string, string]>): Promise<void> {
    return named(() => this.service.startShift(uid, gid, detectors));
  }

  get Shift(): [bigint, number, number] {
    const s = this.service.currentShift();
    return [s.usertime, s.uid, s.gid];
  }

  get NextShift(): bigint {
    return this.service.nextShift?.() ?? 0n;
  }

  /** Tells property watchers (busctl monitor, ppuctl) that the shift changed. */
  shiftChanged(): void {
    dbus.interface.Interface.emitPropertiesChanged(this, { Shift: this.Shift }, []);
  }

  nextShiftChanged(): void {
    dbus.interface.Interface.emitPropertiesChanged(this, { NextShift: this.NextShift }, []);
  }
}

FurkaInterface.configureMembers({
  methods: {
    StartShift: { inSignature: 'uua(sss)', outSignature: '' },
  },
  properties: {
    // Shift start (µs since the epoch), uid, gid.
    Shift: { signature: '(tuu)', access: dbus.interface.ACCESS_READ },
    // Next scheduled shift change (µs since the epoch), 0 without shift_schedule.
    NextShift: { signature: 't', access: dbus.interface.ACCESS_READ },
  },
});

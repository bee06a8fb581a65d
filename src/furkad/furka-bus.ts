// furkad on the bus: org.ppu.Furka1 exported, kept current from the changes of shifts, loops and schedule, and
// the name owned; all of it once started, and no signal sent once stopped.
import { exportInterface, ownName, type MessageBus } from '../dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH } from '../dbus/names.js';
import { detectorRow, FURKA_METHODS, FurkaInterface } from '../dbus/furka-interface.js';
import type { LicenseCheck } from '../common/license.js';
import type { Component } from '../common/service.js';
import type { DetectorLoop } from './detector.js';
import type { Handover } from './handover.js';
import type { ShiftManager } from './shift-manager.js';
import type { ShiftSchedule } from './shift-schedule.js';

export class FurkaBus implements Component {
  readonly name = `bus name ${FURKA_NAME}`;
  readonly #iface: FurkaInterface;
  #unsubscribe: Array<() => void> = [];

  constructor(
    private readonly bus: MessageBus,
    private readonly shifts: ShiftManager,
    private readonly loops: readonly DetectorLoop[],
    private readonly schedule: ShiftSchedule | undefined,
    license: LicenseCheck,
    handover: Pick<Handover, 'pending' | 'lastError'>,
  ) {
    this.#iface = new FurkaInterface(FURKA_IFACE, {
      startShift: (uid, gid, detectors) => shifts.startShift(uid, gid, detectors),
      currentShift: () => shifts.currentShift(),
      nextShift: () => BigInt(schedule?.next?.getTime() ?? 0) * 1000n,
      detectors: () => loops.map((l) => detectorRow({ id: l.id, ...l.stats })),
      license: () => [license.valid, license.reason],
      handover: () => [BigInt(handover.pending), handover.lastError],
    });
  }

  /** Exports the interface, then owns the name: whoever sees the name can call it. */
  async start(): Promise<void> {
    const iface = this.#iface;
    this.#unsubscribe = [
      this.shifts.changed.on(() => iface.shiftChanged()),
      ...this.loops.map((l) => l.changed.on(() => iface.detectorsChanged())),
      ...(this.schedule ? [this.schedule.nextChanged.on(() => iface.nextShiftChanged())] : []),
    ];
    exportInterface(this.bus, FURKA_PATH, iface, FURKA_IFACE, FURKA_METHODS);
    await ownName(this.bus, FURKA_NAME);
  }

  /** No PropertiesChanged after this: the connection is closed next. */
  stop(): void {
    this.#unsubscribe.splice(0).forEach((off) => off());
    this.#iface.close();
  }
}

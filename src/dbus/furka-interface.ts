// org.ppu.Furka1: furkad's bus interface, declared once with real types (S2, F1, F6, F8).
import * as dbus from 'dbus-next';
import { named } from './errors.js';

/** A detector's state after its last run: transferring = it moved files, idle = nothing new; retrying = backing
 *  off after an outage; down = a configuration error the transport will not get over by itself (F10). */
export type DetectorState = 'idle' | 'transferring' | 'retrying' | 'down';
export const DETECTOR_STATES: readonly DetectorState[] = ['idle', 'transferring', 'retrying', 'down'];

/**
 * One detector as furkad reports it (the Detectors property): the one shape of a detector's status that the
 * loop keeps, the bus carries (as a DetectorRow), and ppuctl and the metrics read.
 */
export interface DetectorStatus {
  id: string;
  /** A DetectorState of this furkad; any string from the bus (a newer furkad may know more). */
  state: string;
  /** '' = none. */
  lastError: string;
  /** Files and bytes transferred in the current shift (they start again at 0 with every shift). */
  files: number;
  bytes: number;
  /** Duration of the last run that moved files, its start to files in place (µs); 0 = none yet. */
  lastRunUs: number;
}

/** A DetectorStatus as it crosses the bus: (s id, s state, s last error, t files, t bytes, t last run µs). */
export type DetectorRow = [string, string, string, bigint, bigint, bigint];

export function detectorRow(d: DetectorStatus): DetectorRow {
  return [d.id, d.state, d.lastError, BigInt(d.files), BigInt(d.bytes), BigInt(d.lastRunUs)];
}

export function detectorStatus([id, state, lastError, files, bytes, lastRunUs]: DetectorRow): DetectorStatus {
  return { id, state, lastError, files: Number(files), bytes: Number(bytes), lastRunUs: Number(lastRunUs) };
}

/** What furkad provides behind the interface. Errors thrown must be DBusErrors to keep their names. */
export interface FurkaService {
  startShift(uid: number, gid: number, detectors: Array<[string, string, string]>): Promise<void>;
  currentShift(): { usertime: bigint; uid: number; gid: number };
  /** Next scheduled shift start (µs since the epoch), 0 = none scheduled. */
  nextShift(): bigint;
  detectors(): DetectorRow[];
  /** Licensed (parallel detectors) or not (one transfer at a time), and why. */
  license(): [boolean, string];
  /** Files placed and not yet taken by grimseld, and why the last hand-over failed ('' = none). */
  handover(): [bigint, string];
}

/** Detector figures change with every run; watchers get at most one PropertiesChanged per this interval. */
const DETECTORS_SIGNAL_MS = 250;

export class FurkaInterface extends dbus.interface.Interface {
  #detectorsTimer: NodeJS.Timeout | undefined;

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
    return this.service.nextShift();
  }

  nextShiftChanged(): void {
    dbus.interface.Interface.emitPropertiesChanged(this, { NextShift: this.NextShift }, []);
  }

  get Detectors(): DetectorRow[] {
    return this.service.detectors();
  }

  get License(): [boolean, string] {
    return this.service.license();
  }

  get Handover(): [bigint, string] {
    return this.service.handover();
  }

  /** Tells property watchers (busctl monitor, ppuctl) that the shift changed. */
  shiftChanged(): void {
    dbus.interface.Interface.emitPropertiesChanged(this, { Shift: this.Shift }, []);
  }

  /** A detector's state or figures changed: signalled soon, coalesced, off the transfer path. */
  detectorsChanged(): void {
    if (this.#detectorsTimer) return;
    this.#detectorsTimer = setTimeout(() => {
      this.#detectorsTimer = undefined;
      dbus.interface.Interface.emitPropertiesChanged(this, { Detectors: this.Detectors }, []);
    }, DETECTORS_SIGNAL_MS);
    this.#detectorsTimer.unref();
  }

  /**
   * The introspection dbus-next builds, with what it cannot declare: Handover is read when asked, never signalled
   * (EmitsChangedSignal=false), and License is fixed for the run (const). Without, busctl introspect showed both
   * as emits-change, and a proxy that caches properties (GDBus) would show an old Handover for ever.
   */
  $introspect(): unknown {
    type Xml = { property?: Array<{ $: { name: string }; annotation?: Array<{ $: { name: string; value: string } }> }> };
    // Not in dbus-next's types: what its service asks each interface for (lib/service/interface.js).
    const base = (dbus.interface.Interface.prototype as unknown as { $introspect(this: unknown): Xml }).$introspect;
    const xml = base.call(this);
    for (const p of xml.property ?? []) {
      const emits = p.$.name === 'Handover' ? 'false' : p.$.name === 'License' ? 'const' : undefined;
      if (emits) p.annotation = [{ $: { name: 'org.freedesktop.DBus.Property.EmitsChangedSignal', value: emits } }];
    }
    return xml;
  }

  /** Stops a pending signal (shutdown). */
  close(): void {
    if (this.#detectorsTimer) clearTimeout(this.#detectorsTimer);
  }
}

/** Its methods, also handed to exportInterface, which refuses a call with other argument types by name. */
export const FURKA_METHODS = {
  StartShift: { inSignature: 'uua(sss)', outSignature: '' },
} as const;

FurkaInterface.configureMembers({
  methods: FURKA_METHODS,
  properties: {
    // Shift start (µs since the epoch), uid, gid.
    Shift: { signature: '(tuu)', access: dbus.interface.ACCESS_READ },
    // Next scheduled shift start (µs since the epoch), 0 = none (shift_schedule unset).
    NextShift: { signature: 't', access: dbus.interface.ACCESS_READ },
    // Per detector: id, state (idle|transferring|retrying|down), last error ('' = none),
    // files and bytes transferred this shift, duration of the last run that moved files (µs).
    Detectors: { signature: 'a(sssttt)', access: dbus.interface.ACCESS_READ },
    // Licensed (detectors in parallel) or not (one transfer at a time), and the reason.
    License: { signature: '(bs)', access: dbus.interface.ACCESS_READ },
    // Files placed and not yet taken by grimseld (its journal noted them), and why the last hand-over failed
    // ('' = none). Read when asked (ppuctl status), not signalled: it changes with every batch.
    Handover: { signature: '(ts)', access: dbus.interface.ACCESS_READ },
  },
});

// org.ppu.Grimsel1: grimseld's public bus interface, declared once with real types (SPEC S2, G8, G9, G10).
import * as dbus from 'dbus-next';
import { invalidArgs, named } from './errors.js';

export type StatusRow = [bigint, number, number, string, bigint, bigint, bigint];

export interface GrimselService {
  queryStatus(nusers: number): StatusRow[];
  addFile(path: string): Promise<void>;
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

  AddFile(path: string): Promise<void> {
    return named(() => this.service.addFile(path));
  }

  /** Emits org.ppu.Grimsel1.Message (G10). */
  Message(errcode: string, shortMessage: string, longMessage: string): [string, string, string] {
    return [errcode, shortMessage, longMessage];
  }
}

GrimselInterface.configureMembers({
  methods: {
    QueryStatus: { inSignature: 'i', outSignature: 'a(tuusttt)' },
    AddFile: { inSignature: 's', outSignature: '' },
  },
  signals: {
    Message: { signature: 'sss' },
  },
});

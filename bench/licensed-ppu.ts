// A PPU as a beamline runs it: both daemons licensed (F8, G14), since unlicensed they run one transfer
// across all detectors and one writer per storage, which is not what the benchmarks are about.
import * as path from 'node:path';
import { Ppu, type PpuOptions } from '../test/fixtures/ppu.js';
import { testIssuer } from '../test/fixtures/license.js';

export function licensedPpu(opts: PpuOptions): Ppu {
  const ppu = new Ppu(opts);
  // The key lives in the PPU's temp directory, so stopping the PPU removes it too.
  const issuer = testIssuer(ppu.work);
  const licensekey = issuer.issue(path.join(ppu.work, 'license.key'));
  Object.assign(ppu.opts, {
    furkad: { licensekey, ...opts.furkad },
    grimseld: { licensekey, ...opts.grimseld },
    furkadEnv: { ...issuer.env, ...opts.furkadEnv },
    grimseldEnv: { ...issuer.env, ...opts.grimseldEnv },
  });
  return ppu;
}

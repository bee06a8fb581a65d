// `ppuctl license`: check a key on this machine, list the addresses a key can bind to, issue one (F8, G14).
import { readFileSync } from 'node:fs';
import { checkLicense, hardwareAddresses, issueLicense, IssuerKeyError } from '../common/license.js';
import { writeNew } from './write-new.js';

export interface LicenseOptions {
  'private-key'?: string | undefined;
  mac?: string | undefined;
  holder?: string | undefined;
  o?: string | undefined;
}

/** Exit code: 0 ok or valid, 1 invalid key; undefined = not a license command this understands (usage error). */
export function licenseCommand(sub: string | undefined, args: string[], opts: LicenseOptions): number | undefined {
  if (sub === 'addresses' && args.length === 0) {
    process.stdout.write([...hardwareAddresses()].map((a) => `${a}\n`).join(''));
    return 0;
  }
  if (sub === 'check' && args.length <= 1) {
    const r = checkLicense(args[0] ?? '/var/lib/furka/license.key');
    process.stdout.write(`${r.valid ? 'valid' : 'invalid'}: ${r.reason}\n`);
    return r.valid ? 0 : 1;
  }
  if (sub === 'issue' && args.length === 0 && opts['private-key'] && opts.mac && opts.holder) {
    let text: string;
    try {
      text = issueLicense(readFileSync(opts['private-key'], 'utf8'), { holder: opts.holder, mac: opts.mac, issued: new Date().toISOString() }); // wall clock: a date on the license
    } catch (e) {
      if (e instanceof IssuerKeyError) throw new Error(`--private-key ${opts['private-key']} ${e.message}`);
      throw e;
    }
    if (opts.o === undefined) process.stdout.write(text);
    // Never overwrite: the target is usually a live key.
    else writeNew(opts.o, text, 0o644);
    return 0;
  }
  return undefined;
}

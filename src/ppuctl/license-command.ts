// `ppuctl license`: check a key on this machine, list the addresses a key can bind to, issue one (F8, G14).
import { existsSync, readFileSync } from 'node:fs';
import { checkLicense, interfaceAddresses, issueLicense, IssuerKeyError, verificationKeyFile, type LicenseCheck } from '../common/license.js';
import { loadConfig } from '../common/config-file.js';
import { DEFAULT_CONFIG_PATH as FURKAD_CONFIG, validateFurkadConfig } from '../furkad/config.js';
import { DEFAULT_CONFIG_PATH as GRIMSELD_CONFIG, grimseldValidator } from '../grimseld/config.js';
import { writeNew } from './write-new.js';

export interface LicenseOptions {
  'private-key'?: string | undefined;
  mac?: string | undefined;
  holder?: string | undefined;
  o?: string | undefined;
  'furkad-config'?: string | undefined;
  'grimseld-config'?: string | undefined;
}

/** What one daemon checks: its key file and the public key it verifies with, both from its configuration file. */
interface DaemonLicense {
  daemon: 'furkad' | 'grimseld';
  keyFile: string;
  /** undefined: the built-in public key. */
  publicKeyFile: string | undefined;
  /** The configuration file could not be read or is invalid: the daemon would not start with it. */
  problem?: string;
}

/**
 * The daemon's settings as it would read them: `licensekey` and `license_public_key` of its configuration file,
 * defaults where it has none, and $PPU_LICENSE_PUBLIC_KEY as the daemon sees it when not configured. Read from
 * the configuration files rather than from the units' environment: the file is what both daemons and ppuctl
 * read alike, while the environment systemd gives a unit is not ppuctl's (F8, G14).
 */
function daemonLicense(daemon: 'furkad' | 'grimseld', file: string): DaemonLicense {
  const validate = daemon === 'furkad' ? validateFurkadConfig : grimseldValidator();
  const defaultKey = ((validate.schema as { properties: Record<string, { default?: string }> }).properties['licensekey']!.default)!;
  if (!existsSync(file)) return { daemon, keyFile: defaultKey, publicKeyFile: verificationKeyFile(undefined) };
  try {
    const c = loadConfig<{ licensekey: string; license_public_key?: string }>(file, validate as never);
    return { daemon, keyFile: c.licensekey, publicKeyFile: verificationKeyFile(c.license_public_key) };
  } catch (e) {
    return { daemon, keyFile: defaultKey, publicKeyFile: undefined, problem: (e as Error).message };
  }
}

function verdict(r: LicenseCheck): string {
  return `${r.valid ? 'valid' : 'invalid'}: ${r.reason}`;
}

/**
 * `license check [FILE]`. Without FILE, each daemon's own key file with its own public key, one line each. With
 * FILE, that file with the public key the daemons use: one line when both use the same, else one per daemon.
 */
function check(file: string | undefined, opts: LicenseOptions): number {
  const daemons = [daemonLicense('furkad', opts['furkad-config'] ?? FURKAD_CONFIG),
    daemonLicense('grimseld', opts['grimseld-config'] ?? GRIMSELD_CONFIG)];
  const lines: string[] = [];
  let ok = true;
  const one = file !== undefined && daemons[0]!.publicKeyFile === daemons[1]!.publicKeyFile && !daemons.some((d) => d.problem);
  for (const d of one ? [daemons[0]!] : daemons) {
    if (d.problem) {
      lines.push(`${d.daemon}: cannot tell: ${d.problem}`);
      ok = false;
      continue;
    }
    const r = checkLicense(file ?? d.keyFile, { publicKeyFile: d.publicKeyFile });
    ok &&= r.valid;
    lines.push(one ? verdict(r) : `${d.daemon}: ${verdict(r)}`);
  }
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
  return ok ? 0 : 1;
}

/** `license addresses`: the permanent addresses, each with its interface, then what was left out and why. */
function addresses(): number {
  const all = interfaceAddresses();
  const usable = all.filter((i) => !i.leftOut);
  const out = usable.map((i) => `${i.mac} ${i.name}\n`);
  const left = all.filter((i) => i.leftOut);
  if (left.length) {
    out.push('# left out, no key can be bound to these:\n');
    for (const i of left) out.push(`# ${i.name}${i.mac ? ` ${i.mac}` : ''}: ${i.leftOut}\n`);
  }
  if (!usable.length) out.push('# no permanent hardware address: no key can be bound to this machine\n');
  process.stdout.write(out.join(''));
  return usable.length ? 0 : 1;
}

/** Exit code: 0 ok or valid, 1 invalid key; undefined = not a license command this understands (usage error). */
export function licenseCommand(sub: string | undefined, args: string[], opts: LicenseOptions): number | undefined {
  if (sub === 'addresses' && args.length === 0) return addresses();
  if (sub === 'check' && args.length <= 1) return check(args[0], opts);
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

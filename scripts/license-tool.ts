#!/usr/bin/env node
// License keys for the operator and the issuer (SPEC F8, G14): `issue` signs a key with a private key, `check` verifies one here.
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { checkLicense, hardwareAddresses, issueLicense } from '../src/common/license.js';

const USAGE = `usage: license-tool issue --private-key PEM --mac ADDRESS --holder NAME [-o FILE]
       license-tool check [FILE]          (default /var/lib/furka/license.key)
       license-tool addresses             hardware addresses a key can be bound to here
exit codes: 0 ok / valid, 1 invalid key, 2 bad usage
`;

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { 'private-key': { type: 'string' }, mac: { type: 'string' }, holder: { type: 'string' }, o: { type: 'string', short: 'o' } },
  });
  const [cmd, file] = positionals;
  if (cmd === 'addresses') {
    process.stdout.write([...hardwareAddresses()].map((a) => `${a}\n`).join(''));
    return 0;
  }
  if (cmd === 'check') {
    const r = checkLicense(file ?? '/var/lib/furka/license.key');
    process.stdout.write(`${r.valid ? 'valid' : 'invalid'}: ${r.reason}\n`);
    return r.valid ? 0 : 1;
  }
  if (cmd === 'issue' && values['private-key'] && values.mac && values.holder) {
    const text = issueLicense(readFileSync(values['private-key'], 'utf8'),
      { holder: values.holder, mac: values.mac, issued: new Date().toISOString() });
    if (values.o === undefined) process.stdout.write(text);
    else if (existsSync(values.o)) throw new Error(`${values.o} exists; remove it first or name another`);
    else writeFileSync(values.o, text, { mode: 0o644 });
    return 0;
  }
  process.stderr.write(USAGE);
  return 2;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`license-tool: ${(e as Error).message}\n`);
  process.exitCode = 2;
}

// Command line of both daemons: `--config PATH`, `--check`, `--help`.
import { parseArgs } from 'node:util';

export interface DaemonArgs {
  config: string;
  check: boolean;
}

export function parseDaemonArgs(name: string, defaultConfig: string, argv = process.argv.slice(2)): DaemonArgs {
  const usage = `usage: ${name} [--config PATH] [--check]\n` +
    `  --config PATH  configuration file (default ${defaultConfig})\n` +
    `  --check        validate the configuration, print the result and exit\n`;
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`${name}: ${(e as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  return { config: values.config ?? defaultConfig, check: values.check ?? false };
}

#!/usr/bin/env node
// ppuctl: the operator's command for daily work (SPEC S7). Plain-word errors and exit codes scripts can trust:
// 0 ok, 1 the daemon refused or failed, 2 bad usage, 3 daemon not reachable.
import { parseArgs } from 'node:util';
import * as dbus from 'dbus-next';
import { busFailure, callMethod, connectSystemBus } from '../dbus/bus.js';
import { FURKA_IFACE, FURKA_NAME, FURKA_PATH, GRIMSEL_IFACE, GRIMSEL_NAME, GRIMSEL_PATH } from '../dbus/names.js';
import { ConfigError } from '../common/config-file.js';
import { loadFurkadConfig } from '../furkad/config.js';
import { loadGrimseldConfig } from '../grimseld/config.js';
import { formatStatusTable, type StatusRow } from './status-table.js';

const USAGE = `usage: ppuctl COMMAND [options]

  status [-n N] [--json]                   shifts x storages: pending, copied, failed (newest first)
  shift start -u UID:GID [-d ID:SOURCE:TARGET ...]
                                           start a user shift (empty SOURCE/TARGET = configured default,
                                           no -d = every configured detector)
  shift show [--json]                      the shift furkad serves now
  add FILE...                              copy operator files (mark what to replicate with /./)
  config check FILE...                     validate furkad.conf / grimseld.conf files

The bus is the system bus, or the one DBUS_SYSTEM_BUS_ADDRESS names.
`;

class UsageError extends Error {}

function usage(msg: string): never {
  throw new UsageError(msg);
}

function parseUidGid(s: string | undefined): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(s ?? '');
  if (!m) usage(`-u wants UID:GID (numbers), got '${s ?? ''}'`);
  return [Number(m[1]), Number(m[2])];
}

function parseDetector(s: string): [string, string, string] {
  const [id, source = '', ...rest] = s.split(':');
  if (!id) usage(`-d wants ID:SOURCE:TARGET, got '${s}'`);
  return [id, source, rest.join(':')];
}

async function iface(bus: dbus.MessageBus, name: string, objPath: string, ifaceName: string): Promise<dbus.ClientInterface> {
  return (await bus.getProxyObject(name, objPath)).getInterface(ifaceName);
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      n: { type: 'string', short: 'n' },
      json: { type: 'boolean' },
      u: { type: 'string', short: 'u' },
      d: { type: 'string', short: 'd', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, ...rest] = positionals;
  if (values.help || !cmd) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  if (cmd === 'config') {
    if (sub !== 'check' || rest.length === 0) usage('config check FILE...');
    let bad = 0;
    for (const file of rest) {
      try {
        const c = /grimsel/.test(file) ? loadGrimseldConfig(file) : loadFurkadConfig(file);
        process.stdout.write(`${file}: valid (${'detector' in c ? `${Object.keys(c.detector).length} detectors` : `${Object.keys(c.storage).length} storages`})\n`);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        process.stdout.write(`${e.message}\n`);
        bad++;
      }
    }
    return bad ? 1 : 0;
  }

  const action = plan(cmd, sub, rest, values);
  const bus = connectSystemBus();
  try {
    return await Promise.race([action(bus), busFailure(bus)]);
  } finally {
    bus.disconnect();
  }
}

type Action = (bus: dbus.MessageBus) => Promise<number>;
type Values = { n?: string | undefined; json?: boolean | undefined; u?: string | undefined; d?: string[] | undefined };

/** Checks a bus command's arguments and returns what it will do: usage errors never touch the bus. */
function plan(cmd: string, sub: string | undefined, rest: string[], values: Values): Action {
  switch (cmd) {
    case 'status': {
      const n = values.n === undefined ? -1 : Number(values.n);
      if (!Number.isInteger(n) || n < -1) usage(`-n wants a number of shifts, got '${values.n}'`);
      return async (bus) => {
        const rows = (await callMethod(await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, GRIMSEL_IFACE), 'QueryStatus', n)) as StatusRow[];
        process.stdout.write(values.json
          ? `${JSON.stringify(rows.map((r) => ({ usertime: Number(r[0]), uid: r[1], gid: r[2], storage: r[3],
            pending: Number(r[4]), copied: Number(r[5]), failed: Number(r[6]) })), null, 2)}\n`
          : formatStatusTable(rows));
        return 0;
      };
    }
    case 'shift':
      if (sub === 'start') {
        const [uid, gid] = parseUidGid(values.u);
        const detectors = (values.d ?? []).map(parseDetector);
        return async (bus) => {
          await callMethod(await iface(bus, FURKA_NAME, FURKA_PATH, FURKA_IFACE), 'StartShift', uid, gid, detectors);
          process.stdout.write(`shift ${uid}:${gid} started\n`);
          return 0;
        };
      }
      if (sub === 'show') {
        return async (bus) => {
          const props = await iface(bus, FURKA_NAME, FURKA_PATH, 'org.freedesktop.DBus.Properties');
          const v = (await callMethod(props, 'Get', FURKA_IFACE, 'Shift')) as dbus.Variant<[bigint, number, number]>;
          const [t, uid, gid] = v.value;
          const since = new Date(Number(t / 1000n)).toISOString();
          process.stdout.write(values.json ? `${JSON.stringify({ usertime: Number(t), uid, gid, since })}\n` : `shift ${uid}:${gid} since ${since}\n`);
          return 0;
        };
      }
      return usage('shift start|show');
    case 'add': {
      const files = [sub, ...rest].filter((f): f is string => !!f).map((f) => (f.startsWith('/') ? f : `${process.cwd()}/${f}`));
      if (files.length === 0) usage('add FILE...');
      return async (bus) => {
        const grimsel = await iface(bus, GRIMSEL_NAME, GRIMSEL_PATH, GRIMSEL_IFACE);
        let bad = 0;
        for (const f of files) {
          try {
            await callMethod(grimsel, 'AddFile', f);
          } catch (e) {
            if (!(e instanceof dbus.DBusError) || !/InvalidArgs/.test(e.type)) throw e;
            process.stderr.write(`ppuctl: ${f}: ${e.text}\n`);
            bad++;
          }
        }
        return bad ? 1 : 0;
      };
    }
    default:
      return usage(`unknown command '${cmd}'`);
  }
}

run(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`ppuctl: ${e.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (e instanceof dbus.DBusError) {
      const unreachable = /ServiceUnknown|NameHasNoOwner|NoReply|Disconnected/.test(e.type);
      const denied = /AccessDenied/.test(e.type);
      process.stderr.write(`ppuctl: ${unreachable ? 'the daemon is not running (or not on this bus)' : denied ? 'access denied (run as root or an operator)' : e.text}\n`);
      process.exitCode = unreachable ? 3 : 1;
    } else {
      const msg = (e as Error).message ?? String(e);
      const unreachable = /ENOENT|ECONNREFUSED/.test(msg);
      process.stderr.write(`ppuctl: ${unreachable ? `cannot reach the bus: ${msg}` : msg}\n`);
      process.exitCode = unreachable ? 3 : 1;
    }
  },
);

// How each entry point is started: the environment and node options of its launcher. One table, read by the
// RPM build (which writes /usr/bin/<command> from it), by the test fixtures and by the demo, so that what is
// tested is what is installed. Units run the launchers (ExecStart=/usr/bin/grimseld …).
//
// grimseld's memory settings (resident memory with 100 000 files pending, BENCHMARKS.md): pending files arrive
// in bursts (a delivery, a FIFO list) whose objects outlive a few minor collections; V8 answers that by growing
// its young generation to 32 MB for good and leaves the promoted rest in half-empty old pages.
// --optimize-for-size keeps the young generation at 2 MB and compacts the old one (~20 MB less, for some more
// CPU per copy). glibc gives each thread that allocates (copy threads, GC helpers) an arena of its own that
// keeps what was freed in it; MALLOC_ARENA_MAX=2: ~4 MB less.
//
// furkad and furka-agent: --single-threaded-gc. Their heaps are small (~10 MB) and every image passes through
// them in pieces that become garbage at once; V8's parallel and concurrent collection then keeps four helper
// threads busy (~2 ms of CPU per 1 MB image in furkad, on top of the main thread's share), and on a machine
// whose cores the writer, grimseld's copies and both daemons share, those threads took the CPU the next image
// needed. Collected on the main thread alone: furkad ~12 % less CPU per image, and 100 Hz x 1 MB p50 lower in
// four of four alternating rounds (BENCHMARKS.md, 2026-12-01).
//
// furkad also: --max-semi-space-size=2 (MB). With the young generation grown to its default 16 MB next to an
// old one of ~11 MB, V8 started a full (incremental) collection every 100-200 ms while images arrived: ~1.2 ms
// of CPU per 1 MB image, a quarter of furkad's. With 2 MB: one full collection in the same run, minor ones
// more often and cheaper. furkad's CPU per image fell in nine of nine alternating rounds (100 Hz x 1 MB,
// 25 Hz x 6 MB, 500 Hz x 0.1 MB; by a quarter at 6 MB); latency fell at 500 Hz in three of three rounds and
// was no better at 100 Hz or 25 Hz x 6 MB (p50 12.7-12.8 against 9.3-12.7 ms there), within this machine's
// noise (bench/results/furkad-semi-space-ab-2026-12-01.txt).

export type Command = 'furkad' | 'grimseld' | 'furka-agent' | 'ppuctl';

export interface Launch {
  /** directory below dist/src holding main.js */
  dir: string;
  env: Record<string, string>;
  nodeOptions: string[];
}

export const LAUNCH: Record<Command, Launch> = {
  furkad: { dir: 'furkad', env: {}, nodeOptions: ['--single-threaded-gc', '--max-semi-space-size=2'] },
  grimseld: { dir: 'grimseld', env: { MALLOC_ARENA_MAX: '2' }, nodeOptions: ['--optimize-for-size'] },
  'furka-agent': { dir: 'agent', env: {}, nodeOptions: ['--single-threaded-gc'] },
  ppuctl: { dir: 'ppuctl', env: {}, nodeOptions: [] },
};

/** The launcher script the RPM installs as /usr/bin/<command>: `node` is the system's, `appdir` where dist/ is. */
export function launcherScript(cmd: Command, appdir: string, node = '/usr/bin/node'): string {
  const l = LAUNCH[cmd];
  const env = Object.entries(l.env).map(([k, v]) => `${k}=${v} `).join('');
  return `#!/bin/sh\n# ${cmd} of ppu-movers: the compiled daemon or CLI, run by the system's node (src/common/launch-profile.ts).\n`
    + `exec ${env ? `/usr/bin/env ${env}` : ''}${[node, ...l.nodeOptions].join(' ')} ${appdir}/dist/src/${l.dir}/main.js "$@"\n`;
}

// `node launch-profile.js APPDIR OUTDIR`: writes every launcher (the RPM's %install).
if (require.main === module) {
  const [appdir, out] = process.argv.slice(2);
  if (!appdir || !out) {
    process.stderr.write('usage: node launch-profile.js APPDIR OUTDIR\n');
    process.exit(2);
  }
  const { writeFileSync } = require('node:fs') as typeof import('node:fs');
  for (const cmd of Object.keys(LAUNCH) as Command[]) writeFileSync(`${out}/${cmd}`, launcherScript(cmd, appdir), { mode: 0o755 });
}

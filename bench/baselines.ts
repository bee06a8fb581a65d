// The tools a beamline scientist would use instead: one `rsync -a`, and `cp` with a given parallelism (xargs -P).
import { mkdirSync } from 'node:fs';
import { startProcess } from '../test/fixtures/processes.js';

/** Runs a command to completion; resolves with its wall-clock seconds; rejects with its output on failure. */
export async function timed(cmd: string, args: string[], cwd?: string): Promise<number> {
  const t = performance.now();
  const p = startProcess(cmd, args, cwd ? { cwd } : {});
  const code = await p.exited;
  const seconds = (performance.now() - t) / 1000; // before stop(), whose process-group check takes ms
  await p.stop();
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${p.output()}`);
  return seconds;
}

/** One plain `rsync -a` of `dir` from a detector's rsync daemon into `dest`. */
export function rsyncPull(port: number, dir: string, dest: string): Promise<number> {
  return timed('rsync', ['-a', `rsync://127.0.0.1:${port}/ramdisk/${dir}/`, `${dest}/`]);
}

/**
 * Copies every file of `src` into each of `dests` with `parallel` cp processes per destination, each file
 * fsynced afterwards as grimseld does (G3: flushed before it counts): `cp -p` then `sync FILE...`.
 */
export function parallelCp(src: string, dests: string[], parallel: number, fsync = true): Promise<number> {
  for (const d of dests) mkdirSync(d, { recursive: true });
  const one = (d: string): string => `ls | xargs -P ${parallel} -n 16 sh -c 'cp -p -t "$0" "$@"${fsync ? ' && cd "$0" && sync -- "$@"' : ''}' '${d}'`;
  // Destinations in parallel, as grimseld's storages are; any failed copy fails the whole baseline.
  const script = dests.map((d) => `(${one(d)}) & pids="$pids $!";`).join(' ') + ' for p in $pids; do wait $p || exit 1; done';
  return timed('bash', ['-c', script], src);
}

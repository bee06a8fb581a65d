// When each file got its final name in a PPU directory, seen through inotify (fs.watch) on that directory.
import { watch, existsSync, type FSWatcher } from 'node:fs';
import * as path from 'node:path';

export class Arrivals {
  readonly at = new Map<string, number>();
  #watchers: FSWatcher[] = [];

  /** Watches `dir` (created beforehand: Node 20 has no recursive watch on Linux). */
  watch(dir: string): this {
    this.#watchers.push(watch(dir, (_event, name) => {
      // rsync and grimseld write `.name.XXXX` and rename it: a name without the dot is the complete file.
      if (!name || name.startsWith('.') || this.at.has(name)) return;
      const now = performance.timeOrigin + performance.now();
      if (existsSync(path.join(dir, name))) this.at.set(name, now);
    }));
    return this;
  }

  close(): void {
    for (const w of this.#watchers.splice(0)) w.close();
  }
}

/** Latency in ms of every file that arrived; `missing` counts those that never did. */
export function latencies(named: Map<string, number>, arrivals: Arrivals): { ms: number[]; missing: number } {
  const ms: number[] = [];
  let missing = 0;
  for (const [name, t] of named) {
    const a = arrivals.at.get(name);
    if (a === undefined) missing++;
    else ms.push(a - t);
  }
  return { ms, missing };
}

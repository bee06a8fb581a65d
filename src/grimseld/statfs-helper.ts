// statfs(2) on Node 16 (CentOS 7), which has no fs.statfs: one long-lived python3 child answers every query
// (G6, G7, metrics). Running `stat -f` for each query forked grimseld itself each time, several times a second
// for the fill guard: a fork copies the page tables of a process of ~100 MB and a dozen threads, and every page
// the parent writes afterwards takes a copy-on-write fault. Measured at 100 Hz x 1 MB under Node 16, grimseld's
// CPU per image was 9.0 ms with those forks and 5.3-5.7 ms without (as under Node 20). The child is started once,
// at the first query, and again only if it dies; python3 is a dependency of the PPU package already (the Python
// clients). Without python3 at all, each query falls back to `stat -f`.
import { execFile, spawn, type ChildProcess } from 'node:child_process';

/** What statfs(2) says of a file system, in blocks of `bsize` bytes. */
export interface FsBlocks {
  blocks: number;
  bfree: number;
  bavail: number;
  bsize: number;
}

/** Longest a query may take (a hung network mount) before the child is killed and the query fails. */
const QUERY_TIMEOUT_MS = 10_000;

/** One JSON string (a directory) per line in, one JSON answer per line out, in order. f_frsize is the unit of the counts. */
const SCRIPT = `
import json, os, sys
while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        s = os.statvfs(json.loads(line))
        out = {"ok": [s.f_blocks, s.f_bfree, s.f_bavail, s.f_frsize]}
    except Exception as e:
        out = {"err": str(e)}
    sys.stdout.write(json.dumps(out) + "\\n")
    sys.stdout.flush()
`;

interface Query {
  dir: string;
  resolve: (b: FsBlocks) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class StatfsHelper {
  #child: ChildProcess | undefined;
  /** Queries sent and not yet answered, oldest first (the child answers in order). */
  #pending: Query[] = [];
  #buffered = '';
  /** python3 could not be started at all: `stat -f` from then on. */
  #unavailable = false;

  constructor(private readonly python = 'python3') {}

  statfs(dir: string): Promise<FsBlocks> {
    if (this.#unavailable) return statfsByCommand(dir);
    const child = this.#child ?? this.#start();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(new Error(`statfs ${dir}: no answer within ${QUERY_TIMEOUT_MS / 1000} s (a hung mount?)`)), QUERY_TIMEOUT_MS);
      this.#pending.push({ dir, resolve, reject, timer });
      child.stdin!.write(`${JSON.stringify(dir)}\n`);
    });
  }

  /** The child's pid while it runs (tests). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Stops the child (it would also end on its own when grimseld's end closes its stdin). */
  close(): void {
    this.#fail(new Error('statfs helper closed'));
  }

  #start(): ChildProcess {
    // -I: no environment or user site; -S: no site module; -B: no bytecode written (the unit's file system is read-only).
    const child = spawn(this.python, ['-I', '-S', '-B', '-c', SCRIPT], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.#child = child;
    this.#buffered = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => this.#answer(child, text));
    child.stdin!.on('error', () => undefined); // a child gone: reported by 'exit'
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        this.#unavailable = true;
        // What was asked of it is asked of `stat -f` instead.
        const asked = this.#pending.splice(0);
        this.#drop(child);
        for (const q of asked) {
          clearTimeout(q.timer);
          statfsByCommand(q.dir).then(q.resolve, q.reject);
        }
      } else {
        this.#fail(new Error(`statfs helper (${this.python}): ${e.message}`), child);
      }
    });
    child.on('exit', (code, signal) => this.#fail(new Error(`statfs helper (${this.python}) exited (${signal ?? code})`), child));
    // Never what keeps grimseld running: a query waiting keeps its own timer.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    return child;
  }

  #answer(child: ChildProcess, text: string): void {
    if (child !== this.#child) return;
    this.#buffered += text;
    let nl: number;
    while ((nl = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, nl);
      this.#buffered = this.#buffered.slice(nl + 1);
      const q = this.#pending.shift();
      if (!q) continue;
      clearTimeout(q.timer);
      try {
        const a = JSON.parse(line) as { ok?: number[]; err?: string };
        if (a.ok) {
          const [blocks, bfree, bavail, bsize] = a.ok as [number, number, number, number];
          q.resolve({ blocks, bfree, bavail, bsize });
        } else {
          q.reject(new Error(`statfs ${q.dir}: ${a.err ?? 'no answer'}`));
        }
      } catch {
        q.reject(new Error(`statfs ${q.dir}: cannot read the helper's answer '${line}'`));
      }
    }
  }

  /** Fails every query waiting and drops the child (`only`: if it is still the current one); the next query starts another. */
  #fail(e: Error, only?: ChildProcess): void {
    if (only && only !== this.#child) return;
    const child = this.#child;
    const asked = this.#pending.splice(0);
    if (child) this.#drop(child);
    for (const q of asked) {
      clearTimeout(q.timer);
      q.reject(e);
    }
  }

  #drop(child: ChildProcess): void {
    if (this.#child === child) this.#child = undefined;
    child.kill('SIGKILL');
  }
}

/**
 * statfs(2) through `stat -f` (GNU coreutils, also CentOS 7's 8.22), one process per query: only where python3
 * cannot be started. %b total, %f free, %a available to non-root, %S the size those blocks count in.
 */
export function statfsByCommand(dir: string): Promise<FsBlocks> {
  return new Promise((resolve, reject) => {
    execFile('stat', ['-f', '-c', '%b %f %a %S', '--', dir], { timeout: QUERY_TIMEOUT_MS }, (err, stdout) => {
      if (err) return reject(new Error(`stat -f ${dir}: ${err.message.trim()}`));
      const [blocks, bfree, bavail, bsize] = stdout.trim().split(' ').map(Number);
      if (![blocks, bfree, bavail, bsize].every((n) => Number.isFinite(n))) return reject(new Error(`stat -f ${dir}: cannot read '${stdout.trim()}'`));
      resolve({ blocks: blocks!, bfree: bfree!, bavail: bavail!, bsize: bsize! });
    });
  });
}

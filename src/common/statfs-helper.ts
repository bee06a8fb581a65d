// statfs(2) on Node 16 (CentOS 7), which has no fs.statfs: one long-lived python3 child answers every query
// (G6, G7, metrics). Running `stat -f` for each query forked grimseld itself each time, several times a second
// for the fill guard: a fork copies the page tables of a process of ~100 MB and a dozen threads, and every page
// the parent writes afterwards takes a copy-on-write fault. Measured at 100 Hz x 1 MB under Node 16, grimseld's
// CPU per image was 9.0 ms with those forks and 4.9 ms without (as under Node 20). The child is started at the
// first query, and again only if it dies; python3 is a dependency of the PPU package already (the Python
// clients). Each query runs in a thread of its own there, so a hung mount (a storage on a dead NFS server)
// holds up only the queries about itself, never the ramdisk's fill guard.
import { execFile } from 'node:child_process';
import { PythonChild } from './python-child.js';

/** What statfs(2) says of a file system, in blocks of `bsize` bytes. */
export interface FsBlocks {
  blocks: number;
  bfree: number;
  bavail: number;
  bsize: number;
  /** Inodes in all and free; 0 in all where the file system does not count them (btrfs); undefined if not asked. */
  files?: number | undefined;
  ffree?: number | undefined;
}

/** Longest a query may go unanswered (a hung network mount) before it fails. */
const QUERY_TIMEOUT_MS = 10_000;
/** The child ended this many times in a row without answering anything: `stat -f` from then on. */
const DEATHS_BEFORE_FALLBACK = 3;

/**
 * One JSON object {"id", "dir"} per line in; one {"id", "ok": [blocks, bfree, bavail, frsize, files, ffree]} or {"id", "err"}
 * per line out, in the order the answers come. f_frsize is the unit of the counts (`stat -f`'s %S).
 */
const SCRIPT = `
import json, os, sys, threading
lock = threading.Lock()
def answer(qid, d):
    try:
        s = os.statvfs(d)
        a = {"id": qid, "ok": [s.f_blocks, s.f_bfree, s.f_bavail, s.f_frsize, s.f_files, s.f_ffree]}
    except Exception as e:
        a = {"id": qid, "err": str(e)}
    line = json.dumps(a) + "\\n"
    with lock:
        sys.stdout.write(line)
        sys.stdout.flush()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    q = json.loads(line)
    t = threading.Thread(target=answer, args=(q["id"], q["dir"]))
    t.daemon = True
    t.start()
`;

interface Waiter {
  resolve: (b: FsBlocks) => void;
  reject: (e: Error) => void;
}

/** A question sent to the child: every caller asking about `dir` meanwhile waits for its one answer. */
interface Asked {
  id: number;
  dir: string;
  waiters: Waiter[];
  timer: NodeJS.Timeout;
  /** No answer in time: its waiters were failed; the directory is not asked again until the answer comes. */
  late: boolean;
}

export class StatfsHelper {
  readonly #python: string;
  readonly #timeoutMs: number;
  #child: PythonChild | undefined;
  #byId = new Map<number, Asked>();
  #byDir = new Map<string, Asked>();
  #nextId = 0;
  /** Ends of the child in a row without an answer between them. */
  #deaths = 0;
  /** python3 cannot be started or keeps dying: `stat -f` from then on. */
  #fallback = false;

  constructor(o: { python?: string; timeoutMs?: number } = {}) {
    this.#python = o.python ?? 'python3';
    this.#timeoutMs = o.timeoutMs ?? QUERY_TIMEOUT_MS;
  }

  statfs(dir: string): Promise<FsBlocks> {
    if (this.#fallback) return statfsByCommand(dir);
    const asked = this.#byDir.get(dir);
    if (asked?.late) return Promise.reject(new Error(`statfs ${dir}: still no answer (a hung mount?)`));
    if (asked) return new Promise((resolve, reject) => asked.waiters.push({ resolve, reject }));
    const child = this.#child ?? this.#start();
    return new Promise((resolve, reject) => {
      const a: Asked = { id: ++this.#nextId, dir, waiters: [{ resolve, reject }], late: false, timer: setTimeout(() => this.#late(a), this.#timeoutMs) };
      this.#byId.set(a.id, a);
      this.#byDir.set(dir, a);
      child.write(JSON.stringify({ id: a.id, dir }));
    });
  }

  /** The child's pid while it runs (tests). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Whether queries go to `stat -f` now (tests). */
  get fallback(): boolean {
    return this.#fallback;
  }

  /** Stops the child; queries waiting fail (it would also end on its own once grimseld's end closes its stdin). */
  close(): void {
    const child = this.#child;
    this.#child = undefined;
    child?.kill();
    this.#failAll(new Error('statfs helper closed'));
  }

  #start(): PythonChild {
    const child: PythonChild = new PythonChild(this.#python, SCRIPT, 'utf8', {
      line: (line) => this.#answer(line),
      failed: (e, cannotRun) => {
        this.#child = undefined;
        if (e.code === 'ENOENT') {
          // No python3 at all: what was asked of it is asked of `stat -f`, and so is everything after.
          this.#fallback = true;
          for (const a of this.#forgetAll()) for (const w of a.waiters) statfsByCommand(a.dir).then(w.resolve, w.reject);
          return;
        }
        // Cannot be run (not executable, not allowed): counted like an end without an answer, so that it is not
        // tried for ever. A passing shortage (EAGAIN, EMFILE, ENOMEM) fails these queries only.
        if (cannotRun && ++this.#deaths >= DEATHS_BEFORE_FALLBACK) this.#fallback = true;
        this.#failAll(new Error(`statfs helper (${this.#python}): ${e.message}${this.#fallback ? '; stat -f from now on' : ''}`));
      },
      ended: (how, said) => {
        this.#child = undefined;
        if (++this.#deaths >= DEATHS_BEFORE_FALLBACK) this.#fallback = true;
        this.#failAll(new Error(`statfs helper (${this.#python}) ended (${how})${said ? `: ${said}` : ''}${this.#fallback ? '; stat -f from now on' : ''}`));
      },
    });
    this.#child = child;
    return child;
  }

  #answer(line: string): void {
    let a: { id?: number; ok?: number[]; err?: string };
    try {
      a = JSON.parse(line) as typeof a;
    } catch {
      return; // not an answer of ours (nothing else writes to stdout)
    }
    const asked = a.id === undefined ? undefined : this.#byId.get(a.id);
    if (!asked) return;
    this.#deaths = 0;
    this.#forget(asked);
    for (const w of asked.waiters) {
      if (a.ok) {
        const [blocks, bfree, bavail, bsize, files, ffree] = a.ok as [number, number, number, number, number?, number?];
        w.resolve({ blocks, bfree, bavail, bsize, files, ffree });
      } else {
        w.reject(new Error(`statfs ${asked.dir}: ${a.err ?? 'no answer'}`));
      }
    }
  }

  /** No answer in time: its waiters fail; the directory stays asked (one thread per hung mount, not one per query). */
  #late(a: Asked): void {
    a.late = true;
    const e = new Error(`statfs ${a.dir}: no answer within ${this.#timeoutMs / 1000} s (a hung mount?)`);
    for (const w of a.waiters.splice(0)) w.reject(e);
  }

  #forget(a: Asked): void {
    clearTimeout(a.timer);
    this.#byId.delete(a.id);
    if (this.#byDir.get(a.dir) === a) this.#byDir.delete(a.dir);
  }

  #forgetAll(): Asked[] {
    const all = [...this.#byId.values()];
    all.forEach((a) => this.#forget(a));
    return all;
  }

  #failAll(e: Error): void {
    for (const a of this.#forgetAll()) for (const w of a.waiters) w.reject(e);
  }
}

/**
 * statfs(2) through `stat -f` (GNU coreutils, also CentOS 7's 8.22), one process per query: only where python3
 * cannot be started or keeps dying. %b total, %f free, %a available to non-root, %S the size those blocks count in,
 * %c and %d the inodes in all and free.
 */
export function statfsByCommand(dir: string): Promise<FsBlocks> {
  return new Promise((resolve, reject) => {
    execFile('stat', ['-f', '-c', '%b %f %a %S %c %d', '--', dir], { timeout: QUERY_TIMEOUT_MS }, (err, stdout) => {
      if (err) return reject(new Error(`stat -f ${dir}: ${err.message.trim()}`));
      const [blocks, bfree, bavail, bsize, files, ffree] = stdout.trim().split(' ').map(Number);
      if (![blocks, bfree, bavail, bsize, files, ffree].every((n) => Number.isFinite(n))) return reject(new Error(`stat -f ${dir}: cannot read '${stdout.trim()}'`));
      resolve({ blocks: blocks!, bfree: bfree!, bavail: bavail!, bsize: bsize!, files: files!, ffree: ffree! });
    });
  });
}

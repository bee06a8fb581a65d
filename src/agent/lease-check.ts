// Whether some process holds a file open for writing, asked of the kernel itself: it refuses a read lease
// (fcntl F_SETLEASE F_RDLCK) with EAGAIN while any descriptor anywhere (any process, any name of the file, a
// container's) is open on it for writing, or a shared writable mapping holds it (A2, A4).
//
// Why: a writer may hold a file through two descriptors and close one first (a header written through one,
// the data appended through the other). The first close is a CLOSE_WRITE like any other; the file sent then is
// not the whole file, and deleting its source after the acknowledgement sent everything written later to an
// unlinked inode: lost. Walking /proc for every file costs ~8 ms with a few hundred processes; a lease asked
// once costs two system calls. Node has no fcntl(2): one long-lived python3 child asks for the agent (as
// grimseld's statfs helper does), reading the agent's descriptors through /proc/PID/fd/N, which names the
// open file itself, never a path a writer could swap. The lease is let go at once (the descriptor closed): a
// writer opening the file meanwhile waits those microseconds, never more.
import { fstatSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { PythonChild } from '../common/python-child.js';
import { mountOf, mountsOf, readMountinfo } from '../common/mounts.js';

/** Per descriptor: true if it is open for writing somewhere, false if not, undefined if the kernel would not say. */
export type Written = boolean | undefined;

/**
 * File systems whose read-lease refusal means "open for writing somewhere" and nothing else. On a network file
 * system (NFS without a delegation, CIFS) the kernel refuses leases for reasons of its own: every file would
 * look written for ever.
 */
const LOCAL_LEASES = new Set(['tmpfs', 'ramfs', 'ext2', 'ext3', 'ext4', 'xfs', 'btrfs']);

/** The file system type of the mount holding real path `dir` (from /proc/self/mountinfo), or undefined. */
export function fsTypeOf(dir: string, mountinfo = readMountinfo()): string | undefined {
  return mountOf(dir, mountsOf(mountinfo))?.type;
}

/** The file system type of each mounted device (st_dev as Node gives it), from /proc/self/mountinfo. */
export function deviceTypes(mountinfo = readMountinfo()): Map<number, string> {
  return new Map(mountsOf(mountinfo).map((m) => [m.dev, m.type]));
}

/**
 * Whether leases tell writers on device `dev` (a file's st_dev) below a root on `root` (whose leases do):
 * the root's own device, or a mounted one of a type in LOCAL_LEASES. A device mountinfo does not list is a
 * btrfs subvolume's on a btrfs root, and otherwise unknown.
 */
export function leasesTellOn(dev: number, root: { dev: number; type: string }, types: Map<number, string>): boolean {
  if (dev === root.dev) return true;
  return LOCAL_LEASES.has(types.get(dev) ?? (root.type === 'btrfs' ? 'btrfs' : ''));
}

/** Whether the kernel's read leases tell writers apart on the file system of `dir`; with its type, for the log. */
export function leasesTellWriters(dir: string, mountinfo = readMountinfo()): { ok: boolean; fsType: string } {
  const fsType = fsTypeOf(dir, mountinfo) ?? 'unknown';
  return { ok: LOCAL_LEASES.has(fsType), fsType };
}

/** How often the root's file system type is looked at again (ms). */
const FS_CHECK_MS = 5000;
/** Longest a question may go unanswered before the child is given up (and started again at the next one). */
const ANSWER_TIMEOUT_MS = 5000;
/** The child ended (or hung) this many times in a row without answering: not started again for PAUSE_MS. */
const DEATHS_BEFORE_PAUSE = 3;
const PAUSE_MS = 60_000;

/**
 * One line of descriptor paths in (space-separated), one line of answers out, in order: `w` open for writing,
 * `f` free, `eN` errno N (EINVAL: no leases on that file system or fs.leases-enable=0; EACCES: not root and
 * not the owner). F_SETLEASE is 1024 (Linux); python's fcntl module does not name it before 3.9. SIGIO (the
 * signal a lease break sends) is ignored: the lease is given up right away anyway.
 */
const SCRIPT = `
import errno, fcntl, os, signal, sys
signal.signal(signal.SIGIO, signal.SIG_IGN)
F_SETLEASE = 1024
def ask(p):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return "e%d" % e.errno
    try:
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_RDLCK)
        return "f"
    except OSError as e:
        return "w" if e.errno == errno.EAGAIN else "e%d" % e.errno
    finally:
        os.close(fd)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    sys.stdout.write(" ".join(ask(p) for p in line.split()) + "\\n")
    sys.stdout.flush()
`;
import { monotonicMs } from '../common/monotonic.js';

/** A caller's question waiting for the end of the turn. */
interface Gathered {
  fds: number[];
  resolve: (w: Written[]) => void;
}

interface Question {
  count: number;
  resolve: (w: Written[]) => void;
  timer: NodeJS.Timeout;
}

export class LeaseCheck {
  readonly #python: string;
  readonly #timeoutMs: number;
  readonly #pauseMs: number;
  readonly #onTrouble: (why: string) => void;
  #child: PythonChild | undefined;
  /** Questions sent and not yet answered, oldest first (the child answers in order). */
  #asked: Question[] = [];
  /** A question went to the child in this turn of the event loop: the next ones are gathered until its end. */
  #turn = false;
  /** Questions asked in this turn after its first, sent together at its end. */
  #gathered: Gathered[] = [];
  #deaths = 0;
  /** close() was called: no child is started again. */
  #closed = false;
  /** It cannot be run at all (missing, not executable). */
  #gaveUp = false;
  /** After DEATHS_BEFORE_PAUSE ends or hangs in a row: not started again before this time (ms). */
  #pausedUntil = 0;
  readonly #root: string | undefined;
  #fsCheckedAt = -Infinity;
  #fsOk = false;
  /**
   * The root's device and type, and the type of every mounted device: a file on another device than the
   * root's (a file system mounted below it) is asked about only if that one's leases tell writers too.
   */
  #rootDev = -1;
  #rootType = '';
  #deviceTypes = new Map<number, string>();
  /** Why the last answer could not be had (each new reason is reported once through onTrouble). */
  #lastTrouble = '';

  /** `onTrouble`: told once per new reason why a question was not answered (the caller logs it). */
  /**
   * `root`: the files asked about are below it; asked only while it is on a file system whose leases tell
   * writers (looked at again every FS_CHECK_MS: the ramdisk may be mounted after the agent started).
   */
  constructor(o: { python?: string; timeoutMs?: number; pauseMs?: number; onTrouble?: (why: string) => void; root?: string } = {}) {
    this.#python = o.python ?? 'python3';
    this.#timeoutMs = o.timeoutMs ?? ANSWER_TIMEOUT_MS;
    this.#pauseMs = o.pauseMs ?? PAUSE_MS;
    this.#onTrouble = o.onTrouble ?? (() => undefined);
    this.#root = o.root;
  }

  /** Whether the root's file system has leases that tell writers, as last looked at. */
  #localRoot(): boolean {
    if (this.#root === undefined) return true;
    const now = monotonicMs();
    if (now >= this.#fsCheckedAt + FS_CHECK_MS) {
      this.#fsCheckedAt = now;
      let fs: { ok: boolean; fsType: string };
      // One reading of the mount table for the root's type and every device's.
      let mountinfo = '';
      try {
        mountinfo = readMountinfo();
        fs = leasesTellWriters(this.#root, mountinfo);
      } catch (e) {
        fs = { ok: false, fsType: `unknown (${(e as Error).message})` };
      }
      this.#fsOk = fs.ok;
      this.#rootType = fs.fsType;
      this.#deviceTypes = deviceTypes(mountinfo);
      try {
        this.#rootDev = statSync(this.#root).dev;
      } catch {
        this.#fsOk = false;
      }
      if (!fs.ok) this.#trouble(`${this.#root} is on ${fs.fsType}, whose leases do not tell writers (only ${[...LOCAL_LEASES].join(', ')} do)`);
    }
    return this.#fsOk;
  }

  /**
   * For each of the agent's descriptors `fds` (open on regular files, and kept open until the answer comes):
   * whether some process has that file open for writing. Never rejects: undefined where the kernel or the
   * child would not say (no python3, no leases there), and the caller decides by other means. The first
   * question of a turn of the event loop goes to the child at once (a lone image's answer is on its way while
   * the agent reads the file); the others of that turn follow together as one line at its end (a burst of
   * files sent and acknowledged together wakes the child twice, not once per file).
   */
  written(fds: number[]): Promise<Written[]> {
    if (fds.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      if (this.#turn) {
        this.#gathered.push({ fds, resolve });
        return;
      }
      this.#turn = true;
      setImmediate(() => {
        this.#turn = false;
        if (this.#gathered.length > 0) this.#ask(this.#gathered.splice(0));
      });
      this.#ask([{ fds, resolve }]);
    });
  }

  /** Asks the child about every descriptor of the questions gathered in one turn, as one line. */
  #ask(gathered: Gathered[]): void {
    const fds = gathered.flatMap((g) => g.fds);
    const answer = (said: Written[]): void => {
      let at = 0;
      for (const g of gathered) {
        g.resolve(said.slice(at, at + g.fds.length));
        at += g.fds.length;
      }
    };
    const unknown = (): void => answer(fds.map(() => undefined));
    if (this.#closed || this.#gaveUp || (!this.#child && monotonicMs() < this.#pausedUntil) || !this.#localRoot()) return unknown();
    // A file system mounted below the root may be one whose leases say nothing (NFS): its files are not asked about.
    const on = fds.map((fd) => this.#leasesTell(fd));
    const asked = fds.filter((_, i) => on[i]);
    if (asked.length === 0) return unknown();
    let child: PythonChild;
    try {
      child = this.#child ?? this.#start();
    } catch (e) {
      this.#trouble(`cannot start ${this.#python}: ${(e as Error).message}`);
      return unknown();
    }
    const merged = asked.length === fds.length ? answer : (said: Written[]): void => {
      let at = 0;
      answer(on.map((o) => (o ? said[at++] : undefined)));
    };
    this.#asked.push({ count: asked.length, resolve: merged, timer: setTimeout(() => this.#late(), this.#timeoutMs) });
    child.write(asked.map((fd) => `/proc/${process.pid}/fd/${fd}`).join(' '));
  }

  /**
   * Whether descriptor `fd` is open on a file whose file system's leases tell writers: the root's, or another
   * mounted below it that is one of those (a btrfs subvolume's own device, on a btrfs root). Always without a root.
   */
  #leasesTell(fd: number): boolean {
    if (this.#root === undefined) return true;
    let dev: number;
    try {
      dev = fstatSync(fd).dev;
    } catch {
      return false;
    }
    return leasesTellOn(dev, { dev: this.#rootDev, type: this.#rootType }, this.#deviceTypes);
  }

  /** Starts the child ahead of the first question (python3 takes a few hundred ms to start on a busy host). */
  prepare(): void {
    if (this.#child || this.#closed || this.#gaveUp || monotonicMs() < this.#pausedUntil || !this.#localRoot()) return;
    try {
      this.#start();
    } catch (e) {
      this.#trouble(`cannot start ${this.#python}: ${(e as Error).message}`);
    }
  }

  /** The child's pid while it runs (tests). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Stops the child; questions waiting, and any asked from now on, are answered "unknown". */
  close(): void {
    this.#closed = true;
    const child = this.#child;
    this.#child = undefined;
    child?.kill();
    this.#answerAllUnknown();
  }

  #start(): PythonChild {
    const child: PythonChild = new PythonChild(this.#python, SCRIPT, 'latin1', {
      line: (line) => this.#answer(line),
      failed: (e, cannotRun) => {
        this.#child = undefined;
        // Not there, or cannot be run: asking again would only fail again.
        if (cannotRun) this.#gaveUp = true;
        this.#trouble(`${this.#python}: ${e.message}`);
        this.#answerAllUnknown();
      },
      ended: (how, said) => {
        this.#child = undefined;
        this.#died();
        this.#trouble(`${this.#python} ended (${how})${said ? `: ${said}` : ''}`);
        this.#answerAllUnknown();
      },
    });
    this.#child = child;
    return child;
  }

  #answer(line: string): void {
    const q = this.#asked.shift();
    if (!q) return;
    clearTimeout(q.timer);
    this.#deaths = 0;
    const words = line.split(' ');
    const answers: Written[] = [];
    for (let i = 0; i < q.count; i++) {
      const w = words[i] ?? '';
      if (w === 'w') answers.push(true);
      else if (w === 'f') answers.push(false);
      else {
        answers.push(undefined);
        this.#trouble(`no read lease (${errnoName(w)})`);
      }
    }
    q.resolve(answers);
  }

  /** The oldest question went unanswered for too long: the child is given up, every question "unknown". */
  #late(): void {
    this.#trouble(`${this.#python} did not answer within ${this.#timeoutMs / 1000} s`);
    const child = this.#child;
    this.#child = undefined;
    this.#died();
    child?.kill();
    this.#answerAllUnknown();
  }

  /** One more end or hang without an answer: after several in a row, a pause before the next start. */
  #died(): void {
    if (++this.#deaths < DEATHS_BEFORE_PAUSE) return;
    this.#deaths = 0;
    this.#pausedUntil = monotonicMs() + this.#pauseMs;
    this.#trouble(`${this.#python} ended or hung ${DEATHS_BEFORE_PAUSE} times in a row: not asked for ${this.#pauseMs / 1000} s`);
  }

  #answerAllUnknown(): void {
    for (const q of this.#asked.splice(0)) {
      clearTimeout(q.timer);
      q.resolve(new Array<Written>(q.count).fill(undefined));
    }
  }

  #trouble(why: string): void {
    if (why === this.#lastTrouble) return;
    this.#lastTrouble = why;
    this.#onTrouble(why);
  }
}

/** `e22` → `EINVAL, errno 22`, as far as Node knows the number. */
function errnoName(word: string): string {
  const n = Number(word.slice(1));
  const name = Object.entries(osConstants.errno).find(([, v]) => v === n)?.[0];
  return name ? `${name}, errno ${n}` : `answer '${word}'`;
}

// A long-lived python3 child that answers a daemon's questions line by line, for what Node cannot ask the
// kernel itself: statfs(2) on Node 16 (grimseld's fill guard) and fcntl(2) leases (furka-agent). One
// process for every question: a process per question forks the daemon each time (BENCHMARKS.md, "Node 16").
import { spawn, type ChildProcess } from 'node:child_process';

/** How the daemon hears of the child: its output as it comes, and its end (not for a child replaced since). */
export interface PythonChildHooks {
  /** One line it wrote to stdout (without its newline), in the encoding asked for. */
  line(text: string): void;
  /** It could not be started: `cannotRun` if asking again would only fail again (missing, not executable). */
  failed(e: NodeJS.ErrnoException, cannotRun: boolean): void;
  /** It ended; `said`: the last lines it wrote to stderr (" | "-joined), or ''. */
  ended(how: string, said: string): void;
}

export class PythonChild {
  readonly #child: ChildProcess;
  #stderr = '';
  #stdout = '';
  #done = false;

  /**
   * Starts `python -I -S -B -c script` (-I: no environment or user site; -S: no site module; -B: no bytecode
   * written, the units' file systems are read-only). It never keeps the daemon running, and ends when the
   * daemon does (its stdin closes).
   */
  constructor(python: string, script: string, encoding: BufferEncoding, hooks: PythonChildHooks) {
    const child = spawn(python, ['-I', '-S', '-B', '-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child = child;
    child.stdout!.setEncoding(encoding);
    child.stdout!.on('data', (text: string) => {
      this.#stdout += text;
      let nl: number;
      while (!this.#done && (nl = this.#stdout.indexOf('\n')) >= 0) {
        const line = this.#stdout.slice(0, nl);
        this.#stdout = this.#stdout.slice(nl + 1);
        hooks.line(line);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => { this.#stderr = (this.#stderr + text).slice(-500); });
    child.stdin!.on('error', () => undefined); // a child gone: reported by 'close'
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (this.#done) return;
      this.#done = true;
      hooks.failed(e, ['ENOENT', 'EACCES', 'EPERM', 'ENOEXEC'].includes(e.code ?? ''));
    });
    // 'close', not 'exit': answers written before it ended are read first.
    child.on('close', (code, signal) => {
      if (this.#done) return;
      this.#done = true;
      hooks.ended(signal ?? `exit ${code}`, this.#stderr.trim().split('\n').slice(-3).join(' | '));
    });
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Sends one line (a question). */
  write(line: string): void {
    this.#child.stdin!.write(`${line}\n`);
  }

  /** Ends it; no hook is called for it any more. */
  kill(): void {
    this.#done = true;
    this.#child.kill('SIGKILL');
  }
}

// The shape both daemons share: run main, wait for SIGTERM/SIGINT, exit with a code systemd understands.

/** Resolves on the first SIGTERM or SIGINT. */
export function stopRequested(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve(sig));
  });
}

/** Runs a daemon's main; an unexpected failure is one line on stderr and exit code 1, never a stack dump. */
export function runDaemon(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

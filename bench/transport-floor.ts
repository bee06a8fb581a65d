// What Node's HTTP/2 can do for many small files at best, with none of furkad's or the agent's checks, next to
// `rsync -a` of the same set in the same run (#13, BENCHMARKS.md): is "several files per stream" worth a
// protocol change, and is the small-file target within reach of this stack at all?
//
//   node dist/bench/transport-floor.js [files] [kB] [rounds]      (as root: it mounts two tmpfs)
//
// Two processes, as on a beamline: a server (the agent's part: read each file whole, send it) and a client
// (furkad's part: write it to a temp name, set owner, mode and times on the descriptor, rename it into place).
// Ways compared, each round alternating:
// - per file: one request and one response stream per file, 24 in flight (as furkad fetches now);
// - batched: one stream carries 64 files, each framed as [name length][name][size][bytes], 4 streams in flight;
// - `rsync -a` from one tmpfs to the other (its sender and receiver: two processes too).
import * as http2 from 'node:http2';
import { execFileSync, fork } from 'node:child_process';
import { closeSync, fchownSync, fchmodSync, futimesSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const IN_FLIGHT = 24;
const BATCH = 64;
const BATCHES_IN_FLIGHT = 4;

function serve(src: string): void {
  const names = readdirSync(src).sort();
  const server = http2.createServer({ settings: { initialWindowSize: 16 << 20, maxConcurrentStreams: 256 } });
  server.on('stream', (stream, headers) => {
    const url = new URL(headers[':path'] ?? '/', 'http://x');
    if (url.pathname === '/f') {
      const body = readFileSync(path.join(src, url.searchParams.get('n')!));
      stream.respond({ ':status': 200, 'x-size': String(body.length) });
      stream.end(body);
      return;
    }
    // /b?from=I&n=N: files I..I+N-1 of the sorted listing, framed.
    const from = Number(url.searchParams.get('from'));
    const n = Number(url.searchParams.get('n'));
    stream.respond({ ':status': 200 });
    for (const name of names.slice(from, from + n)) {
      const body = readFileSync(path.join(src, name));
      const head = Buffer.alloc(8 + Buffer.byteLength(name));
      head.writeUInt32BE(Buffer.byteLength(name), 0);
      head.write(name, 4);
      head.writeUInt32BE(body.length, 4 + Buffer.byteLength(name));
      stream.write(head);
      stream.write(body);
    }
    stream.end();
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as { port: number }).port));
}

/** Writes one received file as furkad places one: temp name, owner, mode, times on the descriptor, rename. */
function place(dest: string, name: string, parts: Buffer[]): void {
  const tmp = path.join(dest, `.${name}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  for (const p of parts) writeSync(fd, p);
  fchownSync(fd, 0, 0);
  fchmodSync(fd, 0o644);
  futimesSync(fd, 1_700_000_000, 1_700_000_000);
  closeSync(fd);
  renameSync(tmp, path.join(dest, name));
}

async function connect(port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 16 << 20 } });
  await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
  session.setLocalWindowSize(64 << 20);
  return session;
}

async function perFile(port: number, names: string[], dest: string): Promise<number> {
  const session = await connect(port);
  const t = performance.now();
  let next = 0;
  const one = (name: string): Promise<void> => new Promise((resolve, reject) => {
    const req = session.request({ ':path': `/f?n=${encodeURIComponent(name)}` });
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      place(dest, name, parts);
      resolve();
    });
    req.on('error', reject);
  });
  const worker = async (): Promise<void> => {
    while (next < names.length) await one(names[next++]!);
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const s = (performance.now() - t) / 1000;
  session.close();
  return names.length / s;
}

async function batched(port: number, names: string[], dest: string): Promise<number> {
  const session = await connect(port);
  const t = performance.now();
  let next = 0;
  const one = (from: number): Promise<void> => new Promise((resolve, reject) => {
    const req = session.request({ ':path': `/b?from=${from}&n=${BATCH}` });
    let pending = Buffer.alloc(0);
    let name: string | undefined;
    let size = 0;
    let parts: Buffer[] = [];
    let got = 0;
    req.on('data', (chunk: Buffer) => {
      let b = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
      pending = Buffer.alloc(0);
      while (b.length > 0) {
        if (name === undefined) {
          if (b.length < 4) break;
          const len = b.readUInt32BE(0);
          if (b.length < 8 + len) break;
          name = b.toString('utf8', 4, 4 + len);
          size = b.readUInt32BE(4 + len);
          b = b.subarray(8 + len);
          parts = [];
          got = 0;
        }
        const take = Math.min(size - got, b.length);
        parts.push(b.subarray(0, take));
        got += take;
        b = b.subarray(take);
        if (got === size) {
          place(dest, name, parts);
          name = undefined;
        }
      }
      pending = Buffer.from(b);
    });
    req.on('end', resolve);
    req.on('error', reject);
  });
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const from = next;
      next += BATCH;
      await one(from);
    }
  };
  await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, worker));
  const s = (performance.now() - t) / 1000;
  session.close();
  return names.length / s;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'serve') return serve(process.argv[3]!);
  const files = Number(process.argv[2] ?? 10_000);
  const kB = Number(process.argv[3] ?? 100);
  const rounds = Number(process.argv[4] ?? 2);
  const work = mkdtempSync(path.join(os.tmpdir(), 'transport-floor-'));
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  const bytes = Math.ceil((files * kB * 1024 * 1.1) / 1e6);
  for (const d of [src, dst]) {
    mkdirSync(d);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}M`, 'tmpfs', d]);
  }
  const body = Buffer.alloc(kB * 1024, 7);
  for (let i = 0; i < files; i++) writeFileSync(path.join(src, `img_${String(i).padStart(6, '0')}.cbf`), body);
  const server = fork(process.argv[1]!, ['serve', src]); // lists the files once: after they are written
  try {
    const names = readdirSync(src).sort();
    const port = await new Promise<number>((r) => server.once('message', (m) => r(m as number)));
    const empty = (): void => {
      for (const e of readdirSync(dst)) rmSync(path.join(dst, e));
    };
    const rows: string[] = [];
    for (let r = 1; r <= rounds; r++) {
      empty();
      const t = performance.now();
      execFileSync('rsync', ['-a', `${src}/`, `${dst}/`]);
      const rsync = files / ((performance.now() - t) / 1000);
      empty();
      const one = await perFile(port, names, dst);
      empty();
      const many = await batched(port, names, dst);
      if (readdirSync(dst).length !== files) throw new Error(`the batched run placed ${readdirSync(dst).length} of ${files} files`);
      rows.push(`round ${r}: rsync -a ${rsync.toFixed(0)} files/s; HTTP/2 one stream per file ${one.toFixed(0)} (${(one / rsync).toFixed(2)}x); ` +
        `${BATCH} files per stream ${many.toFixed(0)} (${(many / rsync).toFixed(2)}x)`);
      console.log(rows[rows.length - 1]);
    }
  } finally {
    server.kill();
    for (const d of [src, dst]) execFileSync('umount', [d]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

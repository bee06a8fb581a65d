// The optional Prometheus endpoint of both daemons: GET /metrics in the text format, off unless configured.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export class MetricsServer {
  readonly #server: Server;

  constructor(private readonly registry: Registry, private readonly log: Logger) {
    this.#server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (e: unknown) => {
          this.log.warn({ err: e }, 'metrics collection failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${(e as Error).message}\n`);
        });
    });
  }

  /** Listens on address:port (0 = any free port) and returns the bound port. */
  listen(port: number, address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException): void =>
        reject(new Error(`cannot serve metrics on ${address}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message}`));
      this.#server.once('error', failed);
      this.#server.listen(port, address, () => {
        this.#server.off('error', failed);
        const a = this.#server.address();
        const bound = typeof a === 'object' && a ? a.port : port;
        this.log.info({ address, port: bound }, `metrics on http://${address}:${bound}/metrics`);
        resolve(bound);
      });
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections?.();
    return new Promise((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
  }
}

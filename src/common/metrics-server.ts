// The optional Prometheus endpoint of both daemons: GET /metrics in the text format, off unless configured.
// Its connections are bounded like grimseld's status and message ports (tcp-listener.ts): any local user can
// reach it on loopback, and one holding thousands of idle connections must not use up the daemon's descriptors.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';
import { TcpListener } from './tcp-listener.js';

/** An idle connection (no request, or between keep-alive requests) is closed after this long; scrapers reconnect. */
const IDLE_MS = 30_000;

export class MetricsServer {
  readonly #http: Server;
  readonly #listener: TcpListener;

  constructor(private readonly registry: Registry, private readonly log: Logger) {
    this.#http = createServer((req, res) => {
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
    this.#http.timeout = IDLE_MS;
    // The connections the listener lets in are served by the HTTP server; a refused one reads a 503 naming why.
    this.#listener = new TcpListener('metrics', (socket) => this.#http.emit('connection', socket), {
      refusal: (why) => {
        const body = `refused: ${why}\n`;
        return `HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `connection: close\r\n\r\n${body}`;
      },
      onRefused: (peer, why) => this.log.warn({ peer }, `metrics client refused: ${why} (said once until it has fewer)`),
    });
  }

  /** Listens on address:port (0 = any free port) and returns the bound port. */
  async listen(port: number, address: string): Promise<number> {
    const bound = await this.#listener.listen(port, address);
    this.log.info({ address, port: bound }, `metrics on http://${address}:${bound}/metrics`);
    return bound;
  }

  close(): Promise<void> {
    return this.#listener.close();
  }
}

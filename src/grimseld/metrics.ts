// grimseld's Prometheus metrics: per storage copies, bytes, failures, pending, copy duration; fill state
// of the ramdisk and of every storage; messages by code; verified copies and checksum mismatches (I2). Counted
// off the copy path: observing never blocks it.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CopyJob, CopyReport } from './copy-job.js';
import type { CopyEvents } from './dispatcher.js';
import { ChecksumMismatch } from './copy-check.js';
import type { ShiftView } from './shift-book.js';
import type { MessageHub } from './messages.js';
import { fillState } from './mounts.js';
import { monotonicMs } from '../common/monotonic.js';

export class GrimseldMetrics {
  readonly registry = new Registry();
  readonly #started = new Map<string, number>();
  readonly #copies: Counter<'storage' | 'outcome'>;
  readonly #bytes: Counter<'storage'>;
  readonly #duration: Histogram<'storage'>;
  readonly #mismatches: Counter<'storage' | 'at'>;

  constructor(book: ShiftView, messages: MessageHub, copies: CopyEvents, fillPaths: () => Array<{ what: string; path: string }>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'grimseld_' });
    this.#copies = new Counter({ name: 'grimseld_copies_total', help: 'Finished copy attempts per storage; outcome copied, identical (already there) or failed',
      labelNames: ['storage', 'outcome'], registers });
    this.#bytes = new Counter({ name: 'grimseld_copied_bytes_total', help: 'Bytes written per storage', labelNames: ['storage'], registers });
    this.#duration = new Histogram({ name: 'grimseld_copy_duration_seconds', help: 'Time of one copy (written, flushed, renamed) per storage',
      labelNames: ['storage'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers });
    this.#mismatches = new Counter({ name: 'grimseld_checksum_mismatches_total',
      help: "Copies refused because their bytes were not the file's checksum (I2), per storage; at source (read from the original) or copy (read back)",
      labelNames: ['storage', 'at'], registers });
    new Gauge({
      name: 'grimseld_verified_files', help: "Copies read back and found to have the file's checksum (I2), per storage, over the shifts kept in the status; a subset of grimseld_files{state=\"copied\"}",
      labelNames: ['storage'], registers,
      collect() {
        this.reset();
        for (const [, , , storage, verified] of book.queryVerified(-1)) this.inc({ storage }, Number(verified));
      },
    });
    copies.onCopy({ taken: (job) => this.#taken(job), reported: (r) => this.#reported(r) });
    const messageCount = new Counter({ name: 'grimseld_messages_total', help: 'Messages sent (G10) by code', labelNames: ['errcode'], registers });
    messages.subscribe((m) => messageCount.inc({ errcode: m.errcode }));
    new Gauge({
      name: 'grimseld_files', help: 'Files per storage and state, over the shifts kept in the status', labelNames: ['storage', 'state'], registers,
      collect() {
        this.reset();
        for (const [, , , storage, pending, copied, failed] of book.query(-1)) {
          this.inc({ storage, state: 'pending' }, Number(pending));
          this.inc({ storage, state: 'copied' }, Number(copied));
          this.inc({ storage, state: 'failed' }, Number(failed));
        }
      },
    });
    new Gauge({
      name: 'grimseld_fill_ratio', help: 'Used share (0-1) of the filesystem holding the ramdisk or a storage', labelNames: ['what', 'path'], registers,
      async collect() {
        this.reset();
        for (const { what, path } of fillPaths()) {
          // A storage that is not there (unmounted, not yet created) simply has no figure.
          const fill = await fillState(path).catch(() => undefined);
          if (fill) this.set({ what, path }, fill.percent / 100);
        }
      },
    });
  }

  /** A job handed to a writer: its copy's time starts. */
  #taken(job: CopyJob): void {
    this.#started.set(`${job.storage}:${job.id}`, monotonicMs());
  }

  /** A job's result: counted, and its time observed. */
  #reported(r: CopyReport): void {
    const key = `${r.job.storage}:${r.job.id}`;
    const started = this.#started.get(key);
    this.#started.delete(key);
    const storage = r.job.storage;
    if (r.outcome instanceof Error) {
      this.#copies.inc({ storage, outcome: 'failed' });
      if (r.outcome instanceof ChecksumMismatch) this.#mismatches.inc({ storage, at: r.outcome.at });
    } else {
      this.#copies.inc({ storage, outcome: r.outcome });
      if (r.outcome === 'copied') this.#bytes.inc({ storage }, r.job.expect.size);
      if (started !== undefined) this.#duration.observe({ storage }, (monotonicMs() - started) / 1000);
    }
  }
}

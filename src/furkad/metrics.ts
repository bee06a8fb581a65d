// furkad's Prometheus metrics: per detector state, files and bytes, read from the detector loops when
// scraped, and the duration of every run that moved files: measuring never touches the transfer path.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../common/logger.js';
import { MetricsServer } from '../common/metrics-server.js';
import type { Component } from '../common/service.js';
import type { Topic } from '../common/topic.js';
import { DETECTOR_STATES, type DetectorStatus } from '../dbus/furka-interface.js';
import { NOT_IN_SHIFT, type DetectorStats } from './detector.js';

/** A detector as the metrics read it: its bus status and the loop's own counts (DetectorLoop.stats plus its id). */
export type DetectorFigures = DetectorStatus & Pick<DetectorStats, 'runs' | 'refused'>;

/** A detector loop as the metrics see it: its figures, and when they change. */
export interface MeasuredLoop {
  readonly id: string;
  readonly stats: Omit<DetectorFigures, 'id'>;
  readonly changed: Topic;
}

export class FurkadMetrics implements Component {
  readonly name = 'metrics endpoint';
  readonly registry = new Registry();
  readonly #runs: Histogram<'detector'>;
  /** Runs that moved files per detector when last told: a change of it is one more run to time. */
  readonly #runsSeen = new Map<string, number>();
  readonly #server: MetricsServer;
  #unsubscribe: Array<() => void> = [];

  constructor(
    private readonly loops: readonly MeasuredLoop[],
    awaitingGrimseld: () => number,
    private readonly endpoint: { address: string; port: number },
    log: Logger,
  ) {
    this.#server = new MetricsServer(this.registry, log);
    const detectors = (): DetectorFigures[] => loops.map((l) => ({ id: l.id, ...l.stats }));
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'furkad_' });
    this.#runs = new Histogram({ name: 'furkad_run_duration_seconds', help: 'Duration of each rsync run that moved files, per detector',
      labelNames: ['detector'], buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60], registers });
    // Per-shift figures restart at 0 with a shift: the totals add what grew since the last scrape (all of it
    // after a restart at 0), so only files of a shift that ends between two scrapes, moved after the first, are missed.
    const seen = new Map<string, { files: number; bytes: number }>();
    const totals = (): void => {
      for (const d of detectors()) {
        const last = seen.get(d.id) ?? { files: 0, bytes: 0 };
        files.inc({ detector: d.id }, d.files >= last.files ? d.files - last.files : d.files);
        bytes.inc({ detector: d.id }, d.bytes >= last.bytes ? d.bytes - last.bytes : d.bytes);
        seen.set(d.id, { files: d.files, bytes: d.bytes });
      }
    };
    // Collected by the first of the two, so both are current when they are written out.
    const files: Counter<'detector'> = new Counter({ name: 'furkad_files_total', help: 'Files transferred per detector', labelNames: ['detector'], registers, collect: totals });
    const bytes: Counter<'detector'> = new Counter({ name: 'furkad_bytes_total', help: 'Bytes transferred per detector', labelNames: ['detector'], registers });
    new Gauge({
      name: 'furkad_detector_state', help: 'Current state per detector (1 for the state it is in)', labelNames: ['detector', 'state'], registers,
      collect() {
        this.reset();
        for (const d of detectors()) for (const s of new Set([...DETECTOR_STATES, d.state])) this.set({ detector: d.id, state: s }, d.state === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'furkad_detector_failing', help: '1 while the last run of a detector failed', labelNames: ['detector'], registers,
      collect() {
        this.reset();
        // A detector the shift does not serve says so in lastError, but nothing of it failed.
        for (const d of detectors()) this.set({ detector: d.id }, d.lastError && d.lastError !== NOT_IN_SHIFT ? 1 : 0);
      },
    });
    new Gauge({
      name: 'furkad_detector_refused_files', help: 'Files left on a detector because furkad cannot hand over their names (not UTF-8, control characters)',
      labelNames: ['detector'], registers,
      collect() {
        this.reset();
        for (const d of detectors()) this.set({ detector: d.id }, d.refused);
      },
    });
    new Gauge({
      name: 'furkad_shift_files', help: 'Files transferred per detector in the current shift', labelNames: ['detector'], registers,
      collect() {
        this.reset();
        for (const d of detectors()) this.set({ detector: d.id }, d.files);
      },
    });
    new Gauge({
      name: 'furkad_last_run_seconds', help: 'Duration of the last run that moved files, per detector', labelNames: ['detector'], registers,
      collect() {
        this.reset();
        for (const d of detectors()) if (d.lastRunUs) this.set({ detector: d.id }, d.lastRunUs / 1e6);
      },
    });
    new Gauge({
      name: 'furkad_awaiting_grimseld', help: 'Delivered files not yet acknowledged by grimseld', registers,
      collect() {
        this.set(awaitingGrimseld());
      },
    });
  }

  /** Follows the loops' changes and serves GET /metrics. */
  async start(): Promise<void> {
    this.#unsubscribe = this.loops.map((l) => l.changed.on(() => this.detectorChanged({ id: l.id, ...l.stats })));
    await this.#server.listen(this.endpoint.port, this.endpoint.address);
  }

  async stop(): Promise<void> {
    this.#unsubscribe.splice(0).forEach((off) => off());
    await this.#server.close();
  }

  /** Called on every change of a detector's figures: a run that moved files is timed once, when it ended. */
  detectorChanged(d: DetectorFigures): void {
    const before = this.#runsSeen.get(d.id) ?? 0;
    if (d.runs === before) return;
    this.#runsSeen.set(d.id, d.runs);
    if (d.lastRunUs) this.#runs.observe({ detector: d.id }, d.lastRunUs / 1e6);
  }
}

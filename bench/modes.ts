// Sizes of a quick run (under two minutes on two cores) and of the full run the issue asks for.
export interface Mode {
  /** Repetitions of each measurement; figures are medians over them. */
  repeats: number;
  /** Seconds each detector writes in one latency measurement. */
  latencySeconds: number;
  /** PPU ramdisk size (tmpfs). */
  ramdiskBytes: number;
  /** Bytes of 6 MB files in the bulk set. */
  bulkBytes: number;
  /** How many 100 kB files in the small-file set. */
  smallFiles: number;
  /** Files left pending in grimseld for its memory figure. */
  pendingFiles: number;
  /** Detector counts of the scaling run. */
  scalingDetectors: number[];
}

const GB = 2 ** 30;

export const MODES: Record<'quick' | 'full' | 'small', Mode> = {
  quick: { repeats: 1, latencySeconds: 1.5, ramdiskBytes: 2 * GB, bulkBytes: 0.3e9, smallFiles: 1000, pendingFiles: 10_000, scalingDetectors: [1, 4] },
  full: { repeats: 3, latencySeconds: 5, ramdiskBytes: 8 * GB, bulkBytes: 2e9, smallFiles: 10_000, pendingFiles: 100_000, scalingDetectors: [1, 2, 3, 4] },
  /** Only what the small-file figure needs (10 000 x 100 kB end to end), for before/after comparisons: `BENCH_ONLY=throughput node dist/bench/main.js small` (`BENCH_TRANSPORT=agent`: furkad over furka-agent). */
  small: { repeats: 1, latencySeconds: 1, ramdiskBytes: 8 * GB, bulkBytes: 0.06e9, smallFiles: 10_000, pendingFiles: 1000, scalingDetectors: [1] },
};

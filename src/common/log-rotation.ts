// Log files rotated by size (S4), through the pino-roll transport rather than by hand.
import pino from 'pino';

export interface RotationSettings {
  logfile: string;
  /** Bytes per file before the next one is started. */
  logfile_max_size?: number;
  /** Files kept, the one being written included. */
  logfile_max_number?: number;
}

/**
 * A pino destination writing `<logfile>.1`, `<logfile>.2`, … (pino-roll's naming; numbering continues
 * after a restart). Files beyond `logfile_max_number` are removed as new ones start.
 */
export function rotatingDestination(s: RotationSettings): pino.DestinationStream {
  const keep = Math.max(s.logfile_max_number ?? 10, 1);
  return pino.transport({
    target: 'pino-roll',
    options: {
      file: s.logfile,
      size: `${s.logfile_max_size ?? 10_485_760}b`,
      mkdir: true,
      // pino-roll counts the files kept besides the current one, and at least one.
      limit: { count: Math.max(keep - 1, 1) },
    },
  }) as pino.DestinationStream;
}

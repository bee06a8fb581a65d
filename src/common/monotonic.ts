// Elapsed time for every timer, deadline, pause, back-off, idle check, rate and watchdog of the daemons.
//
// Why not Date.now(): the wall clock jumps. The detector server's time sync (S5, ntpdate hourly and two minutes
// after boot) steps it, by hours when the RTC was off, and an interval measured across the step is off by the
// step: an idle check set an hour ahead kept the detector ramdisk busy, and a name made by link(2) waited an
// hour for its look (found by a hostile tester, 2026-12). Date.now() stays where a time of day or a file's time
// is meant (mtimes, ctimes, shift ids and start times, message and status times, the schedule, and a span
// across a restart, for which only the wall clock exists); each such read says so with "wall clock".

/**
 * Milliseconds since an arbitrary origin (near the process's start, so small at first: never compare it
 * with 0 as "long ago", use -Infinity), on a clock that only goes forward and is not moved by setting the time.
 */
export function monotonicMs(): number {
  return performance.now();
}

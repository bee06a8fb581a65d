// Setting a file's times to the microsecond it should have (F3, G3). Node has no nanosecond utimes: its
// futimes/utimes take seconds as a double, which libuv turns into a timespec and then cuts to whole
// microseconds. Near 1.8e9 s a double resolves only ~238 ns, so the plain quotient of a time that falls on a
// whole microsecond (every copy of one) lands a microsecond low about half the time: a copy 1 µs below its
// original, and, where the original fell on a whole millisecond, a copy whose millisecond differs, which
// grimseld never recognised as its copy (the original was then never deleted nor linked: a ramdisk filling
// up, found by a hostile tester). Half a microsecond up keeps the double inside the right microsecond.

const NS = 1_000_000_000n;

/** Seconds to hand futimes/utimes so that the file gets exactly the microsecond of `ns` (below it: dropped). */
export function utimesSeconds(ns: bigint): number {
  let sec = ns / NS;
  if (ns < 0n && sec * NS !== ns) sec -= 1n; // floor, for the rare time before 1970
  const us = (ns - sec * NS) / 1000n;
  return Number(sec) + (Number(us) + 0.5) / 1e6;
}

/**
 * G3's measure of the same file: the same size and the same mtime, to the millisecond (what every copy path
 * keeps), or within 2 µs across a millisecond's edge. A copy's mtime is its original's cut to the microsecond
 * (above), and an mtime in milliseconds as a double resolves ~0.24 µs: an original at .707999999 s reads as
 * 708 ms, its copy at .707999 as 707. Copies made before utimesSeconds were up to 1 µs low too. Without the
 * tolerance such a copy was never taken for complete, and its original stayed for good (G5, G6).
 */
export function sameSizeAndMtime(a: { size: number; mtimeMs: number }, b: { size: number; mtimeMs: number }): boolean {
  return a.size === b.size && (Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs) || Math.abs(a.mtimeMs - b.mtimeMs) < 0.002);
}

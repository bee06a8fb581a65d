// Setting a file's times to the microsecond it should have (F3, G3), and G3's measure of the same file. Every
// utimes/futimes of a delivered file or a copy goes through setFileTimes: Node's own has two traps.
//
// A negative number (a time before 1970) is silently replaced by the current time (toUnixTimestamp in Node's
// lib/internal/fs/utils.js, Node 16 and 20 alike): such a file's copy got "now", counted as copied and verified,
// and its original was never deleted nor linked (DEL_ERROR "its copy … is not complete" at every shift change,
// found by a hostile tester). A numeric string is passed through as it is, negative too, and unlike a Date it
// keeps the sub-millisecond part, so the seconds are handed over as a string.
//
// Node has no nanosecond utimes: it takes seconds as a double, which libuv turns into a timespec and cuts to
// whole microseconds, toward zero. Near 1.8e9 s a double resolves only ~238 ns, so the plain quotient of a time
// that falls on a whole microsecond (every copy of one) lands a microsecond off about half the time: a copy 1 µs
// below its original, and, where the original fell on a whole millisecond, a copy whose millisecond differs,
// which grimseld never recognised as its copy. Half a microsecond away from zero keeps the double inside the
// right microsecond; the file is read back, and another candidate tried where it is not (a libuv that rounds
// otherwise, or beyond 2^33 s where a double no longer resolves a microsecond).
import { fstatSync, futimesSync } from 'node:fs';

const NS = 1_000_000_000n;
const US = 1000n;

/** `ns` cut down to its microsecond (floor: -1 ns is the microsecond before the epoch). */
export function toMicrosecond(ns: bigint): bigint {
  const r = ns % US;
  return r < 0n ? ns - r - US : ns - r;
}

/** Whole seconds (floor) and the microseconds after them. */
function split(ns: bigint): [bigint, bigint] {
  let sec = ns / NS;
  if (ns < 0n && sec * NS !== ns) sec -= 1n;
  return [sec, (ns - sec * NS) / US];
}

/**
 * Seconds to hand futimes/utimes so that the file gets exactly the microsecond of `ns` (below it: dropped),
 * as libuv cuts toward zero: half a microsecond away from it (before 1970, below).
 */
export function utimesSeconds(ns: bigint): number {
  const [sec, us] = split(ns);
  return Number(sec) + (Number(us) + (ns < 0n ? -0.5 : 0.5)) / 1e6;
}

/** The seconds tried in turn for `ns`: utimesSeconds, then half a microsecond the other way, then the exact quotient. */
function candidates(ns: bigint): number[] {
  const [sec, us] = split(ns);
  const at = (off: number): number => Number(sec) + (Number(us) + off) / 1e6;
  return ns < 0n ? [at(-0.5), at(0.5), at(0)] : [at(0.5), at(-0.5), at(0)];
}

/**
 * Gives the open file `fd` the access and modification times `atimeNs`, `mtimeNs` (ns since the epoch, negative
 * before 1970) to the microsecond, and returns the mtime the file got, as the kernel reports it. That is
 * toMicrosecond(mtimeNs), unless the file system cannot store the time: ext4 keeps 1901-12-13 … 2446-05-10
 * (2^31 s either side of the epoch on a small or old one) and clamps to the edge, tmpfs and btrfs keep any
 * (see sameSizeAndMtime, and storeableMtime for what a caller makes of another result).
 */
export function setFileTimes(fd: number, atimeNs: bigint, mtimeNs: bigint): bigint {
  const want = toMicrosecond(mtimeNs);
  const a = candidates(atimeNs);
  const m = candidates(mtimeNs);
  let got = want;
  for (let i = 0; i < m.length; i++) {
    // Strings: a negative number would be taken for "now" (above).
    futimesSync(fd, String(a[i]), String(m[i]));
    got = fstatSync(fd, { bigint: true }).mtimeNs;
    if (got === want) return got;
  }
  return got;
}

/**
 * Whether `got` (what a file system stored, setFileTimes) keeps the mtime `wantNs`: the same microsecond, or
 * within the 2 µs a double of seconds resolves beyond 2^33 s (year 2242). Otherwise the time is not one the
 * file system can store: the caller says so.
 */
export function storeableMtime(wantNs: bigint, got: bigint): boolean {
  const d = toMicrosecond(wantNs) - got;
  return d <= 2000n && d >= -2000n;
}

/**
 * The edges Linux file systems clamp a time beyond their range to, in seconds: a signed 32-bit time_t
 * (2038-01-19 and 1901-12-13; ext4 with small inodes, ext3, xfs without bigtime), ext4's 34-bit one
 * (2446-05-10) and xfs bigtime's (2486-07-02). tmpfs and btrfs keep any time.
 */
const CLAMP_EDGES_S = new Set([2 ** 31 - 1, -(2 ** 31), 15_032_385_535, 16_299_260_424]);

/**
 * Whether mtime `copyMs` is what a file system that cannot store `originalMs` makes of it: one of the edges
 * above, beyond which the original lies. So a copy on ext4 of a file of the year 2500 is its copy, and no other
 * file with a whole-second mtime between 2038 and the original's is.
 */
function clampedCopy(originalMs: number, copyMs: number): boolean {
  if (copyMs % 1000 !== 0 || !CLAMP_EDGES_S.has(copyMs / 1000)) return false;
  return copyMs > 0 ? originalMs > copyMs : originalMs < copyMs;
}

/**
 * G3's measure of the same file: the same size and the same mtime, to the millisecond (what every copy path
 * keeps), or within 2 µs across a millisecond's edge, or a copy's mtime clamped to the edge of what its file
 * system keeps (clampedCopy). A copy's mtime is its original's cut to the microsecond (above), and an mtime in
 * milliseconds as a double resolves ~0.24 µs: an original at .707999999 s reads as 708 ms, its copy at .707999
 * as 707. Copies made before utimesSeconds were up to 1 µs low too. Without the tolerance such a copy was never
 * taken for complete, and its original stayed for good (G5, G6); the same for a clamped one.
 */
export function sameSizeAndMtime(a: { size: number; mtimeMs: number }, b: { size: number; mtimeMs: number }): boolean {
  if (a.size !== b.size) return false;
  if (Math.floor(a.mtimeMs) === Math.floor(b.mtimeMs) || Math.abs(a.mtimeMs - b.mtimeMs) < 0.002) return true;
  return clampedCopy(a.mtimeMs, b.mtimeMs) || clampedCopy(b.mtimeMs, a.mtimeMs);
}

/**
 * The steps, in ms, in which file systems with coarse times keep an mtime: exFAT 10 ms; ext3, ext4 with 128-byte
 * inodes and others whole seconds; FAT 2 s. Linux cuts a time down to its file system's step
 * (timestamp_truncate), as `cp -p` to such a disk shows.
 */
const COARSE_STEPS_MS = [10, 1000, 2000] as const;

/**
 * The step (ms) in which a coarse file system kept `copyMs` for `originalMs`: the copy's time a whole number of
 * steps, and the original's within the step after it. Undefined: no such cut.
 */
export function cutToStep(originalMs: number, copyMs: number, steps: readonly number[] = COARSE_STEPS_MS): number | undefined {
  for (const step of steps) {
    const d = originalMs - copyMs;
    if (copyMs % step === 0 && d >= 0 && d < step) return step;
  }
  return undefined;
}

/**
 * The step (ms) of the coarse file system the open file `fd` is on, which stored `storedNs` when given the mtime
 * `mtimeNs` (setFileTimes): cutToStep where one step fits. An original within 10 ms after a whole second fits
 * several (exFAT and ext3 both cut it to that second), and one in the first second after an even one fits both
 * whole and even seconds: one file cannot tell them apart, and the first step that fit was said (an ext3 disk
 * taken for exFAT about once in a hundred, a FAT one for ext3 every other time). The file system is asked then:
 * `fd` is given a time 5 ms below the next even second, which each step cuts to another time, then its own again.
 */
export function coarseStep(fd: number, atimeNs: bigint, mtimeNs: bigint, storedNs: bigint): number | undefined {
  const wantMs = Number(toMicrosecond(mtimeNs) / US) / 1000;
  const storedMs = Number(storedNs / US) / 1000;
  const fitting = COARSE_STEPS_MS.filter((step) => cutToStep(wantMs, storedMs, [step]) !== undefined);
  if (fitting.length <= 1) return fitting[0];
  const evenSecondNs = BigInt(Math.floor(storedMs / 2000) * 2000) * 1_000_000n;
  const probeNs = evenSecondNs + 1_995_000_000n; // 10 ms: +1990; a second: +1000; two: +0 (away from any edge)
  const probed = setFileTimes(fd, atimeNs, probeNs);
  const again = setFileTimes(fd, atimeNs, mtimeNs);
  if (again !== storedNs) throw new Error(`mtime stored as ${again} ns, not as ${storedNs} ns as before`);
  return cutToStep(Number(probeNs / US) / 1000, Number(probed / US) / 1000, fitting);
}

/**
 * G3's measure of a copy on a storage: sameSizeAndMtime, or the same size with the original's mtime cut to the
 * step of a file system with coarse times (cutToStep). A copy on such a disk (an exFAT or FAT stick, an old ext3
 * one) is the copy of its original, so that its original is cleaned up with its shift (G5, G6, G7) and not copied
 * again (G3), as `rsync --modify-window` sees it. Only a copy's time may be the cut one: not either way round.
 */
export function sameCopyOf(copy: { size: number; mtimeMs: number }, original: { size: number; mtimeMs: number }): boolean {
  if (sameSizeAndMtime(copy, original)) return true;
  return copy.size === original.size && cutToStep(original.mtimeMs, copy.mtimeMs) !== undefined;
}

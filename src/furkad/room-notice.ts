// What furkad logs of a detector's files waiting for room on the PPU ramdisk (F10, S4): a few lines an administrator
// can read, never one per file. Behind a full ramdisk tens of thousands of files wait, and a line for each (again each
// time one dropped out of a run's list and came back) wrote 18 398 lines in a minute: three 2 MB log files in a
// second, everything before them (start-up, restarts) rotated away, and under journald its rate limit dropping the rest.
import type { Logger } from '../common/logger.js';
import { monotonicMs } from '../common/monotonic.js';

/** A line names every new file up to this many; past it the first few and the last, and counts the rest. */
const NAMED_ALL = 20;
const NAMED_FIRST = 5;
/** Lines said at once (a wait starting, what it grew by at first), then one more per LINE_EVERY_MS at most. */
const BURST = 3;
const LINE_EVERY_MS = 30_000;
/** Names kept as said past this (and twice the files waiting) are forgotten but for those still waiting. */
const SAID_KEPT = 10_000;

/**
 * What furkad says of a file that does not fit (log, lastError, the failed run's message): both transports. A ramdisk
 * out of inodes (`inodes` free 0) is said as such: "does not fit in the 500 MB free" sent the administrator to `df -h`,
 * which showed plenty of room (hostile tester h15).
 */
export function noRoomMessage(rel: string, size: number | undefined, free: number | undefined, inodes?: { free: number; total: number }): string {
  const sized = size === undefined ? '' : ` (${size} bytes)`;
  if (inodes?.free === 0) return `${rel}${sized} cannot be placed: ${outOfInodes(free, inodes.total)}: it stays on the detector until there is room`;
  return `${rel}${sized} does not fit in ${roomOf(free)} on the PPU ramdisk: it stays on the detector until there is room, other files go on`;
}

/** A PPU ramdisk out of inodes, with `free` bytes free, in words. */
export function outOfInodes(free: number | undefined, total: number): string {
  return `the PPU ramdisk is out of inodes (0 of ${total} free, see df -i${free === undefined ? '' : `; ${free} bytes are free`})`;
}

function roomOf(free: number | undefined): string {
  return free === undefined ? 'the free space' : `the ${free} bytes free`;
}

/** Of `all` (in the order found), the names a line gives: all when few, else the first few and the last. */
export function fewNames(all: readonly string[]): string[] {
  return all.length <= NAMED_ALL ? [...all] : [...all.slice(0, NAMED_FIRST), all[all.length - 1] ?? ''];
}

/** `names` (fewNames() of `count` files) as a line says them: all when few, else the first few, the last, and a count. */
export function namedFew(names: readonly string[], count: number): string {
  if (count <= NAMED_ALL) return names.join(', ');
  return `${names.slice(0, NAMED_FIRST).join(', ')}, … ${names[names.length - 1] ?? ''} (${count - NAMED_FIRST - 1} more not named)`;
}

export class RoomNotice {
  /** Files said (named or counted) since the room was last back: one that drops out of a run's list and comes back is no news. */
  #said = new Set<string>();
  /** News not said yet (the rate): how many, the first names, the last, a lone file's size. */
  #count = 0;
  #first: string[] = [];
  #last = '';
  #size: number | undefined;
  #free: number | undefined;
  /** Whether this wait has been said at all: later lines tell of more files. */
  #started = false;
  #tokens = BURST;
  #refilledAt: number;

  constructor(private readonly id: string, private readonly log: Logger, private readonly now: () => number = monotonicMs) {
    this.#refilledAt = now();
  }

  /**
   * Files found waiting on the detector for room (`free` bytes free on the PPU ramdisk then; `size` a lone file's, if
   * known): the ones not said yet are said, in one line, now or once the rate allows (at a later call).
   */
  waiting(rels: Iterable<string>, free: number | undefined, size?: number): void {
    this.found(rels, free, size);
    this.say();
  }

  /** As waiting(), but said only at say(): a run's several fetches that found no room at once are one line. */
  found(rels: Iterable<string>, free: number | undefined, size?: number): void {
    for (const rel of rels) {
      if (this.#said.has(rel)) continue;
      this.#said.add(rel);
      this.#count++;
      if (this.#first.length < NAMED_ALL) this.#first.push(rel);
      this.#last = rel;
      this.#size = this.#count === 1 ? size : undefined;
    }
    if (this.#count > 0) this.#free = free;
  }

  /** The files waiting now: names said of files no longer waiting are forgotten once many (a long wait's memory). */
  still(waiting: ReadonlySet<string>): void {
    if (this.#said.size <= Math.max(SAID_KEPT, 2 * waiting.size)) return;
    this.#said = new Set([...this.#said].filter((rel) => waiting.has(rel)));
  }

  /** Room is back: the next wait is news again (the rate goes on: a room coming and going is no reason to flood). */
  clear(): void {
    this.#said.clear();
    this.#count = 0;
    this.#first = [];
    this.#started = false;
  }

  /** The files found and not said yet, in one line, if the rate allows (else at a later call). */
  say(): void {
    if (this.#count === 0) return;
    const t = this.now();
    this.#tokens = Math.min(BURST, this.#tokens + (t - this.#refilledAt) / LINE_EVERY_MS);
    this.#refilledAt = t;
    if (this.#tokens < 1) return;
    this.#tokens--;
    const n = this.#count;
    const names = n <= NAMED_ALL ? this.#first : [...this.#first.slice(0, NAMED_FIRST), this.#last];
    if (n === 1) {
      this.log.warn({ detector: this.id, file: this.#last, size: this.#size, free: this.#free }, noRoomMessage(this.#last, this.#size, this.#free));
    } else {
      this.log.warn({ detector: this.id, files: names, count: n, free: this.#free },
        `${n} ${this.#started ? 'more ' : ''}files do not fit in ${roomOf(this.#free)} on the PPU ramdisk: they stay on the detector ` +
        `until there is room, other files go on: ${namedFew(names, n)}`);
    }
    this.#started = true;
    this.#count = 0;
    this.#first = [];
  }
}

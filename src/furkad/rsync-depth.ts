// Directories too deep for furkad to take over rsync (F1, F2): never pulled, never removed, left on the detector and
// reported, as furka-agent leaves them (A2, agent/scanner.ts DEEP_MAX).
//
// A file furkad takes must fit PATH_MAX where it lands: in staging, under its final name, at grimseld. rsync's
// receiver works relative to its destination, so it writes a file whose full path is longer than the kernel takes
// by name; the daemon then removes the source, and furkad can neither checksum nor place the staged copy (found by
// a hostile tester: the only copy held in root-only staging, the detector stuck). Such a file must therefore never
// be sent. rsync's filter patterns cannot measure a path in bytes (`*`, `?` and `[…]` never match '/'), but they can
// count components: a directory of depth k is at most 256k - 1 bytes long, so every directory long enough to be
// refused is at or below the first depth that could be. The sender is told to hide the directories at that depth
// (`- /*/…/*/`), and with -vv reports each one it hides (rsync.ts HIDING). furkad measures each reported one: too
// long, it is refused (left there, reported); short enough, it is shown from the next run on (`+ /DIR/`), its own
// subdirectories hidden at the first depth below it that could be too long, and so on down. A tree of deep but
// short names so costs one run per step down, and nothing is ever taken that furkad cannot place.
import { NAME_MAX } from '../common/name-max.js';
import { nameInPattern } from './rsync-names.js';

/**
 * Directories whose full path on the PPU (staging, or the shift's directory, whichever is longer) is this long
 * (bytes) or longer are refused: the agent's measure (agent/scanner.ts), which leaves room for a 255-byte name
 * below, and for the '/' and NUL: PATH_MAX (4096) less 258.
 */
export const DEEP_MAX = 4096 - 258;

/** Directories shown (found short enough at a hidden depth) that are kept; more are learned again as they come. */
const SHOWN_MAX = 64;

/** The depth (components) below which a directory starting with `used` bytes of path may become `budget` bytes long. */
function firstDeepDepth(used: number, budget: number): number {
  // A directory j components below holds at most j names of NAME_MAX bytes and their j slashes.
  return Math.max(1, Math.ceil((budget - used) / (NAME_MAX + 1)));
}

export class DeepDirs {
  /** Directories (relative to the source) found short enough at a hidden depth, with their byte length: shown. */
  #shown = new Map<string, number>();
  /** Directories too deep, as of the last full listing, relative to the source (shown with a trailing '/'). */
  #refused: string[] = [];
  /** The hiding rules of the last rules(): the directory each is below ('' = the source), the depth it hides at, its pattern. */
  #hiding: Array<{ below: string; depth: number; pattern: string }> = [];
  #budget = 0;

  /**
   * The longest relative directory path taken below `roots` (staging, the shift's directory: every place a file
   * lands with its relative path): less than this many bytes.
   */
  static budget(roots: string[]): number {
    return DEEP_MAX - Math.max(...roots.map((r) => Buffer.byteLength(r.replace(/\/+$/, '')))) - 1;
  }

  /**
   * The rsync filter rules (in order: `--include` / `--exclude` arguments, as `[kind, pattern]`) that hide every
   * directory that could be `budget` bytes long or longer, and show the ones learned to be shorter.
   */
  rules(budget: number): Array<['include' | 'exclude', string]> {
    if (budget !== this.#budget) {
      // Another target or usrdir: what was measured against the old one is measured again.
      this.#shown.clear();
      this.#budget = budget;
    }
    const out: Array<['include' | 'exclude', string]> = [];
    // Deepest first: the first rule that matches decides, and a shown directory lies below another's hiding depth.
    const shown = [...this.#shown].sort((a, b) => depth(b[0]) - depth(a[0]));
    this.#hiding = [];
    for (const [rel, bytes] of shown) {
      const j = firstDeepDepth(bytes, budget);
      const pattern = `/${nameInPattern(rel, true)}/${'*/'.repeat(j)}`;
      out.push(['include', `/${nameInPattern(rel, false)}/`], ['exclude', pattern]);
      this.#hiding.push({ below: rel, depth: depth(rel) + j, pattern });
    }
    const k = firstDeepDepth(0, budget);
    const pattern = `/${'*/'.repeat(k)}`;
    out.push(['exclude', pattern]);
    this.#hiding.push({ below: '', depth: k, pattern });
    return out;
  }

  /**
   * What a full listing run hid (rsync.ts: `[sender] hiding directory NAME because of pattern P`): directories
   * hidden by these rules are measured, the short enough shown from the next run on, the others refused.
   * Returns the ones refused now that were not before (for the log).
   */
  learn(hidden: Array<{ name: string; pattern: string; dir: boolean }>): string[] {
    const refused: string[] = [];
    for (const h of hidden) {
      if (!h.dir || !this.#hidOwn(h.name, h.pattern)) continue;
      const bytes = Buffer.byteLength(h.name);
      // Hidden again although shown: the name reported is not the directory's (rsync cuts a long message, a
      // name with it): it cannot be measured, so it is refused (left there, reported), never guessed to fit.
      if (bytes >= this.#budget || this.#shown.has(h.name)) {
        refused.push(`${h.name}/`);
      } else if (!this.#shown.has(h.name)) {
        if (this.#shown.size >= SHOWN_MAX) this.#shown.delete(this.#shown.keys().next().value as string);
        this.#shown.set(h.name, bytes);
      }
    }
    const before = new Set(this.#refused);
    this.#refused = refused;
    return refused.filter((r) => !before.has(r));
  }

  /**
   * Whether directory `name` was hidden by one of these rules: at its depth below its directory, reported with its
   * pattern, or the start of it (rsync cuts a message at about 5 KB and marks it `[...]`: a long name leaves room for
   * part of a long pattern only).
   */
  #hidOwn(name: string, pattern: string): boolean {
    const d = depth(name);
    const start = pattern.replace(/\[\.\.\.\]$/, ''); // rsync's mark of a cut message
    return start.length > 0 && this.#hiding.some((r) => r.depth === d && (r.below === '' || name.startsWith(`${r.below}/`)) && r.pattern.startsWith(start));
  }

  /** The directories refused as of the last full listing (left on the detector, with all below them). */
  get refused(): string[] {
    return this.#refused;
  }
}

function depth(rel: string): number {
  return rel.split('/').length;
}

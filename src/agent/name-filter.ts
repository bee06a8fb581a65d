// Which files the agent never announces: hidden (temp) names and the `exclude` globs, on each name in the path.

/**
 * Matches a shell-style glob against a whole name: `*` any run of characters (also none), `?` one
 * character, everything else literally (no classes, no escapes; Node 16 has no path.matchesGlob).
 */
export function globMatch(pattern: string, name: string): boolean {
  const p = [...pattern];
  const n = [...name];
  let pi = 0;
  let ni = 0;
  // Where the last `*` was and what it has swallowed so far: on a mismatch it takes one character more.
  let star = -1;
  let starAt = 0;
  while (ni < n.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === n[ni]))) {
      pi++;
      ni++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      starAt = ni;
    } else if (star >= 0) {
      pi = star + 1;
      ni = ++starAt;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

/**
 * Why an `exclude` value is wrong, or undefined: a list written with commas (`*.tmp, *.part`, `*.tmp,*.part`) makes
 * patterns that match nothing of what was meant (`*.tmp,`), and the writer's temp files would be sent under their
 * temp names (hostile tester h12). Patterns are separated by spaces; a comma inside a name (`scan,1.*`) is kept.
 */
export function excludeProblem(value: string): string | undefined {
  // A comma at either end of a pattern, or before the start of another glob (`*.tmp,*.part`): a list (reviewer r5).
  const comma = words(value).find((w) => w.endsWith(',') || w.startsWith(',') || /,[*?.]/.test(w));
  if (comma === undefined) return undefined;
  const meant = words(value).flatMap((w) => w.split(/,(?=[*?.])|^,+|,+$/)).filter((w) => w !== '').join(' ');
  return `'${comma}' holds a comma between patterns: they are separated by spaces, as in '${meant}'`;
}

/** Splits a space-separated config value into its words. */
export function words(value: string): string[] {
  return value.split(/\s+/).filter((w) => w !== '');
}

export class NameFilter {
  readonly #patterns: string[];

  constructor(exclude: string) {
    this.#patterns = words(exclude);
  }

  /**
   * True for a base name the agent leaves alone. A name starting with '.' is a writer's temp name (rsync's,
   * and most writers' that rename into place): the file is announced under its final name, never this one.
   */
  skips(baseName: string): boolean {
    return baseName.startsWith('.') || this.#patterns.some((p) => globMatch(p, baseName));
  }

  /**
   * True for a path (below the root) with such a name anywhere in it, as rsync's `exclude` takes a pattern
   * without a slash: a writer that fills a hidden directory and renames it (`.run7.tmp` to `run7`) gets its
   * files announced once, under the final name, when the directory is renamed (a directory moved in is
   * scanned). Found by a hostile tester: files closed before the rename were delivered below `.run7.tmp`.
   */
  skipsPath(rel: string): boolean {
    return rel.split('/').some((name) => name !== '' && this.skips(name));
  }
}

// The filter rules that hide directories too deep to place and show the ones measured short enough (F1, F2),
// checked against the real rsync binary's filter matching on a local tree.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeepDirs } from '../../src/furkad/rsync-depth.js';

/** The files rsync would send from `src` with `rules`, relative to it. */
function sent(src: string, rules: Array<['include' | 'exclude', string]>): string[] {
  const out = execFileSync('rsync', ['-r', '--list-only', ...rules.map(([k, p]) => `--${k}=${p}`), `${src}/`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.startsWith('-')).map((l) => l.split(/\s+/).slice(4).join(' ')).sort();
}

describe('DeepDirs: rsync filter rules for deep directories (F1, F2)', () => {
  let src: string;
  beforeEach(() => {
    src = mkdtempSync(path.join(os.tmpdir(), 'rsync-depth-'));
  });
  afterEach(() => rmSync(src, { recursive: true, force: true }));

  // A budget of 200 bytes hides every directory of the source's top level until it is measured.
  for (const name of ['plain', 'back\\slash', 'star*and[set]', 'q?mark\\and*']) {
    it(`shows a directory named '${name}' once measured short enough, and hides what lies below it at its depth`, () => {
      mkdirSync(path.join(src, name, 'sub'), { recursive: true });
      writeFileSync(path.join(src, name, 'f.img'), 'x');
      writeFileSync(path.join(src, name, 'sub', 'g.img'), 'y');
      const deep = new DeepDirs();
      assert.deepEqual(sent(src, deep.rules(200)), [], 'hidden before it is measured');
      assert.deepEqual(deep.learn([{ name, pattern: '/*/', dir: true }]), []);
      assert.deepEqual(sent(src, deep.rules(200)), [`${name}/f.img`], 'shown, its subdirectory hidden in turn');
    });
  }
});

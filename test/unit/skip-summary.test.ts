import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { skipLine } from '../skip-summary.js';

// The run's closing line: what was skipped, why, and the command that un-skips it.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('skipLine', () => {
  it('says none when nothing was skipped', () => {
    expect(skipLine(new Map(), () => '')).toBe('skipped: none');
  });

  it('names the cause a file depends on, when this machine lacks it, with its command; anything else is skipped in code', () => {
    const sources: Record<string, string> = {
      [`${ROOT}/test/integration/a.test.ts`]: 'describe.skipIf(!pythonAvailable())',
      [`${ROOT}/test/integration/b.test.ts`]: 'it.skip("later")',
    };
    const line = skipLine(
      new Map([
        [`${ROOT}/test/integration/a.test.ts`, 3],
        [`${ROOT}/test/integration/b.test.ts`, 1],
      ]),
      (f) => sources[f] ?? '',
      (marker) => marker === 'pythonAvailable',
    );
    expect(line).toMatch(/^skipped: 4 tests; /);
    expect(line).toContain('1 skipped in code (test/integration/b.test.ts)');
    // Whether Python is lacking depends on this machine: either way the line says so plainly.
    expect(line).toMatch(
      /3 need Python's google-auth \(\.venv is missing\): run `npm run setup:python`|3 skipped in code/,
    );
  });
});

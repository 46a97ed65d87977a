import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The slowest test files, slowest first (measured: most of their time is
 * spent waiting on timers and other processes). They start first, so that
 * none is left running alone at the end of the run, whatever the cache of
 * earlier runs says (a fresh clone in CI has none).
 */
const SLOW = [
  'bench-smoke',
  'shared-cache',
  'faults',
  'pre-auth-cost',
  'keyless',
  'purge-redis-writer',
  'hardening-edge',
  'purge-stale',
  'fuzz',
  'targets',
];

/** Vitest's own order, with the known slow files moved to the front. */
export class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOW.findIndex((name) => f.moduleId.endsWith(`/${name}.test.ts`));
      return i < 0 ? SLOW.length : i;
    };
    return [...sorted].sort((a, b) => rank(a) - rank(b));
  }
}

import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Reporter, TestModule } from 'vitest/node';
import { findRedisServer } from '../infra/redis/redis-server.js';

/**
 * A vitest reporter that ends the run with one line: how many tests were
 * skipped, why, and the command that un-skips them (or "skipped: none").
 * Tests skip only for what this machine lacks; a test file says which by
 * the helper it uses, and the helper's condition tells whether it is lacking.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Cause {
  /** A word in the test file's source that marks it as depending on this. */
  marker: string;
  /** Whether this machine lacks it now. */
  lacking: () => boolean;
  what: string;
  fix: string;
}

const CAUSES: Cause[] = [
  {
    marker: 'pythonAvailable',
    lacking: () => !existsSync(`${ROOT}.venv/bin/python`),
    what: "Python's google-auth (.venv is missing)",
    fix: 'npm run setup:python',
  },
  {
    marker: 'redisAvailable',
    lacking: () => findRedisServer() === undefined,
    what: 'redis-server',
    fix: 'apt-get install -y redis-server',
  },
  {
    marker: 'storage8Available',
    lacking: () => Number(process.versions.node.split('.')[0]) < 22,
    what: '@google-cloud/storage 8, which needs Node 22',
    fix: 'npm run test:node22',
  },
];

/**
 * The closing line for these skipped counts per test file (source text by file); `lacking` says
 * whether this machine lacks what a marker stands for.
 */
export function skipLine(
  skipped: ReadonlyMap<string, number>,
  source: (file: string) => string,
  lacking: (marker: string) => boolean = (m) => CAUSES.find((c) => c.marker === m)?.lacking() ?? false,
): string {
  const byCause = new Map<Cause | undefined, { tests: number; files: string[] }>();
  for (const [file, count] of skipped) {
    const text = source(file);
    const cause = CAUSES.find((c) => text.includes(c.marker) && lacking(c.marker));
    const entry = byCause.get(cause) ?? { tests: 0, files: [] };
    entry.tests += count;
    entry.files.push(relative(ROOT, file));
    byCause.set(cause, entry);
  }
  if (byCause.size === 0) return 'skipped: none';
  const total = [...byCause.values()].reduce((n, e) => n + e.tests, 0);
  const parts = [...byCause].map(([cause, e]) =>
    cause === undefined
      ? `${e.tests} skipped in code (${e.files.join(', ')})`
      : `${e.tests} ${e.tests === 1 ? 'needs' : 'need'} ${cause.what}: run \`${cause.fix}\``,
  );
  return `skipped: ${total} test${total === 1 ? '' : 's'}; ${parts.join('; ')}`;
}

/** Counts skipped tests by file and prints the closing line after everything else, at exit. */
export default class SkipSummary implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const skipped = new Map<string, number>();
    for (const m of modules)
      for (const t of m.children.allTests())
        if (t.result().state === 'skipped') skipped.set(m.moduleId, (skipped.get(m.moduleId) ?? 0) + 1);
    const line = skipLine(skipped, (file) => readFileSync(file, 'utf8'));
    // At exit: after the global setup's teardown (the leak scan), so that it is the run's last line.
    process.once('exit', () => process.stdout.write(`${line}\n`));
  }
}

import { defineConfig } from 'vitest/config';
import { SlowFirst } from './test/sequencer.js';

// Two projects run side by side. Unit tests are pure: they share one worker's module cache (no isolation,
// threads), which halves their cost. Integration tests talk to real servers; each file gets its own process.
// Most of their time is spent waiting on sockets and timers, so three run at once on a 2-core machine.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 3,
    sequence: { sequencer: SlowFirst },
    // The run ends with one line saying what was skipped and the command that un-skips it.
    reporters: ['default', './test/skip-summary.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], pool: 'threads', isolate: false },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/global-setup.ts'],
          pool: 'forks',
        },
      },
    ],
  },
});

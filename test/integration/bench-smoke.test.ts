import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../infra/broker-process.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';

// The bench, shortened: it checks what the bench measures is correct (one mint, no errors), not how fast.
describe.runIf(redisAvailable || process.env['CI'] === 'true')('npm run bench, as a smoke test', () => {
  it('prints every figure, with exactly one mint and no failed request', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [`${ROOT}dist/infra/bench/main.js`], {
      cwd: ROOT,
      timeout: 150_000,
      env: { ...process.env, BENCH_SECONDS: '1', BENCH_SIGN_MS: '200', BENCH_IMPORT_RUNS: '1' },
    });
    expect(stdout).toMatch(
      /\| mints for 300 concurrent requests, 3 instances \| 1 \| 1 \| 300\/300 answered 200 \|/,
    );
    for (const figure of [
      'JWT assertions signed per second',
      'token from L1',
      'token from L2',
      'cold start',
      'RSS of one broker',
      'module load times',
    ]) {
      expect(stdout).toContain(`| ${figure}`);
    }
    expect(stdout).not.toMatch(/[1-9]\d* non-2xx/);
    const json = JSON.parse(readFileSync(`${ROOT}.tmp/bench/bench.json`, 'utf8')) as { rows: unknown[] };
    expect(json.rows.length).toBe(7);
  }, 180_000);
});

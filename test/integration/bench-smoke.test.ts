import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../infra/broker-process.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';

// The bench, shortened: it checks that what the bench measures is correct (one mint, no errors, references
// that really mint), not how fast.
describe.runIf(redisAvailable || process.env['CI'] === 'true')('npm run bench, as a smoke test', () => {
  it('prints every figure, with exactly one mint and no failed request', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [`${ROOT}dist/infra/bench/main.js`], {
      cwd: ROOT,
      timeout: 170_000,
      env: {
        ...process.env,
        BENCH_SECONDS: '0.4',
        BENCH_SIGN_MS: '200',
        BENCH_IMPORT_RUNS: '1',
        BENCH_COLD_RUNS: '1',
        BENCH_SEQUENTIAL: '50',
        BENCH_CACHE_TIMEOUT_MS: '5000',
        BENCH_DECISIONS: '2000',
        // 100 tenants at once on each of 3 instances: the same coordination as 500, less load on a shared machine.
        BENCH_TENANTS: '100',
      },
    });
    const json = JSON.parse(readFileSync(`${ROOT}.tmp/bench/bench.json`, 'utf8')) as {
      rows: Array<{ figure: string; value: string; reference: string; met: boolean | undefined }>;
    };
    const row = (prefix: string) => {
      const found = json.rows.find((r) => r.figure.startsWith(prefix));
      expect(found, prefix).toBeDefined();
      expect(stdout).toContain(`| ${found!.figure} | ${found!.value} |`);
      return found!;
    };
    const mints = row(
      'token endpoint calls for one missing token, 500 concurrent requests across 3 instances',
    );
    expect(mints.value).toBe('1 (500/500 answered 200)');
    expect(mints.met).toBe(true);
    // The references mint too: a naive instance at least once each, google-auth-library once per process.
    const naive = Number(/naive broker without single-flight (\d+) \(500\/500\)/.exec(mints.reference)?.[1]);
    expect(naive).toBeGreaterThanOrEqual(3);
    expect(mints.reference).toContain('google-auth-library JWT clients in 3 processes 3 (500/500)');
    for (const prefix of [
      'JWT assertions signed per second',
      'token from L1',
      'RSS of one broker',
      'token from L2',
      'cold start',
      'module load times',
    ]) {
      row(prefix);
    }
    const keylessMints = row(
      'IAM calls for one cold keyless token, 500 concurrent requests across 3 instances',
    );
    expect(keylessMints.value).toBe('1 (500/500 answered 200)');
    expect(row('metadata-server token fetches per 100 keyless mints').value).toMatch(/^[01]$/);
    row('broker time on a keyless mint beyond the IAM round trip');
    row('policy: load time and one decision');
    const tenants = row("100 tenants' first requests on one shared account");
    expect(tenants.value).toMatch(/^1 source mint, 100 STS exchanges \(300\/300 answered 200/);
    expect(tenants.met).toBe(true);
    row('bounded tenant token from L1');
    expect(row('Upstash commands per served token').value).toMatch(/L1 hit [\d.]+, L2 hit \d+, miss \d+/);
    // An external caller's hit is measured beside a Google caller's, and the kid storm costs at most 2 fetches.
    expect(row('token from L1 for a GitHub-like caller').value).toMatch(/ 0 non-2xx$/);
    const storm = row('key-set fetches at an issuer while 50 tokens with random kids arrive');
    expect(storm.value).toMatch(/^[12] JWKS fetch.* 50\/50 answered 401 .* a genuine token then 200$/);
    expect(storm.met).toBe(true);
    expect(json.rows).toHaveLength(16);
    expect(stdout).not.toMatch(/[1-9]\d* non-2xx/);
  }, 180_000);
});

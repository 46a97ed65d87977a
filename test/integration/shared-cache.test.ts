import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from '../../infra/broker-process.js';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import {
  BIGQUERY,
  BILLING,
  CALENDAR,
  DRIVE,
  examplePolicy,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

// A missing redis-server fails the run under CI=true; elsewhere these tests are skipped.
const run = redisAvailable || process.env['CI'] === 'true';

describe.runIf(run)('shared Upstash cache across broker instances', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let brokers: BrokerProcess[];
  let billing: string;

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack();
    // A cache budget above the default 250 ms: these tests are about coordination, and the test machine
    // may be busy; a timed-out cache call would open the circuit and turn hits into mints.
    const env = { ...cache.env, BROKER_CACHE_TIMEOUT_MS: '3000' };
    brokers = await Promise.all([0, 1, 2].map(() => stack.startBroker('broker', env)));
    billing = await stack.callerToken(BILLING);
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  const mints = () => stack.google.stats.tokensIssued;

  it('mints exactly once for 300 concurrent requests for one missing token across 3 instances', async () => {
    const before = mints();
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => post(`${brokers[i % 3]!.url}/token`, body, { token: billing })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(300).fill(200));
    expect(new Set(results.map((r) => r.json['access_token'])).size).toBe(1);
    expect(mints() - before).toBe(1);
    console.log(`300 concurrent requests across 3 instances → ${mints() - before} mint(s)`);
  });

  it('serves a token minted by one instance as a hit on another', async () => {
    const platform = await stack.callerToken(PLATFORM);
    const before = mints();
    const a = await post(
      `${brokers[0]!.url}/token`,
      { tenant: 'blue', scopes: [DRIVE] },
      { token: platform },
    );
    const b = await post(
      `${brokers[1]!.url}/token`,
      { tenant: 'blue', scopes: [DRIVE] },
      { token: platform },
    );
    expect(a.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(b.headers.get('cache-status')).toBe('broker; hit');
    expect(b.json['access_token']).toBe(a.json['access_token']);
    expect(mints() - before).toBe(1);
  });

  it('keeps its connections to Upstash and to the token endpoint alive', async () => {
    // L1 holds one entry and two tokens are asked in turn, so every answer is a round trip to Upstash.
    const b = await stack.startBroker('broker', { ...cache.env, BROKER_L1_MAX_ENTRIES: '1' });
    const platform = await stack.callerToken(PLATFORM);
    const bodies = [
      { tenant: 'blue', scopes: [DRIVE] },
      { tenant: 'green', scopes: [DRIVE] },
    ];
    for (const body of bodies)
      expect((await post(`${b.url}/token`, body, { token: platform })).status).toBe(200);
    cache.upstash.resetStats();
    for (let i = 0; i < 40; i++) {
      const r = await post(`${b.url}/token`, bodies[i % 2]!, { token: platform });
      expect(r.headers.get('cache-status')).toBe('broker; hit');
    }
    expect(cache.upstash.stats.requests).toBeGreaterThanOrEqual(40);
    expect(cache.upstash.stats.connections).toBeLessThanOrEqual(1);
    // Six mints one after another (a purge between them): one connection to Google's token endpoint.
    const ops = await stack.callerToken(OPS);
    const [connections, minted] = [stack.google.stats.tokenConnections, mints()];
    for (let i = 0; i < 6; i++) {
      expect((await post(`${b.url}/admin/purge`, { tenant: 'blue' }, { token: ops })).status).toBe(200);
      const r = await post(`${b.url}/token`, bodies[0]!, { token: platform });
      expect(r.headers.get('cache-status')).toBe('broker; fwd=miss');
    }
    expect(mints() - minted).toBe(6);
    expect(stack.google.stats.tokenConnections - connections).toBeLessThanOrEqual(1);
    await b.stop();
  });

  it('keeps no token, email or scope in plain text in Redis', async () => {
    const served = await post(
      `${brokers[2]!.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    const client = new Redis(cache.redis.url);
    try {
      const keys = await client.keys('*');
      expect(keys.length).toBeGreaterThan(0);
      const values = await Promise.all(
        keys.map(async (k) => ((await client.type(k)) === 'string' ? client.get(k) : '')),
      );
      const dump = `${keys.join('\n')}\n${values.join('\n')}`;
      for (const secret of [
        String(served.json['access_token']),
        'ya29.',
        REPORTING,
        'acme',
        'bigquery',
        'gserviceaccount',
        'googleapis',
      ]) {
        expect(dump).not.toContain(secret);
      }
    } finally {
      client.disconnect();
    }
  });

  it('purges across instances: a purge on one makes the token unreachable on all', async () => {
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    for (const b of brokers)
      expect((await post(`${b.url}/token`, body, { token: billing })).headers.get('cache-status')).toBe(
        'broker; hit',
      );
    const purged = await post(
      `${brokers[0]!.url}/admin/purge`,
      { serviceAccount: REPORTING },
      { token: await stack.callerToken(OPS) },
    );
    expect(purged.status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100)); // the L1 generation check interval
    const before = mints();
    const after = await Promise.all(brokers.map((b) => post(`${b.url}/token`, body, { token: billing })));
    expect(
      after.filter((r) => r.headers.get('cache-status') === 'broker; fwd=miss').length,
    ).toBeGreaterThanOrEqual(1);
    expect(new Set(after.map((r) => r.json['access_token'])).size).toBe(1);
    expect(mints() - before).toBe(1);
  });

  it('keeps answering 200 while redis-server is killed, and uses the cache again after a restart', async () => {
    const platform = await stack.callerToken(PLATFORM);
    await cache.redis.kill();
    const during = [];
    for (let i = 0; i < 12; i++) {
      const started = Date.now();
      const r = await post(
        `${brokers[i % 3]!.url}/token`,
        { tenant: 'green', scopes: [DRIVE] },
        { token: platform },
      );
      during.push({ status: r.status, ms: Date.now() - started });
    }
    expect(during.map((d) => d.status)).toEqual(Array(12).fill(200));
    expect(Math.max(...during.map((d) => d.ms))).toBeLessThan(2000);
    await cache.redis.restart();
    await new Promise((r) => setTimeout(r, 5500)); // past the circuit breaker's open interval
    const before = mints();
    // A token no instance holds yet: minted once by A, stored in the restarted Redis, a hit on B.
    const idBody = { tenant: 'green', audience: 'https://drive.googleapis.com/' };
    const a = await post(`${brokers[0]!.url}/idtoken`, idBody, { token: platform });
    const b = await post(`${brokers[1]!.url}/idtoken`, idBody, { token: platform });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.json['id_token']).toBe(a.json['id_token']);
    expect(b.headers.get('cache-status')).toBe('broker; hit');
    expect(mints() - before).toBe(1);
  }, 60_000);
});

describe.runIf(run)('refresh ahead with short-lived tokens', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let broker: InProcessBroker;

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack({ accessTokenLifetimeSeconds: 12 });
    broker = await stack.serveBroker('broker', {
      ...cache.env,
      BROKER_REFRESH_SKEW_SECONDS: '3',
      BROKER_REFRESH_AHEAD_SECONDS: '5',
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  it('re-mints inside the refresh window before callers see a miss, and never serves less than the skew', async () => {
    const token = await stack.callerToken(BILLING);
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    const seen: Array<{ status: string | null; token: unknown; expiresIn: number }> = [];
    const start = Date.now();
    while (Date.now() - start < 16_000) {
      const r = await post(`${broker.url}/token`, body, { token });
      expect(r.status).toBe(200);
      seen.push({
        status: r.headers.get('cache-status'),
        token: r.json['access_token'],
        expiresIn: Number(r.json['expires_in']),
      });
      await new Promise((res) => setTimeout(res, 250));
    }
    // Only the very first request misses: every refresh happened ahead, in the background.
    expect(seen.filter((s) => s.status === 'broker; fwd=miss')).toHaveLength(1);
    expect(new Set(seen.map((s) => s.token)).size).toBeGreaterThanOrEqual(2);
    for (const s of seen) expect(s.expiresIn).toBeGreaterThanOrEqual(3);
  }, 30_000);
});

describe.runIf(run)('per-caller rate limits', () => {
  let stack: Stack;
  let cache: LocalSharedCache;

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack({
      policy: {
        ...examplePolicy(),
        rateLimit: { requests: 1000, windowSeconds: 60 },
        rateLimits: { [BILLING]: { requests: 5, windowSeconds: 60 } },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  const burst = async (urls: string[], n: number) => {
    const token = await stack.callerToken(BILLING);
    const out = [];
    for (let i = 0; i < n; i++)
      out.push(
        await post(
          `${urls[i % urls.length]}/token`,
          { serviceAccount: REPORTING, scopes: [BIGQUERY] },
          { token },
        ),
      );
    return out;
  };

  it('counts each caller across instances with the shared limiter, cache hits included, and keeps no email in Redis', async () => {
    const a = await stack.serveBroker('broker', cache.env);
    const b = await stack.serveBroker('broker', cache.env);
    const results = await burst([a.url, b.url], 8);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    const limited = results[5]!;
    expect(limited.json['error']).toBe('rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const other = await post(
      `${a.url}/token`,
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'alice@acme.com' },
      { token: await stack.callerToken(SYNC_JOB) },
    );
    expect(other.status).toBe(200); // limits are per caller
    const client = new Redis(cache.redis.url);
    try {
      const keys = await client.keys('*');
      expect(keys.some((k) => k.startsWith('tb:v1:rl:'))).toBe(true);
      expect(keys.join('\n')).not.toMatch(/acme|gserviceaccount/);
    } finally {
      client.disconnect();
    }
  });

  it('counts in process without a shared cache', async () => {
    const c = await stack.serveBroker('broker');
    expect((await burst([c.url], 7)).map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429]);
  });
});

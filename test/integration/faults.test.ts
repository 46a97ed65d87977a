import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import {
  BIGQUERY,
  BILLING,
  DRIVE,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  startStack,
} from './support/stack.js';

/** Faults injected through the stand-ins; each answer must be a contract JSON code, never a 500 or HTML. */
function expectContractError(
  r: { status: number; headers: Headers; json: Record<string, unknown> },
  status: number,
  error: string,
) {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.json['error']).toBe(error);
}

describe('token endpoint faults', () => {
  let stack: Stack;
  let broker: InProcessBroker;
  let billing: string;
  // Tokens live 3000 s and the skew is 3300 s: every request must re-mint, so a cached token is only ever served stale.
  beforeAll(async () => {
    stack = await startStack({ accessTokenLifetimeSeconds: 3000 });
    broker = await stack.serveBroker('broker', { BROKER_REFRESH_SKEW_SECONDS: '3300' });
    billing = await stack.callerToken(BILLING);
  });
  afterAll(async () => stack?.close());
  const ask = (body: Record<string, unknown> = { serviceAccount: REPORTING, scopes: [BIGQUERY] }) =>
    post(`${broker.url}/token`, body, { token: billing });

  it('retries 500, 503, 429 with Retry-After and reset connections, then succeeds', async () => {
    stack.google.injectFault({ kind: 'status', status: 500 });
    stack.google.injectFault({ kind: 'reset' });
    stack.google.injectFault({ kind: 'status', status: 429, retryAfterSeconds: 1 });
    const before = stack.google.stats.tokenRequests;
    const started = Date.now();
    const r = await ask();
    expect(r.status).toBe(200);
    expect(stack.google.stats.tokenRequests - before).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('serves a still-valid cached token, marked stale, while Google is down', async () => {
    stack.google.injectFault({ kind: 'status', status: 503, body: '<html>unavailable</html>' }, 20);
    const r = await ask();
    stack.google.reset();
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-status')).toBe('broker; hit; detail=stale');
  });

  it('answers 503 with Retry-After within the 10 s deadline when Google hangs and nothing is cached', async () => {
    stack.google.injectFault({ kind: 'hang' }, 20);
    const started = Date.now();
    const r = await post(
      `${broker.url}/token`,
      { tenant: 'green', scopes: [DRIVE] },
      { token: await stack.callerToken(PLATFORM) },
    );
    stack.google.reset();
    expectContractError(r, 503, 'upstream_unavailable');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeLessThan(11_500);
  }, 20_000);

  it('answers a very slow token endpoint normally when it is within the attempt timeout', async () => {
    stack.google.injectFault({ kind: 'delay', ms: 1500 });
    const r = await post(
      `${broker.url}/token`,
      { tenant: 'blue', scopes: [DRIVE] },
      { token: await stack.callerToken(PLATFORM) },
    );
    expect(r.status).toBe(200);
  });
});

describe('Secret Manager faults', () => {
  let stack: Stack;
  let broker: InProcessBroker;
  let billing: string;
  beforeAll(async () => {
    stack = await startStack({ accessTokenLifetimeSeconds: 3000 });
    // Keys are re-read every second and tokens never served from cache (skew 3300 s), so each request reads the secret.
    broker = await stack.serveBroker('broker', {
      BROKER_KEY_TTL_SECONDS: '1',
      BROKER_REFRESH_SKEW_SECONDS: '3300',
    });
    billing = await stack.callerToken(BILLING);
  });
  afterAll(async () => stack?.close());
  const ask = () =>
    post(`${broker.url}/token`, { serviceAccount: REPORTING, scopes: [BIGQUERY] }, { token: billing });
  const later = () => new Promise((r) => setTimeout(r, 1100));

  it('keeps serving with the key in memory while the secret store is unavailable', async () => {
    expect((await ask()).status).toBe(200);
    await later();
    stack.secretManager.injectFault({ kind: 'status', code: status.UNAVAILABLE }, 10);
    expect((await ask()).status).toBe(200);
    stack.secretManager.reset();
  });

  it.each([
    [{ kind: 'status', code: status.NOT_FOUND } as const, 502, 'NOT_FOUND'],
    [{ kind: 'status', code: status.PERMISSION_DENIED } as const, 502, 'PERMISSION_DENIED'],
    [{ kind: 'corrupt' } as const, 502, 'DATA_LOSS'],
  ])('maps %j to a clear code, with no key material', async (fault, code, upstream) => {
    // A fresh broker: nothing in memory to fall back on.
    const fresh = await stack.serveBroker('broker');
    stack.secretManager.injectFault(fault, 5);
    const r = await post(
      `${fresh.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    stack.secretManager.reset();
    expectContractError(r, code, 'upstream_rejected');
    expect(r.json['upstream_error']).toBe(upstream);
    expect(r.text).not.toMatch(/PRIVATE KEY|private_key/);
    await fresh.stop();
  });

  it('answers 503 when the secret store is down and no key is in memory', async () => {
    const fresh = await stack.serveBroker('broker');
    stack.secretManager.injectFault({ kind: 'status', code: status.UNAVAILABLE }, 10);
    const r = await post(
      `${fresh.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    stack.secretManager.reset();
    expectContractError(r, 503, 'upstream_unavailable');
    await fresh.stop();
  });

  it('answers a malformed key with invalid_key, without echoing it', async () => {
    stack.secretManager.put(
      'projects/acme/secrets/reporting-key',
      '{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\\nAAAA',
    );
    await later();
    const r = await ask();
    expectContractError(r, 502, 'upstream_rejected');
    expect(r.json['upstream_error']).toBe('invalid_key');
    expect(r.text).not.toContain('AAAA');
    stack.rotateKey(REPORTING); // a good key again
  });
});

describe('clock skew of ±5 minutes between the broker and Google', () => {
  for (const offset of [-290, 290]) {
    it(`mints with Google ${offset > 0 ? 'ahead' : 'behind'} by ${Math.abs(offset)} s, and caches without a mint loop`, async () => {
      const stack = await startStack({ googleClockOffsetSeconds: offset });
      try {
        const broker = await stack.serveBroker('broker');
        const token = await stack.callerToken(BILLING);
        const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
        const first = await post(`${broker.url}/token`, body, { token });
        const second = await post(`${broker.url}/token`, body, { token });
        expect(first.status).toBe(200);
        // Lifetimes come from expires_in, on the broker's own clock: the skew does not shorten them.
        expect(Number(first.json['expires_in'])).toBeGreaterThan(3500);
        expect(second.headers.get('cache-status')).toBe('broker; hit');
        expect(stack.google.stats.tokensIssued).toBe(1);
      } finally {
        await stack.close();
      }
    });
  }
});

describe.runIf(redisAvailable || process.env['CI'] === 'true')('a slow or flapping shared cache', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let broker: InProcessBroker;
  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack();
    broker = await stack.serveBroker('broker', cache.env);
  });
  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  it('answers 200 with bounded latency when the cache is slow, and when it flaps', async () => {
    const platform = await stack.callerToken(PLATFORM);
    cache.upstash.setDelay(2000);
    const slow = [];
    for (const tenant of ['blue', 'green']) {
      const started = Date.now();
      const r = await post(`${broker.url}/token`, { tenant, scopes: [DRIVE] }, { token: platform });
      slow.push({ status: r.status, ms: Date.now() - started });
    }
    cache.upstash.setDelay(0);
    expect(slow.map((s) => s.status)).toEqual([200, 200]);
    // Each cache call gives up after 250 ms; a mint costs a few more.
    expect(Math.max(...slow.map((s) => s.ms))).toBeLessThan(1500);
    const statuses = [];
    for (let i = 0; i < 10; i++) {
      cache.upstash.setFailing(i % 2 === 0);
      statuses.push(
        (
          await post(
            `${broker.url}/idtoken`,
            { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
            { token: platform },
          )
        ).status,
      );
    }
    cache.upstash.setFailing(false);
    expect(statuses).toEqual(Array(10).fill(200));
  });
});

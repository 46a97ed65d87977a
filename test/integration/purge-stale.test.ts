import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import { DRIVE, OPS, PLATFORM, post, type Stack, startStack } from './support/stack.js';

// A missing redis-server fails the run under CI=true; elsewhere these tests are skipped.
const run = redisAvailable || process.env['CI'] === 'true';

/**
 * Stale-if-error must never bring back a purged token. Tokens live 3000 s and
 * the refresh skew is 3300 s, so every request re-mints and a cached token can
 * only ever be served stale, which is exactly the path under test.
 */
describe.runIf(run)('a purged token is never served stale', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let a: InProcessBroker;
  let b: InProcessBroker;
  let platform: string;
  let ops: string;
  /** Every response body since the first purge, to look for purged tokens in. */
  const bodies: string[] = [];

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack({ accessTokenLifetimeSeconds: 3000 });
    const env = { ...cache.env, BROKER_REFRESH_SKEW_SECONDS: '3300' };
    [a, b] = await Promise.all([stack.serveBroker('broker', env), stack.serveBroker('broker', env)]);
    platform = await stack.callerToken(PLATFORM);
    ops = await stack.callerToken(OPS);
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  const ask = async (broker: InProcessBroker, tenant: string) => {
    const r = await post(`${broker.url}/token`, { tenant, scopes: [DRIVE] }, { token: platform });
    bodies.push(r.text);
    return r;
  };
  const purge = async (broker: InProcessBroker, tenant: string) => {
    const r = await post(`${broker.url}/admin/purge`, { tenant }, { token: ops });
    expect(r.status).toBe(200);
  };
  /** Google's token endpoint answers 503 to every attempt (and retry) until `recover`. */
  const googleDown = () =>
    stack.google.injectFault({ kind: 'status', status: 503, body: '<html>unavailable</html>' }, 50);
  const recover = () => stack.google.reset();

  it('still serves a token stale while Google is down when nothing was purged (control)', async () => {
    const first = await ask(b, 'green');
    expect(first.headers.get('cache-status')).toBe('broker; fwd=miss');
    googleDown();
    const r = await ask(b, 'green');
    recover();
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-status')).toBe('broker; hit; detail=stale');
    expect(r.json['access_token']).toBe(first.json['access_token']);
  });

  it('does not serve a token purged on another instance once the purge is seen (after the check interval)', async () => {
    const held = await ask(b, 'blue');
    expect(held.status).toBe(200);
    const purged = String(held.json['access_token']);
    bodies.length = 0;
    await purge(a, 'blue');
    await new Promise((r) => setTimeout(r, 1200)); // past the L1 generation check interval
    googleDown();
    const onB = await ask(b, 'blue');
    const onA = await ask(a, 'blue');
    const again = await ask(b, 'blue');
    recover();
    for (const r of [onB, onA, again]) {
      expect(r.status).toBe(503);
      expect(r.json['error']).toBe('upstream_unavailable');
    }
    const fresh = await ask(b, 'blue');
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(fresh.json['access_token']).not.toBe(purged);
    for (const text of bodies) expect(text).not.toContain(purged);
  }, 40_000);

  it('does not serve a token purged on another instance within the check interval either', async () => {
    const held = await ask(b, 'blue');
    const purged = String(held.json['access_token']);
    bodies.length = 0;
    // B checked this entry's generations a moment ago; the purge lands before its next check.
    await purge(a, 'blue');
    googleDown();
    const onB = await ask(b, 'blue');
    recover();
    expect(onB.status).toBe(503);
    expect((await ask(b, 'blue')).headers.get('cache-status')).toBe('broker; fwd=miss');
    for (const text of bodies) expect(text).not.toContain(purged);
  }, 40_000);

  it('does not serve a token purged on the same instance', async () => {
    const held = await ask(a, 'blue');
    const purged = String(held.json['access_token']);
    bodies.length = 0;
    await purge(a, 'blue');
    googleDown();
    const onA = await ask(a, 'blue');
    recover();
    expect(onA.status).toBe(503);
    for (const text of bodies) expect(text).not.toContain(purged);
  }, 40_000);
});

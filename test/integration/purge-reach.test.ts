import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import { DRIVE, OPS, PLATFORM, post, type Stack, startStack } from './support/stack.js';

// A missing redis-server fails the run under CI=true; elsewhere these tests are skipped.
const run = redisAvailable || process.env['CI'] === 'true';

/**
 * A purge answers 200 only for what it did. The `admin` function serves no
 * tokens, so without a shared cache its purge could reach nothing: it
 * refuses to start. The all-in-one `broker` function without a shared cache
 * purges its own memory and says that this is all it reached.
 */
describe('purge says how far it reached', () => {
  let stack: Stack;
  let platform: string;
  let ops: string;
  const body = { tenant: 'blue', scopes: [DRIVE] };

  beforeAll(async () => {
    stack = await startStack();
    platform = await stack.callerToken(PLATFORM);
    ops = await stack.callerToken(OPS);
  }, 60_000);

  afterAll(async () => stack?.close());

  it('refuses to start the admin function without a shared cache, naming the problem', async () => {
    const started = Date.now();
    const error = await stack.startBroker('admin').then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error?.message).toMatch(/broker exited with \d+ before it answered/);
    expect(error?.message).toContain('the admin function needs a shared cache');
    expect(error?.message).toContain('UPSTASH_REDIS_REST_URL');
    expect(Date.now() - started).toBeLessThan(15_000);
    // The same setting is refused whichever way the target is named (FUNCTION_TARGET here).
    const viaEnv = await stack.startBroker('admin', { FUNCTION_TARGET: 'admin' }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(viaEnv?.message).toContain('the admin function needs a shared cache');
  });

  it('still starts the token functions without a shared cache', async () => {
    const token = await stack.serveBroker('token');
    const r = await post(`${token.url}/`, body, { token: platform });
    expect(r.status).toBe(200);
    await token.stop();
  });

  it('answers a broker purge without a shared cache with reach "this_instance", and that is what happened', async () => {
    const [a, b] = await Promise.all([stack.serveBroker('broker'), stack.serveBroker('broker')]);
    const onA = await post(`${a.url}/token`, body, { token: platform });
    const onB = await post(`${b.url}/token`, body, { token: platform });
    expect(onA.status).toBe(200);
    expect(onB.status).toBe(200);
    const purged = await post(`${a.url}/admin/purge`, { tenant: 'blue' }, { token: ops });
    expect(purged.status).toBe(200);
    expect(purged.json).toMatchObject({ dropped_local_entries: 1, reach: 'this_instance' });
    expect(String(purged.json['note'])).toMatch(/only this instance/i);
    // As it said: A minted afresh, B still serves what it held.
    const afterA = await post(`${a.url}/token`, body, { token: platform });
    expect(afterA.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(afterA.json['access_token']).not.toBe(onA.json['access_token']);
    const afterB = await post(`${b.url}/token`, body, { token: platform });
    expect(afterB.headers.get('cache-status')).toBe('broker; hit');
    expect(afterB.json['access_token']).toBe(onB.json['access_token']);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe.runIf(run)('purge says how far it reached, with a shared cache', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let platform: string;
  let ops: string;
  const body = { tenant: 'blue', scopes: [DRIVE] };

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    stack = await startStack();
    platform = await stack.callerToken(PLATFORM);
    ops = await stack.callerToken(OPS);
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await cache?.close();
  });

  it('starts the admin function, whose purge reaches the token function: reach "all_instances"', async () => {
    const [token, admin] = await Promise.all([
      stack.serveBroker('token', cache.env),
      stack.serveBroker('admin', cache.env),
    ]);
    const first = await post(`${token.url}/`, body, { token: platform });
    expect(first.status).toBe(200);
    expect((await post(`${token.url}/`, body, { token: platform })).headers.get('cache-status')).toBe(
      'broker; hit',
    );
    const purged = await post(`${admin.url}/purge`, { tenant: 'blue' }, { token: ops });
    expect(purged.status).toBe(200);
    expect(purged.json).toMatchObject({ reach: 'all_instances', dropped_local_entries: 0 });
    expect(purged.json).not.toHaveProperty('note');
    await new Promise((r) => setTimeout(r, 1100)); // the L1 generation check interval
    const after = await post(`${token.url}/`, body, { token: platform });
    expect(after.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(after.json['access_token']).not.toBe(first.json['access_token']);
    await Promise.all([token.stop(), admin.stop()]);
  });

  it('answers a broker purge with a shared cache with reach "all_instances"', async () => {
    const a = await stack.serveBroker('broker', cache.env);
    expect((await post(`${a.url}/token`, body, { token: platform })).status).toBe(200);
    const purged = await post(`${a.url}/admin/purge`, { tenant: 'blue' }, { token: ops });
    expect(purged.status).toBe(200);
    expect(purged.json).toMatchObject({ reach: 'all_instances', dropped_local_entries: 1 });
    expect(purged.json).not.toHaveProperty('note');
    await a.stop();
  });
});

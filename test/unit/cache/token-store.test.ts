import { describe, expect, it } from 'vitest';
import { createMemoryCache } from '../../../shared/cache/memory.js';
import { SharedTokenCache } from '../../../shared/cache/shared-cache.js';
import { TokenStore } from '../../../shared/cache/token-store.js';
import type { CacheKeyParts, Token } from '../../../shared/cache/types.js';
import { CircuitBreaker } from '../../../shared/circuit-breaker.js';
import { BrokerError } from '../../../shared/errors.js';
import { MemoryRedis } from '../support/memory-redis.js';

const parts: CacheKeyParts = {
  kind: 'token',
  account: 'a@p.iam.gserviceaccount.com',
  scopes: ['s'],
  subject: undefined,
  audience: undefined,
};
const CACHE_KEY = new Uint8Array(32).fill(9);

function instance(
  redis: MemoryRedis,
  now: () => number,
  extra: { refreshAheadSeconds?: number; waitDeadlineMs?: number; releaseRetryMs?: number } = {},
) {
  const { releaseRetryMs, ...storeOptions } = extra;
  const failures: string[] = [];
  const l2 = new SharedTokenCache({
    redis,
    cacheKey: CACHE_KEY,
    now,
    timeoutMs: 100,
    breaker: new CircuitBreaker({ now }),
    onFailure: (f) => failures.push(`${f.op}:${f.reason}`),
    ...(releaseRetryMs === undefined ? {} : { releaseRetryMs }),
  });
  const store = new TokenStore({
    l1: createMemoryCache({ now }),
    l2,
    refreshSkewSeconds: 300,
    refreshAheadSeconds: 0,
    now,
    ...storeOptions,
  });
  return { store, l2, failures };
}

function minter(now: () => number, lifetimeSeconds = 3600, delayMs = 30) {
  const m = {
    count: 0,
    mint: async (): Promise<Token> => {
      m.count++;
      await new Promise((r) => setTimeout(r, delayMs));
      return { token: `tok-${m.count}`, expiresAt: now() + lifetimeSeconds * 1000, scope: 's' };
    },
  };
  return m;
}

describe('TokenStore over a shared cache', () => {
  it('mints once across instances and concurrent requests; the others wait and get the same token', async () => {
    const redis = new MemoryRedis();
    const instances = [instance(redis, Date.now), instance(redis, Date.now), instance(redis, Date.now)];
    const m = minter(Date.now);
    const results = await Promise.all(
      Array.from({ length: 90 }, (_, i) => instances[i % 3]!.store.serve(parts, 0, m.mint)),
    );
    expect(m.count).toBe(1);
    expect(new Set(results.map((r) => r.token))).toEqual(new Set(['tok-1']));
  });

  it('serves a token minted by one instance as a hit on another', async () => {
    const redis = new MemoryRedis();
    const a = instance(redis, Date.now);
    const b = instance(redis, Date.now);
    const m = minter(Date.now);
    expect((await a.store.serve(parts, 0, m.mint)).cache).toBe('miss');
    expect(await b.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'hit',
      token: 'tok-1',
    });
    expect(m.count).toBe(1);
    // Nothing in Redis shows the token, the account or the scope.
    const dump = JSON.stringify([...redis.data]);
    expect(dump).not.toMatch(/tok-1|a@p|"s"/);
  });

  it('mints when Redis is down, and opens the circuit', async () => {
    const redis = new MemoryRedis();
    redis.down = true;
    const a = instance(redis, Date.now);
    const m = minter(Date.now, 3600, 1);
    for (let i = 0; i < 5; i++) await a.store.serve({ ...parts, scopes: [`s${i}`] }, 0, m.mint);
    expect(m.count).toBe(5);
    expect(a.failures).toContain('lookup:error');
    expect(a.failures).toContain('lookup:circuit_open');
    expect(a.l2.state).toBe('open');
  });

  it('stops waiting for a peer at the deadline and mints itself', async () => {
    const redis = new MemoryRedis();
    const a = instance(redis, Date.now, { waitDeadlineMs: 200 });
    // Another instance took the lock and died.
    await a.l2.lock(parts, 60_000).then((l) => expect(l).toHaveProperty('owner'));
    const m = minter(Date.now);
    const started = Date.now();
    expect((await a.store.serve(parts, 0, m.mint)).cache).toBe('miss');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(m.count).toBe(1);
  });

  it('releases a lock whose release failed once the cache answers again, so no instance waits out a mint that is over', async () => {
    const redis = new MemoryRedis();
    const releaseRetryMs = 50;
    const a = instance(redis, Date.now, { releaseRetryMs });
    const b = instance(redis, Date.now);
    const m = minter(Date.now, 3600, 1);
    // a mints and stores; the cache drops only the release of a's lock.
    const evalOnce = redis.eval.bind(redis);
    let dropped = 0;
    redis.eval = async (...args) => {
      if (dropped++ === 0) throw new Error('ECONNRESET');
      return evalOnce(...args);
    };
    expect((await a.store.serve(parts, 0, m.mint)).cache).toBe('miss');
    const lockKeys = () => [...redis.data.keys()].filter((k) => k.includes(':lock:'));
    expect(lockKeys()).toHaveLength(1); // left behind, for up to its 15 s
    // A purge: the next request on b needs a mint, and finds a's lock.
    await a.store.purge({ all: true });
    const started = Date.now();
    expect(await b.store.serve(parts, 0, m.mint)).toMatchObject({ cache: 'miss', token: 'tok-2' });
    // Without the retried release, b waits for its 5 s deadline before minting itself.
    expect(Date.now() - started).toBeLessThan(1500);
    expect(lockKeys()).toEqual([]);
    expect(a.failures).toEqual(['unlock:error']);
  });

  it('purges across instances: the generation changes and other L1s notice within the check interval', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    const b = instance(redis, now);
    const m = minter(now, 3600, 0);
    await a.store.serve(parts, 0, m.mint);
    await b.store.serve(parts, 0, m.mint); // b's L1 now holds tok-1
    await a.store.purge({ accounts: [parts.account] });
    t += 1001;
    expect(await b.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-2',
    });
  });

  it('re-mints ahead, in the background, and keeps serving the token in hand', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now, { refreshAheadSeconds: 300 });
    const m = minter(now, 3600, 0);
    await a.store.serve(parts, 0, m.mint);
    t += (3600 - 500) * 1000; // 500 s left: inside skew (300) + ahead (300)
    const hit = await a.store.serve(parts, 0, m.mint);
    expect(hit).toMatchObject({ cache: 'hit', token: 'tok-1' });
    await new Promise((r) => setTimeout(r, 20));
    expect(m.count).toBe(2);
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'hit',
      token: 'tok-2',
    });
  });

  it('serves stale only when the mint failed as unavailable', async () => {
    let t = 1_000_000;
    const now = () => t;
    const a = instance(new MemoryRedis(now), now);
    await a.store.serve(parts, 0, minter(now, 3600, 0).mint);
    t += (3600 - 100) * 1000;
    const down = async (): Promise<Token> => {
      throw new BrokerError('upstream_unavailable', 'down');
    };
    expect((await a.store.serve(parts, 0, down)).cache).toBe('stale');
    await expect(a.store.serve(parts, 120, down)).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('never serves a purged token stale, on the purging instance or another one', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    const b = instance(redis, now);
    const m = minter(now, 3600, 0);
    await b.store.serve(parts, 0, m.mint); // tok-1 in L2 and in b's L1
    await a.store.serve(parts, 0, m.mint); // and in a's L1
    await a.store.purge({ accounts: [parts.account] });
    t += (3600 - 100) * 1000; // 100 s left: stale-servable, and b's generation check is due
    const down = async (): Promise<Token> => {
      throw new BrokerError('upstream_unavailable', 'down');
    };
    await expect(b.store.serve(parts, 0, down)).rejects.toMatchObject({ code: 'upstream_unavailable' });
    await expect(b.store.serve(parts, 0, down)).rejects.toMatchObject({ code: 'upstream_unavailable' });
    await expect(a.store.serve(parts, 0, down)).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('serves nothing stale when neither Google nor the shared cache answers (a purge may be unseen)', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    await a.store.serve(parts, 0, minter(now, 3600, 0).mint);
    t += (3600 - 100) * 1000;
    redis.down = true;
    const down = async (): Promise<Token> => {
      throw new BrokerError('upstream_unavailable', 'down');
    };
    await expect(a.store.serve(parts, 0, down)).rejects.toMatchObject({ code: 'upstream_unavailable' });
    redis.down = false;
    t += 6000; // past the circuit breaker's open interval: L2 confirms the generations again
    expect(await a.store.serve(parts, 0, down)).toMatchObject({
      cache: 'stale',
      token: 'tok-1',
    });
  });

  it('drops a token minted while the shared cache was down once it answers again', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    const m = minter(now, 3600, 0);
    redis.down = true;
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-1',
    });
    t += 1001;
    // Still down: L1 keeps serving what it minted.
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'hit',
      token: 'tok-1',
    });
    redis.down = false;
    t += 6000; // past the circuit breaker's open interval
    // Nothing tells whether another instance purged it meanwhile: it is re-minted.
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-2',
    });
  });

  it('does not cache a token whose mint started before a purge on the same instance', async () => {
    const a = instance(new MemoryRedis(), Date.now);
    const m = minter(Date.now, 3600, 50);
    const inFlight = a.store.serve(parts, 0, m.mint);
    await new Promise((r) => setTimeout(r, 10));
    await a.store.purge({ accounts: [parts.account] });
    expect((await inFlight).token).toBe('tok-1');
    expect(a.store.peek(parts, 0, m.mint)).toBeUndefined();
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-2',
    });
  });

  it('treats a deleted, malformed or lowered generation as a purge, never as the old one', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    const m = minter(now, 3600, 0);
    const genKeys = () => [...redis.data.keys()].filter((k) => k.startsWith('tb:v1:gen:'));
    await a.store.serve(parts, 0, m.mint); // tok-1
    expect(genKeys()).toHaveLength(2); // created fresh on first use: `all` and the account's
    for (const v of genKeys().map((k) => redis.data.get(k)!.value))
      expect(v).toMatch(/^1\.[A-Za-z0-9_-]{22}$/);
    // Nothing in the entry shows the generations it was sealed under.
    const entry = [...redis.data].find(([k]) => k.startsWith('tb:v1:tok:'))![1].value;
    for (const k of genKeys()) expect(entry).not.toContain(redis.data.get(k)!.value.split('.')[1]);

    for (const tamper of [
      (k: string) => redis.data.delete(k),
      (k: string) => redis.data.set(k, { value: 'garbage', expiresAt: undefined }),
      (k: string) => {
        const v = redis.data.get(k)!.value;
        redis.data.set(k, { value: v.replace(/^\d+/, (n) => String(Number(n) - 1)), expiresAt: undefined });
      },
    ]) {
      const before = m.count;
      for (const k of genKeys()) tamper(k);
      t += 1001;
      const served = await a.store.serve(parts, 0, m.mint);
      expect(served.cache).toBe('miss');
      expect(m.count).toBe(before + 1);
      // A fresh instance (no memory of higher generations) does not get an older token either.
      const b = instance(redis, now);
      expect((await b.store.serve(parts, 0, m.mint)).token).toBe(served.token);
    }
  });

  it('takes over a planted lock at once, and a genuine one replayed after its own expiry', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now, { waitDeadlineMs: 60_000 });
    const m = minter(now, 3600, 0);
    // Planted under every name Redis shows, with garbage values.
    await a.store.serve(parts, 0, m.mint);
    await a.store.purge({ accounts: [parts.account] });
    const lockOf = async () => {
      const l = await a.l2.lock(parts, 500);
      if (l === undefined || !('owner' in l)) throw new Error('no lock');
      return l.owner;
    };
    const genuine = await lockOf();
    const lockKey = [...redis.data].find(([, e]) => e.value === genuine)![0];
    redis.data.set(lockKey, { value: 'planted', expiresAt: undefined });
    const started = Date.now();
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-2',
    });
    expect(Date.now() - started).toBeLessThan(100);
    // A genuine value replayed after its own expiry: no wait either.
    await a.store.purge({ accounts: [parts.account] });
    t += 600;
    redis.data.set(lockKey, { value: genuine, expiresAt: undefined });
    expect(await a.store.serve(parts, 0, m.mint)).toMatchObject({
      cache: 'miss',
      token: 'tok-3',
    });
    expect(Date.now() - started).toBeLessThan(200);
  });

  it('drops what L1 holds when the generations keep changing under it (a writer racing the repair)', async () => {
    let t = 1_000_000;
    const now = () => t;
    const redis = new MemoryRedis(now);
    const a = instance(redis, now);
    const b = instance(redis, now);
    const m = minter(now, 3600, 0);
    await a.store.serve(parts, 0, m.mint);
    expect((await b.store.serve(parts, 0, m.mint)).token).toBe('tok-1');
    await a.store.purge({ accounts: [parts.account] });
    // From now on every read of a generation shows garbage, whatever the broker writes.
    const mget = redis.mget.bind(redis);
    redis.mget = async (...keys: string[]) =>
      (await mget(...keys)).map((v, i) => (keys[i]!.startsWith('tb:v1:gen:') ? 'garbage' : v));
    t += 1001;
    const served = await b.store.serve(parts, 0, m.mint);
    expect(served).toMatchObject({ cache: 'miss', token: 'tok-2' });
  });
});

describe('TokenStore and long-lived tokens (docs/contract.md, "Long-lived tokens")', () => {
  /** A minter that mints for the lifetime each request asks, as IAM does. */
  function lifetimes(now: () => number) {
    const asked: number[] = [];
    return {
      asked,
      mintFor: (lifetimeSeconds: number) => async (): Promise<Token> => {
        asked.push(lifetimeSeconds);
        await new Promise((r) => setTimeout(r, 5));
        return { token: `tok-${asked.length}-${lifetimeSeconds}`, expiresAt: now() + lifetimeSeconds * 1000 };
      },
    };
  }
  const SIX_HOURS = 21_600;

  it('serves a long token to requests it covers (remaining > lifetimeSeconds − skew), and to those without lifetimeSeconds', async () => {
    let t = 1_000_000_000;
    const now = () => t;
    const { store } = instance(new MemoryRedis(), now);
    const m = lifetimes(now);
    expect(await store.serve(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS)).toMatchObject({ cache: 'miss' });
    // Within the skew (300 s) of its full life it covers another 6-hour request.
    t += 299_000;
    expect((await store.serve(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS)).cache).toBe('hit');
    // And synchronously, from L1 (its generations were just checked).
    expect(store.peek(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS)?.token).toBe(`tok-1-${SIX_HOURS}`);
    // A request without lifetimeSeconds keeps today's rule: any token with more than the skew left.
    expect((await store.serve(parts, 0, m.mintFor(3600))).token).toBe(`tok-1-${SIX_HOURS}`);
    // A 2-hour request is covered for much longer.
    t += 3 * 3600_000;
    expect((await store.serve(parts, 0, m.mintFor(7200), 7200)).cache).toBe('hit');
    expect(m.asked).toEqual([SIX_HOURS]);
    // Past the skew, a 6-hour request gets a new 6-hour token, and the others get that one from then on.
    const next = await store.serve(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS);
    expect([next.cache, next.token]).toEqual(['miss', `tok-2-${SIX_HOURS}`]);
    expect((await store.serve(parts, 0, m.mintFor(3600))).token).toBe(`tok-2-${SIX_HOURS}`);
  });

  it('a one-hour token never serves a 6-hour request, not even one that joins its mint', async () => {
    const now = Date.now;
    const { store } = instance(new MemoryRedis(), now);
    const m = lifetimes(now);
    const [short, long] = await Promise.all([
      store.serve(parts, 0, m.mintFor(3600)),
      store.serve(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS),
    ]);
    expect(short.expiresAt - now()).toBeLessThanOrEqual(3600_000);
    expect(long.expiresAt - now()).toBeGreaterThan((SIX_HOURS - 300) * 1000);
    expect(m.asked.sort()).toEqual([3600, SIX_HOURS].sort());
  });

  it('refreshes a long token ahead like any other, and serves it stale only if it still covers the request', async () => {
    let t = 2_000_000_000;
    const now = () => t;
    const { store } = instance(new MemoryRedis(), now, { refreshAheadSeconds: 300 });
    const m = lifetimes(now);
    await store.serve(parts, 0, m.mintFor(SIX_HOURS), SIX_HOURS);
    // Near its end, a plain hit is served and re-minted in the background.
    t += (SIX_HOURS - 500) * 1000;
    expect((await store.serve(parts, 0, m.mintFor(3600))).cache).toBe('hit');
    await new Promise((r) => setTimeout(r, 50));
    expect(m.asked).toEqual([SIX_HOURS, 3600]);
    // Google unreachable: a 2-hour request is not served the 1-hour token stale; a plain one is.
    const down = async () => {
      throw new BrokerError('upstream_unavailable', 'down');
    };
    t += 3400_000; // the 1-hour token has 200 s left: past the skew, more than stale's 60 s
    await expect(store.serve(parts, 0, down, 7200)).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect((await store.serve(parts, 0, down)).cache).toBe('stale');
  });
});

import { describe, expect, it } from 'vitest';
import { createMemoryCache } from '../../shared/cache/memory.js';
import type { CacheKeyParts } from '../../shared/cache/types.js';
import { isServable, isServableStale } from '../../shared/lifetime.js';
import { Lru } from '../../shared/lru.js';
import { createMemoryRateLimiter } from '../../shared/rate-limit.js';
import { SingleFlight } from '../../shared/single-flight.js';

const key = (over: Partial<CacheKeyParts> = {}): CacheKeyParts => ({
  kind: 'token',
  account: 'a@p.iam.gserviceaccount.com',
  scopes: ['s1'],
  subject: undefined,
  audience: undefined,
  ...over,
});

describe('lifetime', () => {
  it('serves only while life left exceeds both the skew and the minimum', () => {
    const now = 1_000_000;
    expect(isServable(now + 301_000, now, 300, 0)).toBe(true);
    expect(isServable(now + 300_000, now, 300, 0)).toBe(false);
    expect(isServable(now + 601_000, now, 300, 600)).toBe(true);
    expect(isServable(now + 599_000, now, 300, 600)).toBe(false);
  });

  it('serves stale tokens only with more than 60 s and the minimum left', () => {
    expect(isServableStale(61_000, 0, 0)).toBe(true);
    expect(isServableStale(60_000, 0, 0)).toBe(false);
    expect(isServableStale(100_000, 0, 120)).toBe(false);
  });
});

describe('memory cache', () => {
  it('keeps entries apart by every part of the key', () => {
    const cache = createMemoryCache();
    cache.set(key(), { token: 't0', expiresAt: Date.now() + 60_000 });
    for (const other of [
      key({ kind: 'jwt' }),
      key({ account: 'b@p.iam.gserviceaccount.com' }),
      key({ scopes: ['s1', 's2'] }),
      key({ subject: 'alice@acme.com' }),
      key({ audience: 'https://x.example/' }),
    ]) {
      expect(cache.get(other)).toBeUndefined();
    }
    expect(cache.get(key())?.token).toBe('t0');
  });

  it('drops entries that really expired, and is bounded', () => {
    let now = 0;
    const cache = createMemoryCache({ maxEntries: 2, now: () => now });
    cache.set(key({ scopes: ['a'] }), { token: 'a', expiresAt: 1000 });
    cache.set(key({ scopes: ['b'] }), { token: 'b', expiresAt: 5000 });
    cache.set(key({ scopes: ['c'] }), { token: 'c', expiresAt: 5000 });
    expect(cache.get(key({ scopes: ['a'] }))).toBeUndefined(); // evicted
    now = 5000;
    expect(cache.get(key({ scopes: ['b'] }))).toBeUndefined(); // expired
  });

  it('purges by account or all', () => {
    const cache = createMemoryCache();
    const later = Date.now() + 60_000;
    cache.set(key(), { token: '1', expiresAt: later });
    cache.set(key({ account: 'b@p.iam.gserviceaccount.com' }), { token: '2', expiresAt: later });
    expect(cache.purge({ accounts: ['a@p.iam.gserviceaccount.com'] })).toBe(1);
    expect(cache.get(key())).toBeUndefined();
    expect(cache.purge({ all: true })).toBe(1);
  });
});

describe('Lru and SingleFlight', () => {
  it('evicts the least recently used', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.get('a');
    lru.set('c', 3);
    expect([lru.get('a'), lru.get('b'), lru.get('c')]).toEqual([1, undefined, 3]);
  });

  it('keeps a new entry even when every older one was read, keeps hot entries, and stays bounded', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.get('a');
    lru.get('b');
    lru.set('c', 3);
    expect(lru.get('c')).toBe(3);
    expect(lru.size).toBe(2);

    const big = new Lru<number, number>(100);
    for (let i = 0; i < 10_000; i++) {
      big.get(0); // one hot key, read between every insert
      big.set(i === 0 ? 0 : i, i);
      expect(big.size).toBeLessThanOrEqual(100);
    }
    expect(big.get(0)).toBe(0);
    expect(big.get(9_999)).toBe(9_999);
    expect(big.deleteWhere((k) => k > 9_990)).toBe(9);
  });

  it('runs concurrent work for one key once and shares errors too', async () => {
    const flight = new SingleFlight<number>();
    let runs = 0;
    const work = () => new Promise<number>((r) => setTimeout(() => r(++runs), 10));
    const results = await Promise.all(Array.from({ length: 50 }, () => flight.run('k', work)));
    expect(runs).toBe(1);
    expect(new Set(results)).toEqual(new Set([1]));
    const failing = Promise.all([
      flight.run('e', async () => Promise.reject(new Error('x'))),
      flight.run('e', work),
    ]);
    await expect(failing).rejects.toThrow('x');
    expect(flight.size).toBe(0);
  });
});

describe('memory rate limiter', () => {
  it('allows the limit per window and then answers with Retry-After', async () => {
    let now = 0;
    const limiter = createMemoryRateLimiter({ now: () => now });
    const limit = { requests: 3, windowSeconds: 10 };
    for (let i = 0; i < 3; i++) expect((await limiter.check('a', limit)).success).toBe(true);
    const denied = await limiter.check('a', limit);
    expect(denied.success).toBe(false);
    expect(!denied.success && denied.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((await limiter.check('b', limit)).success).toBe(true); // per caller
    now = 25_000; // two windows later
    expect((await limiter.check('a', limit)).success).toBe(true);
  });

  it('never lets more than the limit through in any window', async () => {
    let now = 0;
    const limiter = createMemoryRateLimiter({ now: () => now });
    const limit = { requests: 10, windowSeconds: 1 };
    const allowed: number[] = [];
    for (now = 0; now < 5000; now += 37) if ((await limiter.check('c', limit)).success) allowed.push(now);
    for (const t of allowed)
      expect(allowed.filter((u) => u > t - 1000 && u <= t).length).toBeLessThanOrEqual(limit.requests);
  });
});

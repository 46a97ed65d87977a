import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import { createUpstashRedis } from '../../shared/adapters/upstash.js';
import { createMemoryCache } from '../../shared/cache/memory.js';
import { SharedTokenCache } from '../../shared/cache/shared-cache.js';
import { TokenStore } from '../../shared/cache/token-store.js';
import type { CacheKeyParts, Token } from '../../shared/cache/types.js';
import { DRIVE, OPS, PLATFORM, post, type Stack, startStack } from './support/stack.js';

// A missing redis-server fails the run under CI=true; elsewhere these tests are skipped.
const run = redisAvailable || process.env['CI'] === 'true';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What someone who can write to the shared cache's Redis (a leaked Upstash
 * token, an operator's mistake, or eviction) can and cannot do. Each test
 * plays one move with a plain Redis client against real redis-server and
 * real broker processes, and checks the token that is actually served.
 */
describe.runIf(run)('a Redis writer against broker instances', () => {
  let stack: Stack;
  let cache: LocalSharedCache;
  let redis: Redis;
  let brokers: InProcessBroker[];
  let platform: string;
  let ops: string;
  /** Every response body of the current test. */
  const bodies: string[] = [];

  beforeAll(async () => {
    stack = await startStack();
    platform = await stack.callerToken(PLATFORM);
    ops = await stack.callerToken(OPS);
  }, 60_000);

  afterAll(async () => stack?.close());

  /** A fresh Redis and three fresh instances (no memory of earlier generations) for each test. */
  const fresh = async () => {
    cache = await startLocalSharedCache();
    redis = new Redis(cache.redis.url);
    brokers = await Promise.all([0, 1, 2].map(() => stack.serveBroker('broker', cache.env)));
    bodies.length = 0;
    return brokers as [InProcessBroker, InProcessBroker, InProcessBroker];
  };
  afterEach(async () => {
    redis?.disconnect();
    await Promise.all((brokers ?? []).map((b) => b.stop()));
    await cache?.close();
  });

  const ask = async (broker: InProcessBroker, tenant = 'blue') => {
    const r = await post(`${broker.url}/token`, { tenant, scopes: [DRIVE] }, { token: platform });
    expect(r.status).toBe(200);
    bodies.push(r.text);
    return { token: String(r.json['access_token']), status: r.headers.get('cache-status') };
  };
  const purge = async (broker: InProcessBroker, tenant = 'blue') => {
    const r = await post(`${broker.url}/admin/purge`, { tenant }, { token: ops });
    expect(r.status).toBe(200);
  };
  /** Names of the purge generations in Redis (`gen:all` and one per account). */
  const generationKeys = () => redis.keys('tb:v1:gen*');
  /** How many response bodies of this test carried `token`. */
  const served = (token: string) => bodies.filter((b) => b.includes(token)).length;

  it('deleting the generations a purge wrote (or their eviction) never brings the purged token back', async () => {
    const [a, b, c] = await fresh();
    const held = await ask(a);
    expect((await ask(b)).token).toBe(held.token);
    await purge(a);
    await sleep(1100);
    const keys = await generationKeys();
    expect(keys.length).toBeGreaterThan(0);
    bodies.length = 0;
    await redis.del(...keys);
    await sleep(1100); // every L1 entry is due for its generation check
    for (const broker of [b, a, c, b]) expect((await ask(broker)).token).not.toBe(held.token);
    expect(served(held.token)).toBe(0);
  });

  it('lowering a generation to a guessed older value never brings the purged token back, even to a fresh instance', async () => {
    const [a, b, c] = await fresh();
    const held = await ask(a);
    expect((await ask(b)).token).toBe(held.token);
    await purge(a);
    await sleep(1100);
    bodies.length = 0;
    // The writer has no copy of the old values: it lowers the counter it sees.
    for (const key of await generationKeys()) {
      const value = String(await redis.get(key));
      await redis.set(
        key,
        value.replace(/^\d+/, (n) => String(Math.max(0, Number(n) - 1))),
      );
    }
    await sleep(1100);
    // C never served blue: it has no memory of the generation the purge wrote, and asks first.
    for (const broker of [c, b, a]) expect((await ask(broker)).token).not.toBe(held.token);
    expect(served(held.token)).toBe(0);
  });

  it('a replayed snapshot of the generations is refused by every instance that saw the purge, and their repair protects the rest once they ask first', async () => {
    const [a, b, c] = await fresh();
    const held = await ask(a);
    expect((await ask(b)).token).toBe(held.token);
    // The writer saves the generations as they are before the purge.
    const saved = new Map<string, string | null>();
    for (const key of await generationKeys()) saved.set(key, await redis.get(key));
    await purge(a);
    await sleep(1100);
    // B serves another token of the same account, so it sees the generation the purge wrote.
    const id = await post(
      `${b.url}/idtoken`,
      { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
      { token: platform },
    );
    expect(id.status).toBe(200);
    bodies.length = 0;
    for (const key of await generationKeys()) if (!saved.has(key)) await redis.del(key);
    for (const [key, value] of saved) if (value !== null) await redis.set(key, value);
    await sleep(1100);
    for (const broker of [b, a, c]) expect((await ask(broker)).token).not.toBe(held.token);
    expect(served(held.token)).toBe(0);
  });

  it('derives lock names apart from entry names, and planted or forged locks do not stall minting', async () => {
    const [a, b, c] = await fresh();
    // A slow mint, so that its lock can be seen in Redis.
    stack.google.injectFault({ kind: 'delay', ms: 1500 });
    const minting = ask(a, 'green');
    let lock: string | undefined;
    for (let i = 0; i < 150 && lock === undefined; i++) {
      lock = (await redis.keys('tb:v1:lock:*'))[0];
      if (lock === undefined) await sleep(10);
    }
    const held = await minting;
    expect(lock).toBeDefined();
    const entries = await redis.keys('tb:v1:tok:*');
    expect(entries.length).toBeGreaterThan(0);
    const suffix = (name: string) => name.slice(name.lastIndexOf(':') + 1);
    expect(entries.map(suffix)).not.toContain(suffix(lock!));
    // The writer plants locks named like every entry, and a forged value under the real lock name.
    for (const entry of entries) await redis.set(`tb:v1:lock:${suffix(entry)}`, 'planted', 'PX', 60_000);
    await redis.set(lock!, randomBytes(24).toString('base64url'), 'PX', 60_000);
    await purge(a, 'green');
    await sleep(1100);
    const started = Date.now();
    const minted = stack.google.stats.tokensIssued;
    const after = await Promise.all(
      [a, b, c].map(async (broker) => {
        const r = await ask(broker, 'green');
        return { ...r, ms: Date.now() - started };
      }),
    );
    for (const r of after) {
      expect(r.token).not.toBe(held.token);
      expect(r.ms).toBeLessThan(2500); // it waited 12 s for each planted lock before
    }
    expect(stack.google.stats.tokensIssued - minted).toBeGreaterThanOrEqual(1);
    console.log(
      `planted locks: 3 instances re-minted in ${Math.max(...after.map((r) => r.ms))} ms, ${stack.google.stats.tokensIssued - minted} mint(s)`,
    );
  });
});

/**
 * The same moves against the shared cache and token store in this process,
 * over the real Upstash client, the Upstash REST stand-in and redis-server,
 * with short lock lifetimes so that a replayed lock can expire within a test.
 */
describe.runIf(run)('a Redis writer against the shared cache in process', () => {
  let cache: LocalSharedCache;
  let redis: Redis;
  const cacheKey = randomBytes(32);
  const parts = (account: string): CacheKeyParts => ({
    kind: 'token',
    account,
    scopes: ['https://www.googleapis.com/auth/drive.file'],
    subject: undefined,
    audience: undefined,
  });

  beforeAll(async () => {
    cache = await startLocalSharedCache();
    redis = new Redis(cache.redis.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await cache?.close();
  });

  const store = (lockTtlMs = 400) => {
    const l2 = new SharedTokenCache({
      redis: createUpstashRedis({
        url: String(cache.env['UPSTASH_REDIS_REST_URL']),
        token: String(cache.env['UPSTASH_REDIS_REST_TOKEN']),
      }),
      cacheKey,
      timeoutMs: 2000,
    });
    return new TokenStore({
      l1: createMemoryCache(),
      l2,
      refreshSkewSeconds: 300,
      lockTtlMs,
      waitDeadlineMs: 3000,
    });
  };
  let n = 0;
  const mint =
    (delayMs = 0) =>
    async (): Promise<Token> => {
      await sleep(delayMs);
      return {
        token: `ya29.minted-${++n}-${randomBytes(8).toString('hex')}`,
        expiresAt: Date.now() + 3_600_000,
      };
    };
  /** Starts a slow mint and returns the lock it took, as the writer sees it in Redis. */
  const captureLock = async (s: TokenStore, p: CacheKeyParts) => {
    const serving = s.serve(p, 0, mint(300));
    let name: string | undefined;
    let value: string | null = null;
    for (let i = 0; i < 100 && value === null; i++) {
      name = (await redis.keys('tb:v1:lock:*'))[0];
      if (name !== undefined) value = await redis.get(name);
      if (value === null) await sleep(5);
    }
    await serving;
    expect(name).toBeDefined();
    expect(value).not.toBeNull();
    return { name: name!, value: value! };
  };

  it('ignores a genuine lock replayed after its own expiry, and waits for a live one no longer than its lifetime', async () => {
    await redis.flushall();
    const p = parts('replay@acme.iam.gserviceaccount.com');
    const [one, two] = [store(), store()];
    const expired = await captureLock(one, p);
    await sleep(500); // past the 400 ms the lock was taken for
    await one.purge({ accounts: [p.account] });
    await redis.set(expired.name, expired.value, 'PX', 60_000); // replayed, with a long life in Redis
    let started = Date.now();
    expect((await two.serve(p, 0, mint())).cache).toBe('miss');
    expect(Date.now() - started).toBeLessThan(300);

    const live = await captureLock(two, { ...p, scopes: ['other'] });
    await two.purge({ accounts: [p.account] });
    await redis.set(live.name, live.value, 'PX', 60_000); // replayed while its signed life still runs
    started = Date.now();
    expect((await one.serve({ ...p, scopes: ['other'] }, 0, mint())).cache).toBe('miss');
    expect(Date.now() - started).toBeLessThan(1000); // not the 3 s wait deadline: the lock's own expiry
  });

  it('the documented limit: an instance that never saw the purge, asked before any that did, serves the purged token from a replayed snapshot, until that token expires and no longer', async () => {
    await redis.flushall();
    const p = parts('replayed@acme.iam.gserviceaccount.com');
    const one = store();
    const held = await one.serve(p, 0, mint());
    // The writer holds the Upstash token: it saves every key, the sealed entry included.
    const saved = new Map<string, string>();
    for (const key of await redis.keys('tb:v1:*')) saved.set(key, String(await redis.get(key)));
    await one.purge({ accounts: [p.account] });
    expect((await store().serve(p, 0, mint())).token).not.toBe(held.token);
    for (const [key, value] of saved) await redis.set(key, value, 'PX', 3_600_000);
    // A new instance (or an idle one that never read the purged generation) cannot tell the replay from
    // the truth: docs/threat-model.md, "Someone who can write to the shared cache", states it.
    const fresh = await store().serve(p, 0, mint());
    expect(fresh).toMatchObject({ cache: 'hit', token: held.token });
    expect(fresh.expiresAt).toBe(held.expiresAt);
    // The instance that purged refuses it and repairs the generations; after that, nobody serves it.
    const repaired = await one.serve(p, 0, mint());
    expect(repaired.token).not.toBe(held.token);
    expect((await store().serve(p, 0, mint())).token).not.toBe(held.token);
  });

  it('cannot forge an entry, nor move one under another name', async () => {
    await redis.flushall();
    const [one, two] = [store(), store()];
    const p = parts('forge@acme.iam.gserviceaccount.com');
    const q = { ...p, scopes: ['https://www.googleapis.com/auth/bigquery'] };
    const secret = (await one.serve(p, 0, mint())).token;
    const [entry] = await redis.keys('tb:v1:tok:*');
    expect(entry).toBeDefined();
    const sealed = String(await redis.get(entry!));
    expect(sealed).not.toContain('ya29');
    // Moved under the name of another request's entry (known from a slow mint of it).
    await one.serve(q, 0, mint());
    const names = await redis.keys('tb:v1:tok:*');
    const other = names.find((k) => k !== entry)!;
    await redis.set(other, sealed, 'PX', 60_000);
    const served = await two.serve(q, 0, mint());
    expect(served.cache).toBe('miss');
    expect(served.token).not.toBe(secret);
    // Written from scratch, or flipped.
    await redis.set(other, 'forged', 'PX', 60_000);
    expect((await store().serve(q, 0, mint())).token).not.toBe(secret);
  });

  it('can force re-mints by flushing or evicting everything, and nothing worse: the next request mints and is served', async () => {
    await redis.flushall();
    const [one, two] = [store(), store()];
    const p = parts('flush@acme.iam.gserviceaccount.com');
    const first = await one.serve(p, 0, mint());
    expect((await two.serve(p, 0, mint())).token).toBe(first.token);
    await redis.flushall();
    await sleep(1100); // the L1 generation check interval
    const [a, b] = [await one.serve(p, 0, mint()), await two.serve(p, 0, mint())];
    expect(a.cache).toBe('miss');
    expect(a.token).not.toBe(first.token);
    expect(b).toMatchObject({ cache: 'hit', token: a.token });
  });
});

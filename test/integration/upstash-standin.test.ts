import { existsSync } from 'node:fs';
import { Ratelimit } from '@upstash/ratelimit';
import { errors, Redis } from '@upstash/redis';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedisServer } from '../../infra/redis/redis-server.js';
import { scriptSha, toRedisScript } from '../../infra/upstash/lua-flags.js';
import { parseStandInArgs } from '../../infra/upstash/options.js';
import { startUpstashStandIn, type UpstashStandIn } from '../../infra/upstash/server.js';

const TOKEN = 'test-token-0123456789';
const runRedis = describe.skipIf(!redisAvailable && process.env['CI'] !== 'true');

const COMPARE_AND_DELETE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** Raw protocol access, for what the client hides. */
async function post(
  standIn: UpstashStandIn,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${standIn.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  return { status: res.status, body: await res.json() };
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

describe('toRedisScript (Upstash-only shebang flags)', () => {
  it('drops flags redis-server rejects and keeps the ones it knows', () => {
    expect(toRedisScript('#!lua flags=allow-key-locking\nreturn 1')).toBe('#!lua flags=\nreturn 1');
    expect(toRedisScript('#!lua flags=no-writes,allow-key-locking\nreturn 1')).toBe(
      '#!lua flags=no-writes\nreturn 1',
    );
    expect(toRedisScript('#!lua name=x flags=allow-key-locking\r\nreturn 1')).toBe(
      '#!lua name=x flags=\r\nreturn 1',
    );
  });
  it('leaves other scripts untouched', () => {
    for (const script of ['return 1', '#!lua\nreturn 1', '#!lua flags=no-writes,allow-oom\nreturn 1']) {
      expect(toRedisScript(script)).toBe(script);
    }
    expect(scriptSha('return 1')).toBe('e0e1f9fabfc9d4800c877a703b823ac0578ff8db');
  });
});

describe('parseStandInArgs', () => {
  it('reads flags and falls back to the token from the environment', () => {
    expect(
      parseStandInArgs(['--redis', 'redis://127.0.0.1:1', '--port', '8079', '--token', 'dev'], {}),
    ).toEqual({
      redisUrl: 'redis://127.0.0.1:1',
      port: 8079,
      host: '127.0.0.1',
      token: 'dev',
    });
    expect(parseStandInArgs([], { UPSTASH_REDIS_REST_TOKEN: 'env' }).token).toBe('env');
  });
  it('reports every problem at once', () => {
    expect(() => parseStandInArgs(['--port', 'x', '--redis', 'http://x'], {})).toThrow(
      /token.*required.*port.*redis/,
    );
  });
});

runRedis('startRedisServer', () => {
  it('starts, crashes, restarts on the same port and stops', async () => {
    const server = await startRedisServer();
    try {
      expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
      const client = new IORedis(server.url, {
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        lazyConnect: true,
      });
      client.on('error', () => {});
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      const firstPid = server.pid;
      expect(Number((await client.info('server')).match(/process_id:(\d+)/)?.[1])).toBe(firstPid);
      await client.set('k', 'v');

      await server.kill();
      expect(server.pid).toBeUndefined();
      await expect(client.get('k')).rejects.toThrow();

      await server.restart();
      expect(server.pid).not.toBe(firstPid);
      await until(async () => client.status === 'ready', 5_000);
      // --save '' and no AOF: a crash loses everything.
      expect(await client.get('k')).toBeNull();
      client.disconnect();
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dir)).toBe(false);
    await server.stop();
  });
});

runRedis('Upstash stand-in with the real @upstash/redis client', () => {
  let server: RedisServer;
  let standIn: UpstashStandIn;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedisServer();
    standIn = await startUpstashStandIn({ redisUrl: server.url, token: TOKEN });
    redis = new Redis({ url: standIn.url, token: TOKEN });
  });
  afterAll(async () => {
    await standIn?.close();
    await server?.stop();
  });

  it('sets with PX and NX, gets, expires', async () => {
    expect(await redis.set('px', 'one', { px: 60_000, nx: true })).toBe('OK');
    expect(await redis.set('px', 'two', { px: 60_000, nx: true })).toBeNull();
    expect(await redis.get('px')).toBe('one');
    const ttl = await redis.pttl('px');
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await redis.set('short', 'x', { px: 50 })).toBe('OK');
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await redis.get('short')).toBeNull();
  });

  it('increments and deletes', async () => {
    expect(await redis.incr('counter')).toBe(1);
    expect(await redis.incrby('counter', 41)).toBe(42);
    expect(await redis.get('counter')).toBe(42);
    expect(await redis.del('counter', 'missing')).toBe(1);
    expect(await redis.exists('counter')).toBe(0);
  });

  it('runs Lua: compare-and-delete via eval, scriptLoad + evalsha, nested replies', async () => {
    await redis.set('lock', 'owner-a');
    expect(await redis.eval(COMPARE_AND_DELETE, ['lock'], ['owner-b'])).toBe(0);
    expect(await redis.get('lock')).toBe('owner-a');
    expect(await redis.eval(COMPARE_AND_DELETE, ['lock'], ['owner-a'])).toBe(1);
    expect(await redis.get('lock')).toBeNull();

    const sha = await redis.scriptLoad(COMPARE_AND_DELETE);
    expect(sha).toBe(scriptSha(COMPARE_AND_DELETE));
    await redis.set('lock', 'owner-c');
    expect(await redis.evalsha(sha, ['lock'], ['owner-c'])).toBe(1);

    expect(await redis.eval("return {1, 'two', {3, 'four'}, false}", [], [])).toEqual([
      1,
      'two',
      [3, 'four'],
      null,
    ]);
    await expect(redis.evalsha('0'.repeat(40), [], [])).rejects.toThrow(/NOSCRIPT/);
  });

  it('accepts Upstash-only shebang flags and keeps the client’s SHA1', async () => {
    const script = '#!lua flags=allow-key-locking\nreturn redis.call("INCRBY", KEYS[1], ARGV[1])';
    expect(await redis.eval(script, ['flagged'], ['2'])).toBe(2);
    expect(await redis.evalsha(scriptSha(script), ['flagged'], ['3'])).toBe(5);
    const loaded = await redis.scriptLoad(`${script} + 0`);
    expect(loaded).toBe(scriptSha(`${script} + 0`));
    expect(await redis.scriptExists(loaded, '0'.repeat(40))).toEqual([1, 0]);
    expect(await redis.evalsha(loaded, ['flagged'], ['1'])).toBe(6);
  });

  it('runs an explicit pipeline, in order, with per-command errors', async () => {
    const results = await redis.pipeline().set('p1', 'a').incr('p2').incr('p2').get('p1').exec();
    expect(results).toEqual(['OK', 1, 2, 'a']);

    await expect(redis.pipeline().set('p3', 'x').hget('p3', 'f').exec()).rejects.toThrow(errors.UpstashError);
    const kept = await redis.pipeline().get('p3').hget('p3', 'f').exec({ keepErrors: true });
    expect(kept[0]).toEqual({ result: 'x', error: undefined });
    expect(kept[1]?.error).toMatch(/^WRONGTYPE/);
  });

  it('runs a transaction with multi()', async () => {
    const results = await redis.multi().set('m', 1).incr('m').get('m').exec();
    expect(results).toEqual(['OK', 2, 2]);
    const raw = await post(standIn, '/multi-exec', [
      ['SET', 'mx', 'v'],
      ['HGET', 'mx', 'f'],
      ['GET', 'mx'],
    ]);
    expect(raw.status).toBe(200);
    expect(raw.body).toEqual([
      { result: 'OK' },
      { error: expect.stringMatching(/^WRONGTYPE/) },
      { result: 'v' },
    ]);
    // A command Redis refuses to queue aborts the whole transaction.
    const aborted = await post(standIn, '/multi-exec', [['SET', 'my', 'v'], ['NOSUCHCOMMAND']]);
    expect(aborted.status).toBe(400);
    expect(aborted.body).toEqual({ error: expect.stringMatching(/^EXECABORT/) });
    expect(await redis.exists('my')).toBe(0);
  });

  it('batches 100 concurrent commands through auto-pipelining', async () => {
    standIn.resetStats();
    const keys = Array.from({ length: 100 }, (_, i) => `auto:${i}`);
    const sets = await Promise.all(keys.map((key, i) => redis.set(key, `value-${i}`)));
    expect(sets.every((r) => r === 'OK')).toBe(true);
    const gets = await Promise.all(keys.map((key) => redis.get<string>(key)));
    expect(gets).toEqual(keys.map((_, i) => `value-${i}`));
    expect(standIn.stats.commands).toBe(200);
    expect(standIn.stats.requests).toBeLessThanOrEqual(10);
  });

  it('round-trips unicode and binary-ish strings (base64 responses)', async () => {
    const raw = new Redis({ url: standIn.url, token: TOKEN, automaticDeserialization: false });
    const values = [
      'héllo wörld ✓ 🚀 日本語',
      '\u0000\u0001\u0002\u007f\u0080\u00ff',
      'OK',
      'PONG',
      '123',
      '',
      ' leading and trailing ',
      'line\r\nbreak',
      'a'.repeat(100_000),
    ];
    for (const [i, value] of values.entries()) {
      expect(await raw.set(`bin:${i}`, value)).toBe('OK');
      expect(await raw.get(`bin:${i}`)).toBe(value);
    }
    // And a value written by a plain Redis client, byte for byte.
    const direct = new IORedis(server.url);
    await direct.set('bytes', Buffer.from('zürich €', 'utf8'));
    direct.disconnect();
    expect(await raw.get('bytes')).toBe('zürich €');
  });

  it('stores JSON values as the client serialises them', async () => {
    const value = { a: 1, b: [true, null, 'x'], nested: { s: 'ünïcode' } };
    await redis.set('json', value);
    expect(await redis.get('json')).toEqual(value);
    await redis.hset('hash', { f1: 'v1', f2: { deep: 1 } });
    expect(await redis.hgetall('hash')).toEqual({ f1: 'v1', f2: { deep: 1 } });
  });

  it('refuses a wrong or missing token', async () => {
    const wrong = new Redis({ url: standIn.url, token: `${TOKEN}x`, enableAutoPipelining: false });
    await expect(wrong.get('px')).rejects.toThrow(/Unauthorized/);
    const res = await fetch(standIn.url, { method: 'POST', body: '["GET","px"]' });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: 'Unauthorized' });
    expect((await post(standIn, '/', ['GET', 'px'], { authorization: 'Bearer nope' })).status).toBe(401);
  });

  it('turns a Redis error into an UpstashError', async () => {
    await redis.set('str', 'x');
    const direct = new Redis({ url: standIn.url, token: TOKEN, enableAutoPipelining: false });
    await expect(direct.hget('str', 'f')).rejects.toThrow(errors.UpstashError);
    await expect(direct.hget('str', 'f')).rejects.toThrow(/WRONGTYPE/);
    await expect(redis.hget('str', 'f')).rejects.toThrow(errors.UpstashError);
    await expect(redis.eval('return redis.call("NOSUCH")', [], [])).rejects.toThrow(errors.UpstashError);
  });

  it('speaks the raw protocol: results, errors, base64, path-style, bad bodies', async () => {
    expect(await post(standIn, '/', ['SET', 'raw', 'välue', 'PX', 60000, 'NX'])).toEqual({
      status: 200,
      body: { result: 'OK' },
    });
    expect(await post(standIn, '/', ['GET', 'raw'])).toEqual({ status: 200, body: { result: 'välue' } });
    expect(await post(standIn, '/', ['HGET', 'raw', 'f'])).toEqual({
      status: 400,
      body: { error: expect.stringMatching(/^WRONGTYPE/) },
    });
    const b64 = { 'upstash-encoding': 'base64' };
    expect((await post(standIn, '/', ['GET', 'raw'], b64)).body).toEqual({
      result: Buffer.from('välue').toString('base64'),
    });
    await post(standIn, '/', ['RPUSH', 'list', 'a', 'b']);
    expect((await post(standIn, '/', ['EVAL', "return {1, 'x', {2, 'y'}, false}", 0], b64)).body).toEqual({
      result: [1, 'eA==', [2, 'eQ=='], null],
    });
    expect(
      (
        await post(
          standIn,
          '/pipeline',
          [
            ['LRANGE', 'list', 0, -1],
            ['GET', 'nope'],
            ['LLEN', 'list'],
          ],
          b64,
        )
      ).body,
    ).toEqual([{ result: ['YQ==', 'Yg=='] }, { result: null }, { result: 2 }]);
    // Raw replies, not ioredis's reshaped ones.
    await post(standIn, '/', ['ZADD', 'zset', 1, 'one', 2.5, 'two']);
    await post(standIn, '/', ['HSET', 'hraw', 'f', 'v']);
    const reshaped = await post(standIn, '/pipeline', [
      ['ZRANGE', 'zset', 0, -1, 'WITHSCORES'],
      ['hgetall', 'hraw'],
    ]);
    expect(reshaped.body).toEqual([{ result: ['one', '1', 'two', '2.5'] }, { result: ['f', 'v'] }]);
    expect((await post(standIn, '/pipeline', [['GET', 'raw'], ['NOSUCH'], ['SUBSCRIBE', 'c']])).body).toEqual(
      [
        { result: 'välue' },
        { error: expect.stringMatching(/^ERR unknown command/) },
        { error: expect.stringMatching(/not available/) },
      ],
    );

    const get = await fetch(`${standIn.url}/get/raw`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await get.json()).toEqual({ result: 'välue' });
    const setPath = await fetch(`${standIn.url}/set/path%2Fkey?EX=100&_token=${TOKEN}`, {
      method: 'POST',
      body: 'body value',
    });
    expect(await setPath.json()).toEqual({ result: 'OK' });
    expect(await redis.get('path/key')).toBe('body value');
    expect(await redis.ttl('path/key')).toBeGreaterThan(90);

    expect((await post(standIn, '/', '{not json')).status).toBe(400);
    expect((await post(standIn, '/', [])).status).toBe(400);
    expect((await post(standIn, '/', ['GET', { k: 1 }])).status).toBe(400);
    expect((await post(standIn, '/pipeline', ['GET', 'x'])).status).toBe(400);
    expect((await post(standIn, '/', ['MULTI'])).body).toEqual({
      error: expect.stringMatching(/not available/),
    });
    const wrongMethod = await fetch(`${standIn.url}/pipeline`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(wrongMethod.status).toBe(405);
  });

  it('injects faults: 503 while failing, slow answers while delayed', async () => {
    standIn.setFailing(true);
    try {
      const res = await post(standIn, '/', ['PING']);
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: expect.any(String) });
      await expect(redis.get('px')).rejects.toThrow(errors.UpstashError);
    } finally {
      standIn.setFailing(false);
    }
    standIn.setDelay(300);
    try {
      const started = Date.now();
      expect(await redis.get('px')).toBe('one');
      expect(Date.now() - started).toBeGreaterThanOrEqual(280);
      const timedOut = fetch(`${standIn.url}/get/px`, {
        headers: { authorization: `Bearer ${TOKEN}` },
        signal: AbortSignal.timeout(100),
      });
      await expect(timedOut).rejects.toThrow();
    } finally {
      standIn.setDelay(0);
    }
  });

  it('works as the store of @upstash/ratelimit slidingWindow (EVALSHA, NOSCRIPT fallback)', async () => {
    const limiter = new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(3, '10 s'), prefix: 'rl' });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await limiter.limit('caller-1'));
    expect(results.map((r) => r.success)).toEqual([true, true, true, false]);
    expect(results.slice(0, 3).map((r) => r.remaining)).toEqual([2, 1, 0]);
    expect(results.every((r) => r.reason === undefined || r.reason === 'cacheBlock')).toBe(true);
    // A different caller is counted separately, and the counters live in Redis.
    expect((await limiter.limit('caller-2')).success).toBe(true);
    const keys = await redis.keys('rl:*');
    expect(keys.some((k) => k.startsWith('rl:caller-1:'))).toBe(true);
    expect(keys.some((k) => k.startsWith('rl:caller-2:'))).toBe(true);
    // A fresh limiter (no local cache) sees the same Redis state.
    const again = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(3, '10 s'),
      prefix: 'rl',
      ephemeralCache: false,
    });
    standIn.resetStats();
    const fourth = await again.limit('caller-1');
    expect(fourth.success).toBe(false);
    expect(fourth.reason).toBeUndefined();
    // One EVALSHA with the SHA1 of the original script found the rewritten one: no NOSCRIPT, no EVAL.
    expect(standIn.stats.commands).toBe(1);
    expect((await again.getRemaining('caller-2')).remaining).toBe(2);
  });
});

runRedis('Upstash stand-in when redis-server crashes', () => {
  let server: RedisServer;
  let standIn: UpstashStandIn;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedisServer();
    standIn = await startUpstashStandIn({ redisUrl: server.url, token: TOKEN });
    redis = new Redis({ url: standIn.url, token: TOKEN });
  });
  afterAll(async () => {
    await standIn?.close();
    await server?.stop();
  });

  it('fails fast while Redis is down and recovers when it is back on the same port', async () => {
    const limiter = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(5, '10 s'),
      prefix: 'crash',
      ephemeralCache: false,
    });
    expect((await limiter.limit('a')).success).toBe(true);
    await redis.set('before', 'crash');

    await server.kill();
    for (const attempt of [
      () => redis.get('before'),
      () => redis.pipeline().get('before').incr('n').exec(),
      () => redis.multi().get('before').exec(),
      () => redis.eval(COMPARE_AND_DELETE, ['before'], ['crash']),
    ]) {
      const started = Date.now();
      await expect(attempt()).rejects.toThrow(errors.UpstashError);
      expect(Date.now() - started).toBeLessThan(1_000);
    }
    const raw = await post(standIn, '/', ['GET', 'before']);
    expect(raw.status).toBe(503);
    expect(raw.body).toEqual({ error: expect.any(String) });
    expect(standIn.redisReady).toBe(false);

    await server.restart();
    await until(async () => (await redis.ping().catch(() => 'down')) === 'PONG', 5_000);
    expect(standIn.redisReady).toBe(true);
    // The crash lost the data (no persistence) and the script cache.
    expect(await redis.get('before')).toBeNull();
    await redis.set('after', 'restart');
    expect(await redis.get('after')).toBe('restart');
    // EVALSHA answers NOSCRIPT now; the rate limiter falls back to EVAL.
    const afterCrash = await limiter.limit('a');
    expect(afterCrash.success).toBe(true);
    expect(afterCrash.remaining).toBe(4);
  });

  it('answers 503 at once when started before Redis, then serves once Redis is up', async () => {
    const port = server.port;
    await server.stop();
    const early = await startUpstashStandIn({
      redisUrl: `redis://127.0.0.1:${port}`,
      token: TOKEN,
      connectWaitMs: 100,
    });
    try {
      expect(early.redisReady).toBe(false);
      const started = Date.now();
      expect((await post(early, '/', ['PING'])).status).toBe(503);
      expect(Date.now() - started).toBeLessThan(1_000);
      server = await startRedisServer({ port });
      await until(async () => (await post(early, '/', ['PING'])).status === 200, 5_000);
      expect((await post(early, '/', ['PING'])).body).toEqual({ result: 'PONG' });
    } finally {
      await early.close();
    }
  });
});

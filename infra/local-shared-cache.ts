import { randomBytes } from 'node:crypto';
import { type RedisServer, startRedisServer } from './redis/redis-server.js';
import { startUpstashStandIn, type UpstashStandIn } from './upstash/server.js';

/** A real redis-server behind the Upstash REST stand-in, and the broker settings that use it. */
export interface LocalSharedCache {
  readonly redis: RedisServer;
  readonly upstash: UpstashStandIn;
  /** `UPSTASH_REDIS_REST_URL`, `UPSTASH_REDIS_REST_TOKEN` and a random `BROKER_CACHE_KEY`. */
  readonly env: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

/** Starts redis-server on a random loopback port and the Upstash REST front over it. */
export async function startLocalSharedCache(): Promise<LocalSharedCache> {
  const redis = await startRedisServer();
  const token = randomBytes(24).toString('base64url');
  const upstash = await startUpstashStandIn({ redisUrl: redis.url, token });
  return {
    redis,
    upstash,
    env: {
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      BROKER_CACHE_KEY: randomBytes(32).toString('base64'),
    },
    async close() {
      await upstash.close();
      await redis.stop();
    },
  };
}

import type { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import { type CacheKeys, deriveCacheKeys, entryName } from '../cache/sealing.js';
import { CircuitBreaker } from '../circuit-breaker.js';
import type { Limit, RateDecision, RateLimiter } from '../rate-limit.js';
import { upstashRequester } from './upstash.js';

export interface UpstashRateLimiterOptions {
  url: string;
  token: string;
  /** 32 bytes: callers are counted under an HMAC of their email, so Redis holds no email. */
  cacheKey: Uint8Array;
  timeoutMs: number;
  /** Counts callers while Upstash is unreachable. */
  fallback: RateLimiter;
  onFailure?: (error: unknown) => void;
}

/**
 * Per-caller limits shared by every instance, with `@upstash/ratelimit`'s
 * sliding window. When Upstash is slow or down the request is not failed:
 * the in-process limiter counts instead, and a circuit breaker stops calling
 * Upstash for a while.
 */
export function createUpstashRateLimiter(options: UpstashRateLimiterOptions): RateLimiter {
  const redis = new Redis(upstashRequester({ url: options.url, token: options.token }));
  const keys: CacheKeys = deriveCacheKeys(options.cacheKey);
  const limiters = new Map<string, Ratelimit>();
  const breaker = new CircuitBreaker();
  // Imported on the first check: most policies set no limit, and the module is a fifth of the broker's code.
  let module: Promise<typeof import('@upstash/ratelimit')> | undefined;
  const limiterFor = async (limit: Limit): Promise<Ratelimit> => {
    const id = `${limit.requests}/${limit.windowSeconds}`;
    let l = limiters.get(id);
    if (!l) {
      module ??= import('@upstash/ratelimit');
      const loaded = await module;
      // A CommonJS package: Node's import() shows its named exports, a bundle's only `default`.
      const Ratelimit =
        loaded.Ratelimit ?? (loaded as unknown as { default: typeof loaded }).default.Ratelimit;
      l = new Ratelimit({
        redis,
        limiter: Ratelimit.slidingWindow(limit.requests, `${limit.windowSeconds} s`),
        prefix: `tb:v1:rl:${id}`,
        timeout: options.timeoutMs,
        analytics: false,
        ephemeralCache: false,
      });
      limiters.set(id, l);
    }
    return l;
  };
  return {
    async check(caller: string, limit: Limit): Promise<RateDecision> {
      if (!breaker.allow()) return options.fallback.check(caller, limit);
      try {
        const r = await (await limiterFor(limit)).limit(entryName(keys, '', `caller\n${caller}`));
        if (r.reason === 'timeout') {
          breaker.failure();
          return options.fallback.check(caller, limit);
        }
        breaker.success();
        return r.success
          ? { success: true }
          : { success: false, retryAfterSeconds: Math.max(1, Math.ceil((r.reset - Date.now()) / 1000)) };
      } catch (error) {
        breaker.failure();
        options.onFailure?.(error);
        return options.fallback.check(caller, limit);
      }
    },
  };
}

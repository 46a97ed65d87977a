import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import { type CacheKeys, deriveCacheKeys, entryName } from '../cache/sealing.js';
import { CircuitBreaker } from '../circuit-breaker.js';
import type { Limit, RateDecision, RateLimiter } from '../rate-limit.js';

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
  const redis = new Redis({
    url: options.url,
    token: options.token,
    retry: { retries: 0 },
    enableAutoPipelining: true,
  });
  const keys: CacheKeys = deriveCacheKeys(options.cacheKey);
  const limiters = new Map<string, Ratelimit>();
  const breaker = new CircuitBreaker();
  const limiterFor = (limit: Limit): Ratelimit => {
    const id = `${limit.requests}/${limit.windowSeconds}`;
    let l = limiters.get(id);
    if (!l) {
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
        const r = await limiterFor(limit).limit(entryName(keys, '', `caller\n${caller}`));
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

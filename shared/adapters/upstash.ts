import { Redis } from '@upstash/redis';
import type { RedisSeam } from '../cache/shared-cache.js';

/**
 * The real Upstash Redis client, as the shared cache's seam. Values stay
 * strings (no automatic JSON), the client's own retries are off (the cache
 * has its own timeout and circuit breaker, and a slow cache must not slow a
 * request), and concurrent commands are pipelined into one HTTP request.
 */
export function createUpstashRedis(options: {
  url: string;
  token: string;
}): RedisSeam & { readonly client: Redis } {
  const client = new Redis({
    url: options.url,
    token: options.token,
    automaticDeserialization: false,
    retry: { retries: 0 },
    enableAutoPipelining: true,
  });
  return {
    client,
    mget: (...keys) => client.mget<unknown[]>(...keys),
    set: (key, value, opts) =>
      opts.nx ? client.set(key, value, { px: opts.px, nx: true }) : client.set(key, value, { px: opts.px }),
    incr: (key) => client.incr(key),
    eval: (script, keys, args) => client.eval(script, keys, args),
  };
}

/**
 * A safe description of a shared-cache error. Known upstream quirk: an
 * `UpstashError` message repeats the command, and for a `SET` that includes
 * the (sealed) value, so only its name and a fixed class of cause are kept.
 */
export function describeCacheError(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown';
  if (error.name === 'UpstashError') {
    const m = /^(ERR|WRONGTYPE|NOSCRIPT|BUSY|LOADING|READONLY|NOAUTH|WRONGPASS)\b/.exec(error.message);
    return `UpstashError${m ? ` ${m[1]}` : ''}`;
  }
  const code =
    (error as { code?: unknown; cause?: { code?: unknown } }).cause?.code ??
    (error as { code?: unknown }).code;
  return typeof code === 'string' ? `${error.name} ${code}` : error.name;
}

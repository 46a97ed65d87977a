import { errors, Redis, type Requester, type UpstashRequest, type UpstashResponse } from '@upstash/redis';
import { MalformedReply, type RedisSeam } from '../cache/shared-cache.js';
import { type HttpClient, HttpResponseTooLargeError, sharedHttpClient } from './http.js';

export interface UpstashOptions {
  url: string;
  token: string;
  /** Deadline of one HTTP exchange with Upstash; the cache's own, shorter timeout answers the request first. */
  timeoutMs?: number;
  http?: HttpClient;
}

/**
 * The `Requester` that `@upstash/redis` sends its commands through: the
 * Upstash REST protocol (`POST` a command array to the base URL, or a list
 * of them to `/pipeline`, with a Bearer token) over kept-alive `node:http`
 * connections instead of `fetch`. Responses are plain JSON (no
 * `Upstash-Encoding: base64`): the broker stores ASCII only. Carries the
 * read-your-writes sync token like the stock client. An error never repeats
 * the command, which for a `SET` holds a (sealed) value. A reply over the
 * HTTP client's 1 MiB cap rejects with `MalformedReply`.
 */
export function upstashRequester(options: UpstashOptions): Requester {
  const base = options.url.replace(/\/$/, '');
  const http = options.http ?? sharedHttpClient;
  const timeoutMs = options.timeoutMs ?? 5000;
  const requester: Requester = {
    readYourWrites: true,
    upstashSyncToken: '',
    async request<TResult>(req: UpstashRequest): Promise<UpstashResponse<TResult>> {
      const headers: Record<string, string> = {
        authorization: `Bearer ${options.token}`,
        'content-type': 'application/json',
        ...req.headers,
      };
      if (requester.readYourWrites && requester.upstashSyncToken)
        headers['upstash-sync-token'] = requester.upstashSyncToken;
      let res: Awaited<ReturnType<HttpClient['request']>>;
      try {
        res = await http.request([base, ...(req.path ?? [])].join('/'), {
          method: 'POST',
          headers,
          body: JSON.stringify(req.body),
          timeoutMs,
        });
      } catch (err) {
        // Redis answered, with more than the client reads: a malformed reply, not a cache that is down.
        if (err instanceof HttpResponseTooLargeError) throw new MalformedReply(err.message);
        throw err;
      }
      const sync = res.headers['upstash-sync-token'];
      if (typeof sync === 'string') requester.upstashSyncToken = sync;
      let body: unknown;
      try {
        body = JSON.parse(res.body);
      } catch {
        throw new errors.UpstashError(`Upstash answered ${res.status} with a body that is not JSON`);
      }
      if (res.status < 200 || res.status >= 300) {
        const error = (body as { error?: unknown }).error;
        throw new errors.UpstashError(typeof error === 'string' ? error : `Upstash answered ${res.status}`);
      }
      return body as UpstashResponse<TResult>;
    },
  };
  return requester;
}

/**
 * `@upstash/redis` over our requester, with values left as Redis returns
 * them: the stock client would try `JSON.parse` on every string (and throw
 * and catch for each sealed value). The option exists only in the config
 * form of the constructor, so it is set here, on the protected field.
 */
class RawUpstashRedis extends Redis {
  constructor(requester: Requester) {
    super(requester);
    this.opts = { automaticDeserialization: false };
  }
}

/**
 * The real Upstash Redis client (`@upstash/redis` over `upstashRequester`),
 * as the shared cache's seam. The client's own retries do not apply: the
 * cache has its own timeout and circuit breaker, and a slow cache must not
 * slow a request.
 */
export function createUpstashRedis(options: UpstashOptions): RedisSeam & { readonly client: Redis } {
  const client = new RawUpstashRedis(upstashRequester(options));
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
 * A safe description of a shared-cache error. Known upstream quirk: the
 * stock client's `UpstashError` message repeats the command, and for a `SET`
 * that includes the (sealed) value, so only its name and a fixed class of
 * cause are kept.
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

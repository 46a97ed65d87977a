import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { BrokerError } from '../errors.js';
import { type HttpClient, sharedHttpClient } from './http.js';

export interface JwksCacheOptions {
  /** The key set's URL, or how to find it (an issuer's discovery document; `oidc-discovery.ts`), asked at each fetch. */
  url: string | (() => Promise<string>);
  http?: HttpClient;
  timeoutMs?: number;
  /** Keys older than this are refreshed in the background; the old ones keep verifying meanwhile. */
  maxAgeMs?: number;
  /** Least time between two fetches caused by an unknown `kid` (a minute), and longest wait after failed fetches. */
  cooldownMs?: number;
  /** Wait after the first failed fetch while no key is held; it doubles with each failure, up to `cooldownMs`. */
  retryMs?: number;
  now?: () => number;
  /** Who publishes the keys, for the 503's text: "Google" or a policy issuer's name. */
  owner?: string;
}

/** The largest key set read: Google's and GitHub's are about 2 KB. */
const MAX_JWKS_BYTES = 256 * 1024;

/**
 * A JWKS kept in memory for verifying caller tokens. Unlike a plain remote
 * set, keys already fetched keep verifying while the JWKS endpoint is down;
 * an unknown `kid` causes one refetch at most every `cooldownMs`. Fetches are
 * single-flighted, and cooled down from the first attempt: while no key was
 * ever fetched, a failure is retried only after `retryMs`, doubling up to
 * `cooldownMs`, and requests meanwhile fail at once without a fetch. Throws
 * `upstream_unavailable` (503, with the wait) only when no key is held.
 */
export function createJwksCache(options: JwksCacheOptions): JWTVerifyGetKey & { refresh(): Promise<void> } {
  const maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
  const cooldownMs = options.cooldownMs ?? 60_000;
  const retryMs = options.retryMs ?? 1_000;
  const now = options.now ?? Date.now;
  let set: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = 0;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;
  let failures = 0;
  let retryAt = Number.NEGATIVE_INFINITY;
  let lastError: unknown;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      attemptedAt = now();
      try {
        const url = typeof options.url === 'string' ? options.url : await options.url();
        const res = await (options.http ?? sharedHttpClient).request(url, {
          headers: { accept: 'application/json, application/jwk-set+json' },
          timeoutMs: options.timeoutMs ?? 3000,
          maxBytes: MAX_JWKS_BYTES,
        });
        if (res.status !== 200) throw new Error(`JWKS endpoint answered ${res.status}`);
        const json = JSON.parse(res.body) as JSONWebKeySet;
        if (typeof json !== 'object' || json === null || !Array.isArray(json.keys))
          throw new Error('JWKS is not a key set');
        set = createLocalJWKSet(json);
        fetchedAt = now();
        failures = 0;
      } catch (err) {
        failures++;
        lastError = err;
        retryAt = now() + Math.min(cooldownMs, retryMs * 2 ** (failures - 1));
        throw err;
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  const unavailable = (cause: unknown) =>
    new BrokerError(
      'upstream_unavailable',
      `The keys that verify caller tokens${options.owner === undefined ? '' : ` of ${options.owner}`} cannot be fetched; retry later.`,
      {
        retryAfterSeconds: Math.max(1, Math.ceil((retryAt - now()) / 1000)),
        cause,
        reason: 'keys_unavailable',
      },
    );

  const getKey = (async (header, token) => {
    if (set === undefined) {
      // No key yet: join the fetch under way, or start one once the last failure's wait is over.
      if (inflight === undefined && now() < retryAt) throw unavailable(lastError);
      try {
        await refresh();
      } catch (err) {
        throw unavailable(err);
      }
    } else if (now() - fetchedAt > maxAgeMs && now() - attemptedAt > cooldownMs) {
      refresh().catch(() => {}); // keep verifying with the keys in hand
    }
    const current = set as ReturnType<typeof createLocalJWKSet>;
    try {
      return await current(header, token);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== 'ERR_JWKS_NO_MATCHING_KEY' || now() - attemptedAt < cooldownMs) throw err;
      // An unknown kid: the issuer may have rotated its keys. Refetch at most once per cooldown, whatever the kid.
      await refresh().catch(() => {});
      return (set as ReturnType<typeof createLocalJWKSet>)(header, token);
    }
  }) as JWTVerifyGetKey & { refresh(): Promise<void> };
  getKey.refresh = refresh;
  return getKey;
}

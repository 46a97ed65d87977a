import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { BrokerError } from '../errors.js';
import { type HttpClient, sharedHttpClient } from './http.js';

export interface JwksCacheOptions {
  url: string;
  http?: HttpClient;
  timeoutMs?: number;
  /** Keys older than this are refreshed in the background; the old ones keep verifying meanwhile. */
  maxAgeMs?: number;
  /** Least time between two fetches caused by an unknown `kid`. */
  cooldownMs?: number;
  now?: () => number;
}

/**
 * A JWKS kept in memory for verifying caller tokens. Unlike a plain remote
 * set, keys already fetched keep verifying while the JWKS endpoint is down;
 * an unknown `kid` causes one refetch at most every `cooldownMs`. Throws
 * `upstream_unavailable` only when no key was ever fetched.
 */
export function createJwksCache(options: JwksCacheOptions): JWTVerifyGetKey & { refresh(): Promise<void> } {
  const maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
  const cooldownMs = options.cooldownMs ?? 30_000;
  const now = options.now ?? Date.now;
  let set: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = 0;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      attemptedAt = now();
      try {
        const res = await (options.http ?? sharedHttpClient).request(options.url, {
          headers: { accept: 'application/json' },
          timeoutMs: options.timeoutMs ?? 3000,
        });
        if (res.status !== 200) throw new Error(`JWKS endpoint answered ${res.status}`);
        const json = JSON.parse(res.body) as JSONWebKeySet;
        if (typeof json !== 'object' || json === null || !Array.isArray(json.keys))
          throw new Error('JWKS is not a key set');
        set = createLocalJWKSet(json);
        fetchedAt = now();
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  const getKey = (async (header, token) => {
    if (set === undefined) {
      try {
        await refresh();
      } catch (err) {
        throw new BrokerError(
          'upstream_unavailable',
          'The keys that verify caller tokens cannot be fetched; retry later.',
          {
            retryAfterSeconds: 5,
            cause: err,
          },
        );
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
      // An unknown kid: Google may have rotated its keys. Refetch once, within the cooldown.
      await refresh().catch(() => {});
      return (set as ReturnType<typeof createLocalJWKSet>)(header, token);
    }
  }) as JWTVerifyGetKey & { refresh(): Promise<void> };
  getKey.refresh = refresh;
  return getKey;
}

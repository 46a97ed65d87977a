import { BrokerError } from '../errors.js';
import { parseJsonObject } from '../json-object.js';
import { isRetryableStatus } from '../retry.js';
import { SingleFlight } from '../single-flight.js';
import { type HttpClient, sharedHttpClient } from './http.js';
import { isExhausted, type RetryBudget, safeCause, withRetries } from './retrying.js';

/** The broker's own identity on Google Cloud: what it calls IAM with for keyless accounts. */
export interface BrokerIdentity {
  /** The broker's own access token. Throws `upstream_unavailable` when the metadata server does not answer. */
  accessToken(): Promise<string>;
  /** Forgets `token` (IAM refused it), so the next call fetches a new one. */
  invalidate(token: string): void;
  /** The broker's own service-account email, for operators' error messages; undefined when unknown. */
  email(): Promise<string | undefined>;
}

export interface MetadataIdentityOptions extends RetryBudget {
  /** `host:port` of the metadata server (`GCE_METADATA_HOST`; Google's is `metadata.google.internal`). */
  host: string;
  /** A token with less life left than this is fetched again (the broker's refresh skew). */
  refreshSkewSeconds: number;
  http?: HttpClient;
}

const BASE = '/computeMetadata/v1/instance/service-accounts/default';
/** The least life the broker's own token needs to be used when it cannot be refreshed. */
const IDENTITY_FLOOR_MS = 60_000;

/**
 * The broker's own token from the metadata server (`GET …/default/token`
 * with `Metadata-Flavor: Google`, docs/contract.md "Keyless service
 * accounts"). It is cached until the refresh skew and fetched once however
 * many mints need it at the same time. Network errors, timeouts and 5xx are
 * retried briefly. Once inside the skew, the token in hand is used while
 * more than a minute of it remains and a new one is fetched meanwhile; with
 * none, the call fails with `upstream_unavailable`.
 */
export function createMetadataIdentity(options: MetadataIdentityOptions): BrokerIdentity {
  const http = options.http ?? sharedHttpClient;
  const now = options.now ?? Date.now;
  const origin = `http://${options.host}`;
  const flights = new SingleFlight<string>();
  let cached: { token: string; refreshAt: number; expiresAt: number } | undefined;
  let email: string | undefined;

  async function get(path: string): Promise<string> {
    const result = await withRetries<string>(
      { attemptTimeoutMs: 2000, deadlineMs: 5000, maxAttempts: 3, baseDelayMs: 100, ...options },
      async (timeoutMs) => {
        try {
          const res = await http.request(`${origin}${BASE}${path}`, {
            headers: { 'Metadata-Flavor': 'Google' },
            timeoutMs,
            maxBytes: 64 * 1024,
          });
          if (res.status === 200) return { done: res.body };
          if (isRetryableStatus(res.status)) return { retry: true, cause: new Error(`HTTP ${res.status}`) };
          throw new BrokerError(
            'upstream_rejected',
            `The metadata server refused the broker its own identity (HTTP ${res.status}): run the broker as a service account (the function's service_account_email).`,
            { upstreamError: `metadata_http_${res.status}` },
          );
        } catch (err) {
          if (err instanceof BrokerError) throw err;
          return { retry: true, cause: safeCause(err) };
        }
      },
    );
    if (!isExhausted(result)) return result;
    throw new BrokerError(
      'upstream_unavailable',
      'The metadata server did not answer, so the broker has no identity to call IAM with for keyless accounts. Retry after the given delay.',
      { retryAfterSeconds: 5, cause: result.cause },
    );
  }

  async function fetchToken(): Promise<string> {
    const fetchedAt = now();
    const body = parseJsonObject(await get('/token'));
    const token = body?.['access_token'];
    const expiresIn = body?.['expires_in'];
    if (
      typeof token !== 'string' ||
      token.length === 0 ||
      typeof expiresIn !== 'number' ||
      !Number.isFinite(expiresIn) ||
      expiresIn <= 0
    ) {
      throw new BrokerError(
        'upstream_rejected',
        'The metadata server answered without a valid access token; check the function runs as a service account.',
        { upstreamError: 'metadata_invalid_response' },
      );
    }
    // Served until the skew; a token that is already inside it is used for at most half its life.
    const skewMs = Math.min(options.refreshSkewSeconds, expiresIn / 2) * 1000;
    cached = {
      token,
      refreshAt: fetchedAt + expiresIn * 1000 - skewMs,
      expiresAt: fetchedAt + expiresIn * 1000,
    };
    return token;
  }

  return {
    accessToken() {
      const held = cached;
      if (held !== undefined && now() < held.refreshAt) return Promise.resolve(held.token);
      const fetching = flights.run('token', fetchToken);
      if (held === undefined || held.expiresAt - now() <= IDENTITY_FLOOR_MS) return fetching;
      // Inside the skew with more than a minute left: the token in hand serves while a new one is fetched,
      // so a metadata-server outage costs keyless minting nothing until the last minute.
      fetching.catch(() => {});
      return Promise.resolve(held.token);
    },
    invalidate(token) {
      if (cached?.token === token) cached = undefined;
    },
    async email() {
      if (email !== undefined) return email;
      try {
        const text = (await get('/email')).trim();
        if (/^[^\s@]{1,64}@[^\s@]{1,255}$/.test(text)) email = text;
      } catch {
        // Only for a friendlier message: the error being reported is the one that matters.
      }
      return email;
    },
  };
}

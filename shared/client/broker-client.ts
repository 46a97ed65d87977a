import { SingleFlight } from '../single-flight.js';
import { BrokerClientError } from './errors.js';

/** Who the token is for: a service account (email) or a tenant (id). */
export type ClientTarget =
  | { serviceAccount: string; tenant?: never }
  | { tenant: string; serviceAccount?: never };

export type AccessTokenRequest = ClientTarget & {
  scopes: string[];
  subject?: string;
  minLifetimeSeconds?: number;
};
export type JwtRequest = ClientTarget &
  ({ audience: string; scopes?: never } | { scopes: string[]; audience?: never }) & {
    minLifetimeSeconds?: number;
  };
export type IdTokenRequest = ClientTarget & { audience: string; minLifetimeSeconds?: number };

/** A token from the broker. */
export interface BrokerToken {
  readonly token: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
  readonly scope?: string;
  /** The broker's `Cache-Status`. */
  readonly cacheStatus: string | null;
}

export interface BrokerClientOptions {
  /** Base URL of a `broker` function (paths /token, /jwt, /idtoken). */
  url?: string;
  /** URLs of single-target functions, when deployed one per target. */
  endpoints?: { token?: string; jwt?: string; idtoken?: string };
  /** Returns the caller's Google ID token for the broker's audience; see `googleIdTokenSource`. */
  idToken: () => Promise<string>;
  /** Tokens are reused until this many seconds before they expire (google-auth-library uses 300). */
  refreshSkewSeconds?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

type Kind = 'token' | 'jwt' | 'idtoken';

/**
 * A small typed client for the broker. Sends the caller's ID token in both
 * `X-Serverless-Authorization` (checked by Cloud Run IAM, which strips its
 * signature) and `Authorization` (checked by the broker), keeps tokens in
 * process until the refresh skew, shares one request among concurrent
 * callers, and throws `BrokerClientError` with the broker's code.
 */
export class BrokerClient {
  readonly #o: BrokerClientOptions;
  readonly #cache = new Map<string, BrokerToken>();
  readonly #flights = new SingleFlight<BrokerToken>();

  constructor(options: BrokerClientOptions) {
    if (!options.url && !options.endpoints) throw new TypeError('give `url` or `endpoints`');
    this.#o = options;
  }

  /** An OAuth 2.0 access token. Throws BrokerClientError. */
  accessToken(request: AccessTokenRequest): Promise<BrokerToken> {
    return this.#get('token', request);
  }

  /** A self-signed JWT for `audience` (or `scopes`). Throws BrokerClientError. */
  jwt(request: JwtRequest): Promise<BrokerToken> {
    return this.#get('jwt', request);
  }

  /** A Google-signed ID token for `audience`. Throws BrokerClientError. */
  idToken(request: IdTokenRequest): Promise<BrokerToken> {
    return this.#get('idtoken', request);
  }

  #url(kind: Kind): string {
    const single = this.#o.endpoints?.[kind];
    if (single) return single;
    if (!this.#o.url) throw new TypeError(`no endpoint for ${kind}`);
    return `${this.#o.url.replace(/\/+$/, '')}/${kind}`;
  }

  async #get(kind: Kind, request: object): Promise<BrokerToken> {
    const now = this.#o.now ?? Date.now;
    const body = normalise(request);
    const key = `${kind}\n${JSON.stringify(body)}`;
    const min = Math.max(
      this.#o.refreshSkewSeconds ?? 300,
      (request as { minLifetimeSeconds?: number }).minLifetimeSeconds ?? 0,
    );
    const cached = this.#cache.get(key);
    if (cached && cached.expiresAt - now() > min * 1000) return cached;
    const token = await this.#flights.run(key, () => this.#fetch(kind, body));
    this.#cache.set(key, token);
    return token;
  }

  async #fetch(kind: Kind, body: Record<string, unknown>): Promise<BrokerToken> {
    const idToken = await this.#o.idToken();
    let res: Response;
    try {
      res = await (this.#o.fetch ?? fetch)(this.#url(kind), {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: `Bearer ${idToken}`,
          'X-Serverless-Authorization': `Bearer ${idToken}`,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 15_000),
      });
    } catch (err) {
      throw new BrokerClientError('network_error', 0, 'The broker could not be reached.', { cause: err });
    }
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.status !== 200) {
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new BrokerClientError(
        typeof json['error'] === 'string' ? json['error'] : `http_${res.status}`,
        res.status,
        typeof json['error_description'] === 'string'
          ? json['error_description']
          : `The broker answered ${res.status}.`,
        {
          upstreamError: typeof json['upstream_error'] === 'string' ? json['upstream_error'] : undefined,
          retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
        },
      );
    }
    const token = json[kind === 'token' ? 'access_token' : kind === 'jwt' ? 'token' : 'id_token'];
    const expiresAt = json['expires_at'];
    if (typeof token !== 'string' || typeof expiresAt !== 'number') {
      throw new BrokerClientError('invalid_response', res.status, 'The broker answered 200 without a token.');
    }
    const scope = json['scope'];
    return {
      token,
      expiresAt: expiresAt * 1000,
      ...(typeof scope === 'string' ? { scope } : {}),
      cacheStatus: res.headers.get('cache-status'),
    };
  }
}

function normalise(request: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(request)) {
    if (v === undefined) continue;
    out[k] = k === 'scopes' && Array.isArray(v) ? [...new Set(v)].sort() : v;
  }
  return out;
}

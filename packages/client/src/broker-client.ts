import { type TokenKind, urlProblem } from '../../wire/rules.js';
import {
  type IdTokenRequestBody,
  type JwtRequestBody,
  MAX_MIN_LIFETIME_SECONDS,
  type TokenRequestBody,
} from '../../wire/wire.js';
import { BrokerClientError, isWireErrorCode } from './errors.js';

/** An access token request: the `token` endpoint's body. */
export type AccessTokenRequest = TokenRequestBody;
/** A self-signed JWT request: the `jwt` endpoint's body. */
export type JwtRequest = JwtRequestBody;
/** An ID token request: the `idtoken` endpoint's body. */
export type IdTokenRequest = IdTokenRequestBody;

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
  /** Base URL of a `broker` function (paths /token, /jwt, /idtoken). `https:`, or `http:` on loopback only. */
  url?: string;
  /** URLs of single-target functions, when deployed one per target. Same rule as `url`. */
  endpoints?: { token?: string; jwt?: string; idtoken?: string };
  /** Returns the caller's Google ID token for the broker's audience; see `googleIdTokenSource`. */
  idToken: () => Promise<string>;
  /**
   * Tokens are reused until this many seconds before they expire (google-auth-library uses 300),
   * and the broker is asked for tokens with at least this much life left.
   */
  refreshSkewSeconds?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

/** Checks a broker URL: `https:`, or `http:` on a loopback host; no user info. Throws TypeError. */
export function checkBrokerUrl(url: string, what = 'url'): void {
  const problem = urlProblem(url);
  if (problem !== undefined)
    throw new TypeError(`\`${what}\` ${problem}: the caller's ID token travels with every request`);
}

/**
 * A small typed client for the broker. Sends the caller's ID token in both
 * `X-Serverless-Authorization` (checked by Cloud Run IAM, which strips its
 * signature) and `Authorization` (checked by the broker), never follows a
 * redirect with them, keeps tokens in process until the refresh skew (and
 * asks the broker for tokens that outlive it), shares one request among
 * concurrent callers, and throws `BrokerClientError` with the broker's code.
 */
export class BrokerClient {
  readonly #o: BrokerClientOptions;
  readonly #cache = new Map<string, BrokerToken>();
  /** One request per token among concurrent callers: the request in flight, by key. */
  readonly #inflight = new Map<string, Promise<BrokerToken>>();

  /** Throws TypeError on a missing or unsafe URL. */
  constructor(options: BrokerClientOptions) {
    if (!options.url && !options.endpoints) throw new TypeError('give `url` or `endpoints`');
    if (options.url !== undefined) checkBrokerUrl(options.url);
    for (const [kind, url] of Object.entries(options.endpoints ?? {}))
      if (url !== undefined) checkBrokerUrl(url, `endpoints.${kind}`);
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

  #url(kind: TokenKind): string {
    const single = this.#o.endpoints?.[kind];
    if (single) return single;
    if (!this.#o.url) throw new TypeError(`no endpoint for ${kind}`);
    return `${this.#o.url.replace(/\/+$/, '')}/${kind}`;
  }

  async #get(kind: TokenKind, request: { minLifetimeSeconds?: number }): Promise<BrokerToken> {
    const now = this.#o.now ?? Date.now;
    const { minLifetimeSeconds, ...rest } = request;
    const target = normalise(rest);
    const key = `${kind}\n${JSON.stringify(target)}`;
    // The broker must serve a token that outlives our own skew: otherwise a broker with a
    // shorter skew hands back the same nearly expired token on every call.
    const min = Math.min(
      MAX_MIN_LIFETIME_SECONDS,
      Math.ceil(Math.max(this.#o.refreshSkewSeconds ?? 300, minLifetimeSeconds ?? 0)),
    );
    const cached = this.#cache.get(key);
    if (cached && cached.expiresAt - now() > min * 1000) return cached;
    const body = { ...target, minLifetimeSeconds: min };
    const flight = `${key}\n${min}`;
    let pending = this.#inflight.get(flight);
    if (pending === undefined) {
      pending = this.#fetch(kind, body).finally(() => this.#inflight.delete(flight));
      this.#inflight.set(flight, pending);
    }
    const token = await pending;
    this.#cache.set(key, token);
    return token;
  }

  async #fetch(kind: TokenKind, body: Record<string, unknown>): Promise<BrokerToken> {
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
        // fetch drops `Authorization` on a cross-origin redirect but keeps custom headers:
        // following one would hand the caller's ID token to whoever redirects.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 15_000),
      });
    } catch (err) {
      throw new BrokerClientError('network_error', 0, 'The broker could not be reached.', { cause: err });
    }
    if (res.redirected || res.type === 'opaqueredirect' || (res.status >= 300 && res.status < 400)) {
      await res.body?.cancel().catch(() => {});
      throw new BrokerClientError(
        'invalid_response',
        res.status,
        `The broker answered ${res.status} with a redirect; the client does not follow redirects with credentials. Use the broker's own URL.`,
      );
    }
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.status !== 200) {
      const retryAfter = Number(res.headers.get('retry-after'));
      const code = json['error'];
      throw new BrokerClientError(
        isWireErrorCode(code) ? code : 'invalid_response',
        res.status,
        typeof json['error_description'] === 'string' && isWireErrorCode(code)
          ? json['error_description']
          : `The broker answered ${res.status} without a broker error body (a proxy, or Cloud Run's IAM check?).`,
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

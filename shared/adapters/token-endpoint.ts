import { BrokerError } from '../errors.js';
import { parseJsonObject, unverifiedExpiry } from '../json-object.js';
import { isRetryableStatus, parseRetryAfter } from '../retry.js';
import { describeUpstreamError, oauthErrorCode } from '../upstream-errors.js';
import { isExhausted, type RetryBudget, safeCause, withRetries } from './retrying.js';

/** What the token endpoint returns, once every field was checked. */
export interface TokenResult {
  readonly token: string;
  /** Seconds. */
  readonly expiresIn: number;
  readonly scope?: string;
}

/** Which token the assertion asks for: an access token (`scope`) or an ID token (`target_audience`). */
export type TokenKind = 'access_token' | 'id_token';

/** Exchanges signed assertions at the token endpoint. */
export interface TokenEndpoint {
  /** Throws `upstream_rejected` (Google refused; never retried) or `upstream_unavailable` (after retries). */
  exchange(assertion: string, kind: TokenKind): Promise<TokenResult>;
}

/** The endpoint and how hard to try it (by default 4 attempts of at most 5 s, 10 s in all). */
export interface TokenEndpointOptions extends RetryBudget {
  tokenUrl: string;
  fetch?: typeof fetch;
}

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Sends the jwt-bearer grant (docs/protocol.md, "The exchange"): a form-encoded
 * POST of `grant_type` and `assertion`. Only sends; see `processTokenResponse`.
 */
export function tokenRequest(
  tokenUrl: string,
  assertion: string,
  options: { fetch?: typeof fetch; signal?: AbortSignal },
): Promise<Response> {
  const body = new URLSearchParams({ grant_type: GRANT_TYPE, assertion }).toString();
  return (options.fetch ?? fetch)(tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body,
    redirect: 'error',
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * Checks a token endpoint response and every field of it before use. Throws
 * `upstream_rejected` with Google's `error` as `upstreamError` (and the body,
 * non-enumerable, on `upstreamBody`) for refusals and malformed answers.
 * A 429 or 5xx must be handled by the caller before (they are retryable).
 */
export async function processTokenResponse(
  response: Response,
  kind: TokenKind,
  nowMs: number,
): Promise<TokenResult> {
  const obj = parseJsonObject(await response.text());
  if (response.status !== 200) {
    const error = oauthErrorCode(obj, response.status);
    const description = typeof obj?.['error_description'] === 'string' ? obj['error_description'] : undefined;
    throw new BrokerError('upstream_rejected', describeUpstreamError(error, description), {
      upstreamError: error,
      upstreamBody: obj === undefined ? undefined : { error, error_description: description },
    });
  }
  const malformed = (what: string) =>
    new BrokerError(
      'upstream_rejected',
      `Google's token endpoint answered 200 with ${what}; retry later or report it.`,
      {
        upstreamError: 'invalid_response',
      },
    );
  if (obj === undefined) throw malformed('a body that is not a JSON object');
  const token = obj[kind];
  if (typeof token !== 'string' || token.length === 0 || token.length > 16_384)
    throw malformed(`no valid \`${kind}\``);
  if (kind === 'access_token') {
    const tokenType = obj['token_type'];
    if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer')
      throw malformed('a `token_type` other than Bearer');
    const expiresIn = obj['expires_in'];
    if (
      typeof expiresIn !== 'number' ||
      !Number.isInteger(expiresIn) ||
      expiresIn <= 0 ||
      expiresIn > 86_400
    ) {
      throw malformed('an invalid `expires_in`');
    }
    const scope = obj['scope'];
    if (scope !== undefined && typeof scope !== 'string') throw malformed('an invalid `scope`');
    return scope === undefined ? { token, expiresIn } : { token, expiresIn, scope };
  }
  if (!JWT.test(token)) throw malformed('an `id_token` that is not a JWT');
  const expiresIn = obj['expires_in'];
  if (typeof expiresIn === 'number' && Number.isInteger(expiresIn) && expiresIn > 0 && expiresIn <= 86_400) {
    return { token, expiresIn };
  }
  // Google's ID-token answers carry no expires_in: read `exp` (unverified; it came from the endpoint over TLS).
  const exp = unverifiedExpiry(token);
  if (exp === undefined) throw malformed('an `id_token` without `exp`');
  const left = Math.floor(exp - nowMs / 1000);
  if (left <= 0) throw malformed('an `id_token` that already expired');
  return { token, expiresIn: Math.min(left, 86_400) };
}

/**
 * The token endpoint with retries: network errors, timeouts, 429 and 5xx
 * are retried with capped exponential backoff and jitter, honouring
 * `Retry-After`, within a deadline per exchange. Refusals are never retried.
 * Uses the global fetch, whose agent keeps connections alive.
 */
export function createTokenEndpoint(options: TokenEndpointOptions): TokenEndpoint {
  const now = options.now ?? Date.now;
  return {
    async exchange(assertion, kind) {
      const result = await withRetries<TokenResult>(options, async (timeoutMs) => {
        try {
          const response = await tokenRequest(options.tokenUrl, assertion, {
            ...(options.fetch ? { fetch: options.fetch } : {}),
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (!isRetryableStatus(response.status))
            return { done: await processTokenResponse(response, kind, now()) };
          await response.body?.cancel().catch(() => {});
          return {
            retry: true,
            cause: new Error(`HTTP ${response.status}`),
            retryAfterMs: parseRetryAfter(response.headers.get('retry-after'), now()),
          };
        } catch (err) {
          if (err instanceof BrokerError) throw err;
          // A network error, a reset connection or a timed-out attempt: retryable.
          return { retry: true, cause: safeCause(err) };
        }
      });
      if (!isExhausted(result)) return result;
      throw new BrokerError(
        'upstream_unavailable',
        "Google's token endpoint is unreachable or failing (network error, timeout, 429 or 5xx after retries). Retry after the given delay.",
        { retryAfterSeconds: retryAfterSeconds(result.retryAfterMs), cause: result.cause },
      );
    },
  };
}

/** The `Retry-After` a 503 sends: the upstream's, or 5 s. */
export function retryAfterSeconds(upstreamMs: number | undefined): number {
  return Math.max(1, Math.ceil((upstreamMs ?? 5000) / 1000));
}

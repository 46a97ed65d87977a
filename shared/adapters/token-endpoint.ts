import { BrokerError } from '../errors.js';
import { backoffDelay, isRetryableStatus, parseRetryAfter } from '../retry.js';
import { describeUpstreamError } from '../upstream-errors.js';

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

export interface TokenEndpointOptions {
  tokenUrl: string;
  fetch?: typeof fetch;
  /** Budget of one attempt. */
  attemptTimeoutMs?: number;
  /** Budget of one exchange, retries included (ISSUE: ≤ 10 s per request). */
  deadlineMs?: number;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Sends the jwt-bearer grant (PROTOCOL.md, "The exchange"): a form-encoded
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
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const obj =
    typeof body === 'object' && body !== null && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  if (response.status !== 200) {
    const error =
      typeof obj?.['error'] === 'string' && /^[\w.-]{1,64}$/.test(obj['error'])
        ? obj['error']
        : `http_${response.status}`;
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
  let exp: unknown;
  try {
    exp = (
      JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >
    )['exp'];
  } catch {
    exp = undefined;
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw malformed('an `id_token` without `exp`');
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
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 5000;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const maxAttempts = options.maxAttempts ?? 4;
  const backoff = {
    baseMs: options.baseDelayMs ?? 200,
    capMs: options.maxDelayMs ?? 2000,
    random: options.random ?? Math.random,
  };
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = options.now ?? Date.now;

  return {
    async exchange(assertion, kind) {
      const deadline = now() + deadlineMs;
      let retryAfterMs: number | undefined;
      let cause: unknown;
      for (let attempt = 0; attempt < maxAttempts; attempt++) {
        const remaining = deadline - now();
        if (remaining <= 0) break;
        retryAfterMs = undefined;
        try {
          const signal = AbortSignal.timeout(Math.min(attemptTimeoutMs, remaining));
          const response = await tokenRequest(options.tokenUrl, assertion, {
            ...(options.fetch ? { fetch: options.fetch } : {}),
            signal,
          });
          if (!isRetryableStatus(response.status)) return await processTokenResponse(response, kind, now());
          retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), now());
          cause = new Error(`HTTP ${response.status}`);
          await response.body?.cancel().catch(() => {});
        } catch (err) {
          if (err instanceof BrokerError) throw err;
          // A network error, a reset connection or a timed-out attempt: retryable.
          cause = safeCause(err);
        }
        if (attempt + 1 >= maxAttempts) break;
        const delay = Math.max(backoffDelay(attempt, backoff), retryAfterMs ?? 0);
        if (now() + delay >= deadline) break;
        await sleep(delay);
      }
      throw new BrokerError(
        'upstream_unavailable',
        "Google's token endpoint is unreachable or failing (network error, timeout, 429 or 5xx after retries). Retry after the given delay.",
        { retryAfterSeconds: Math.max(1, Math.ceil((retryAfterMs ?? 5000) / 1000)), cause },
      );
    },
  };
}

/** Name and code of a network error, without anything it may quote. */
function safeCause(err: unknown): Error {
  if (!(err instanceof Error)) return new Error('network error');
  const code = (err as { cause?: { code?: unknown } }).cause?.code ?? (err as { code?: unknown }).code;
  return new Error(`${err.name}${typeof code === 'string' ? ` ${code}` : ''}`);
}

import { BrokerError } from '../errors.js';
import { parseJsonObject } from '../json-object.js';
import type { AccessBoundary } from '../policy/boundary.js';
import { isRetryableStatus, parseRetryAfter } from '../retry.js';
import { oauthErrorCode } from '../upstream-errors.js';
import { type HttpClient, type HttpResponse, sharedHttpClient } from './http.js';
import { isExhausted, type RetryBudget, safeCause, withRetries } from './retrying.js';
import { retryAfterSeconds } from './token-endpoint.js';

/** A downscoped token, once every field of STS's answer was checked. */
export interface Downscoped {
  readonly token: string;
  /** Seconds, when STS said (it does not for a user's token, which expires with its source). */
  readonly expiresIn: number | undefined;
}

/** Google's Security Token Service, as the broker uses it: downscoping an access token with a boundary. */
export interface SecurityTokenService {
  /**
   * Exchanges `source` for a token bounded by `boundary`. Throws
   * `upstream_rejected` (STS refused; `upstreamError` is STS's `error`, and
   * `invalid_grant` means it refused the source token) or
   * `upstream_unavailable` (after retries).
   */
  downscope(source: string, boundary: AccessBoundary): Promise<Downscoped>;
}

export interface StsOptions extends RetryBudget {
  /** `BROKER_STS_URL`; Google's is https://sts.googleapis.com/v1/token. */
  url: string;
  http?: HttpClient;
}

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * The exchange's form (docs/contract.md, "Tenants on shared accounts"),
 * what google-auth-library's DownscopedClient sends: the source token and
 * the boundary as `options`. Only builds; see `processStsResponse`.
 */
export function stsForm(source: string, boundary: AccessBoundary): string {
  return new URLSearchParams({
    grant_type: TOKEN_EXCHANGE,
    subject_token_type: ACCESS_TOKEN,
    requested_token_type: ACCESS_TOKEN,
    subject_token: source,
    options: JSON.stringify({ accessBoundary: { accessBoundaryRules: boundary.rules } }),
  }).toString();
}

/**
 * Checks STS's answer and every field of it. Throws `upstream_rejected` for
 * a refusal (STS's OAuth `error` as `upstreamError`, its description kept
 * off the enumerable properties) or a malformed answer. A 429 or 5xx must
 * be handled by the caller before (they are retryable).
 */
export function processStsResponse(res: HttpResponse): Downscoped {
  const obj = parseJsonObject(res.body);
  if (res.status !== 200) {
    const error = oauthErrorCode(obj, res.status);
    const description = typeof obj?.['error_description'] === 'string' ? obj['error_description'] : undefined;
    return refuse(error, res.status, description);
  }
  const malformed = (what: string) =>
    new BrokerError(
      'upstream_rejected',
      `Google's STS answered 200 with ${what}; retry later or report it.`,
      {
        upstreamError: 'invalid_response',
      },
    );
  if (obj === undefined) throw malformed('a body that is not a JSON object');
  const token = obj['access_token'];
  if (typeof token !== 'string' || token.length === 0 || token.length > 16_384)
    throw malformed('no valid `access_token`');
  if (obj['issued_token_type'] !== undefined && obj['issued_token_type'] !== ACCESS_TOKEN)
    throw malformed('an `issued_token_type` other than an access token');
  const tokenType = obj['token_type'];
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer')
    throw malformed('a `token_type` other than Bearer');
  const expiresIn = obj['expires_in'];
  if (expiresIn === undefined) return { token, expiresIn: undefined };
  if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || expiresIn <= 0 || expiresIn > 86_400)
    throw malformed('an invalid `expires_in`');
  return { token, expiresIn };
}

function refuse(error: string, status: number, description: string | undefined): never {
  // STS answers 400 invalid_grant for a source token it will not take (expired, revoked); 401 and 403 alike.
  const sourceRefused = error === 'invalid_grant' || status === 401 || status === 403;
  throw new BrokerError(
    'upstream_rejected',
    sourceRefused
      ? `Google's STS refused the account's own token (${error}) when bounding it for this request. Retry; if it lasts, the account may be disabled.`
      : `Google's STS refused the access boundary of the grant that allowed this request (${error}). The broker's operators find which grant in its log line for this request.`,
    {
      upstreamError: sourceRefused ? 'invalid_grant' : error,
      upstreamBody: { error, error_description: description?.slice(0, 500) },
      ...(sourceRefused
        ? {}
        : {
            remedy: `check the accessBoundary of the grant this line's audit.grant names (resource //storage.googleapis.com/projects/_/buckets/NAME, permissions inRole:roles/storage.*, a CEL condition STS can read). STS said: ${(description ?? error).slice(0, 300)}`,
          }),
    },
  );
}

/** Whether STS refused the source token itself (then a fresh source token may be exchanged once more). */
export function isSourceRefused(err: unknown): boolean {
  return (
    err instanceof BrokerError && err.code === 'upstream_rejected' && err.upstreamError === 'invalid_grant'
  );
}

/**
 * STS with retries: network errors, timeouts, 429 and 5xx are retried with
 * capped exponential backoff and jitter, honouring `Retry-After`, within a
 * deadline; refusals are never retried. Over the broker's kept-alive HTTP
 * client; no `Authorization` header (Google says not to send one).
 */
export function createSts(options: StsOptions): SecurityTokenService {
  const http = options.http ?? sharedHttpClient;
  const now = options.now ?? Date.now;
  return {
    async downscope(source, boundary) {
      const body = stsForm(source, boundary);
      const result = await withRetries<Downscoped>(options, async (timeoutMs) => {
        let res: HttpResponse;
        try {
          res = await http.request(options.url, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            body,
            timeoutMs,
            maxBytes: 64 * 1024,
          });
        } catch (err) {
          return { retry: true, cause: safeCause(err) };
        }
        if (!isRetryableStatus(res.status)) return { done: processStsResponse(res) };
        const retryAfter = res.headers['retry-after'];
        return {
          retry: true,
          cause: new Error(`HTTP ${res.status}`),
          retryAfterMs: parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, now()),
        };
      });
      if (!isExhausted(result)) return result;
      throw new BrokerError(
        'upstream_unavailable',
        "Google's STS is unreachable or failing (network error, timeout, 429 or 5xx after retries), so no token bounded to this tenant's data can be made. Retry after the given delay.",
        { retryAfterSeconds: retryAfterSeconds(result.retryAfterMs), cause: result.cause },
      );
    },
  };
}

import { BrokerError } from '../errors.js';
import { parseJsonObject, unverifiedExpiry } from '../json-object.js';
import type { JwtClaims } from '../jwt/claims.js';
import { DEFAULT_LIFETIME_SECONDS } from '../policy/lifetime.js';
import { isRetryableStatus, parseRetryAfter } from '../retry.js';
import { type HttpClient, type HttpResponse, sharedHttpClient } from './http.js';
import type { BrokerIdentity } from './metadata-identity.js';
import { isExhausted, type RetryBudget, safeCause, withRetries } from './retrying.js';
import { retryAfterSeconds } from './token-endpoint.js';

/** A token IAM minted, with its expiry in epoch milliseconds. */
export interface IamToken {
  readonly token: string;
  readonly expiresAt: number;
}

/**
 * Google's IAM Service Account Credentials API, for keyless accounts
 * (docs/contract.md, "Keyless service accounts"). Each method throws
 * `upstream_rejected` (IAM refused: 400, 403, 404; never retried) or
 * `upstream_unavailable` (429, 5xx or network errors after retries).
 */
export interface IamCredentials {
  /** `lifetimeSeconds` is IAM's `lifetime` (3600 unless asked; more only for accounts the organisation policy lists). */
  generateAccessToken(
    account: string,
    scopes: readonly string[],
    delegates: readonly string[],
    lifetimeSeconds?: number,
  ): Promise<IamToken>;
  /** Returns the signed JWT: IAM's header (with its `kid`), our claims, the account's system-managed key. */
  signJwt(account: string, claims: JwtClaims, delegates: readonly string[]): Promise<string>;
  generateIdToken(account: string, audience: string, delegates: readonly string[]): Promise<IamToken>;
}

export interface IamCredentialsOptions extends RetryBudget {
  /** `BROKER_IAM_CREDENTIALS_URL`, e.g. `https://iamcredentials.googleapis.com`. */
  baseUrl: string;
  identity: BrokerIdentity;
  http?: HttpClient;
}

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** IAM's name for a service account, as a path segment and in `delegates`. */
function resource(email: string): string {
  return `projects/-/serviceAccounts/${email}`;
}

/**
 * Calls IAM with the broker's own token, one method per request kind.
 * An expired or revoked broker token (401) is fetched again once. Every
 * field of an answer is checked before use.
 */
export function createIamCredentials(options: IamCredentialsOptions): IamCredentials {
  const http = options.http ?? sharedHttpClient;
  const now = options.now ?? Date.now;
  const base = options.baseUrl.replace(/\/+$/, '');

  async function call(
    account: string,
    method: string,
    body: Record<string, unknown>,
    delegates: readonly string[],
    lifetimeSeconds?: number,
  ): Promise<Record<string, unknown>> {
    const payload = JSON.stringify(
      delegates.length === 0 ? body : { ...body, delegates: delegates.map(resource) },
    );
    const url = `${base}/v1/${resource(encodeURIComponent(account))}:${method}`;
    let renewed = false;
    const result = await withRetries<Record<string, unknown>>(options, async (timeoutMs) => {
      const token = await options.identity.accessToken();
      let res: HttpResponse;
      try {
        res = await http.request(url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json',
          },
          body: payload,
          timeoutMs,
        });
      } catch (err) {
        return { retry: true, cause: safeCause(err) };
      }
      if (res.status === 200) {
        const parsed = parseJsonObject(res.body);
        if (parsed === undefined) throw malformed(method, 'a body that is not a JSON object');
        return { done: parsed };
      }
      if (res.status === 401 && !renewed) {
        // Our own token expired or was revoked early: fetch a new one and try again, once.
        renewed = true;
        options.identity.invalidate(token);
        return { retry: true, cause: new Error('HTTP 401'), retryAfterMs: 0 };
      }
      if (isRetryableStatus(res.status)) {
        return {
          retry: true,
          cause: new Error(`HTTP ${res.status}`),
          retryAfterMs: parseRetryAfter(header(res, 'retry-after'), now()),
        };
      }
      throw await refusal(res, account, delegates, lifetimeSeconds);
    });
    if (!isExhausted(result)) return result;
    throw new BrokerError(
      'upstream_unavailable',
      "Google's IAM Credentials API is unreachable or failing (network error, timeout, 429 or 5xx after retries). Retry after the given delay.",
      { retryAfterSeconds: retryAfterSeconds(result.retryAfterMs), cause: result.cause },
    );
  }

  /** Maps IAM's `{"error": {code, message, status}}` to the contract's 502, with what to fix. */
  async function refusal(
    res: HttpResponse,
    account: string,
    delegates: readonly string[],
    lifetimeSeconds: number | undefined,
  ): Promise<BrokerError> {
    const error = parseJsonObject(res.body)?.['error'];
    const e = typeof error === 'object' && error !== null ? (error as Record<string, unknown>) : {};
    const status =
      typeof e['status'] === 'string' && /^[A-Z_]{1,64}$/.test(e['status'])
        ? e['status']
        : `http_${res.status}`;
    const lifetimeRefused = lifetimeRefusal(res.status, e['message'], lifetimeSeconds, account, status);
    if (lifetimeRefused !== undefined) return lifetimeRefused;
    let remedy: string;
    switch (status) {
      case 'PERMISSION_DENIED': {
        const broker = (await options.identity.email()) ?? "the broker's own service account";
        const first = delegates[0] ?? account;
        remedy =
          delegates.length === 0
            ? `grant ${broker} roles/iam.serviceAccountTokenCreator on ${account} (on that account alone, not the project).`
            : `grant ${broker} roles/iam.serviceAccountTokenCreator on ${first}, each delegate that role on the next, and the last delegate that role on ${account}.`;
        break;
      }
      case 'NOT_FOUND':
        remedy = `IAM does not know ${account} or one of its delegates (${delegates.join(', ') || 'none'}): check the policy's email and that the account was not deleted.`;
        break;
      case 'INVALID_ARGUMENT':
      case 'FAILED_PRECONDITION':
        remedy = `check the scopes, audience, delegates and lifetime asked for ${account}, and that the account is enabled.`;
        break;
      case 'UNAUTHENTICATED':
        remedy =
          "IAM did not accept the broker's own token even after fetching a new one: check the metadata server and the broker's service account.";
        break;
      default:
        remedy = `see IAM's status for ${account}.`;
    }
    // The caller learns the status; who should grant what to whom (the broker's own account, the chain,
    // the account behind a tenant) goes to the request's log line only.
    const description = `Google's IAM Credentials API refused to mint this token (${status}). The broker's operators find what to fix in its log line for this request.`;
    return new BrokerError('upstream_rejected', description, {
      remedy,
      upstreamError: status,
      upstreamBody: {
        status,
        message: typeof e['message'] === 'string' ? e['message'].slice(0, 500) : undefined,
      },
    });
  }

  function malformed(method: string, what: string): BrokerError {
    return new BrokerError(
      'upstream_rejected',
      `Google's IAM Credentials API answered ${method} with ${what}; retry later or report it.`,
      { upstreamError: 'invalid_response' },
    );
  }

  return {
    async generateAccessToken(account, scopes, delegates, lifetimeSeconds) {
      const lifetime = lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS;
      const body = await call(
        account,
        'generateAccessToken',
        { scope: scopes, lifetime: `${lifetime}s` },
        delegates,
        lifetime,
      );
      const token = body['accessToken'];
      const expireTime = body['expireTime'];
      if (typeof token !== 'string' || token.length === 0 || token.length > 16_384)
        throw malformed('generateAccessToken', 'no valid `accessToken`');
      const expiresAt = typeof expireTime === 'string' ? Date.parse(expireTime) : Number.NaN;
      if (!Number.isFinite(expiresAt) || expiresAt <= now())
        throw malformed('generateAccessToken', 'no valid `expireTime`');
      return { token, expiresAt };
    },

    async signJwt(account, claims, delegates) {
      const body = await call(account, 'signJwt', { payload: JSON.stringify(claims) }, delegates);
      const jwt = body['signedJwt'];
      if (typeof jwt !== 'string' || jwt.length > 16_384 || !JWT.test(jwt))
        throw malformed('signJwt', 'no valid `signedJwt`');
      return jwt;
    },

    async generateIdToken(account, audience, delegates) {
      const body = await call(account, 'generateIdToken', { audience, includeEmail: true }, delegates);
      const token = body['token'];
      if (typeof token !== 'string' || token.length > 16_384 || !JWT.test(token))
        throw malformed('generateIdToken', 'no valid `token`');
      const exp = unverifiedExpiry(token);
      if (exp === undefined || exp * 1000 <= now())
        throw malformed('generateIdToken', 'a `token` without a future `exp`');
      return { token, expiresAt: exp * 1000 };
    },
  };
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The organisation policy that lets IAM mint access tokens for more than an hour. */
const LIFETIME_EXTENSION_CONSTRAINT = 'constraints/iam.allowServiceAccountCredentialLifetimeExtension';

/**
 * IAM's 400 for a lifetime over an hour, for an account the organisation
 * policy does not list (docs/contract.md, "Long-lived tokens"): a 502 whose
 * public text names the constraint (it is no secret), and whose remedy,
 * for the log line only, names the account. Undefined for any other answer.
 */
function lifetimeRefusal(
  httpStatus: number,
  message: unknown,
  lifetimeSeconds: number | undefined,
  account: string,
  status: string,
): BrokerError | undefined {
  if (httpStatus !== 400 || lifetimeSeconds === undefined || lifetimeSeconds <= DEFAULT_LIFETIME_SECONDS)
    return undefined;
  if (typeof message !== 'string' || !/lifetime|1 hour/i.test(message)) return undefined;
  return new BrokerError(
    'upstream_rejected',
    `Google's IAM Credentials API refused a token lifetime of ${lifetimeSeconds} seconds (${status}): lifetimes over an hour need the account listed in the organisation policy ${LIFETIME_EXTENSION_CONSTRAINT}. Ask for ${DEFAULT_LIFETIME_SECONDS} seconds or less, or ask the broker's operators.`,
    {
      reason: 'lifetime_not_allowed',
      upstreamError: status,
      remedy: `add ${account} to the allowed values of the organisation policy ${LIFETIME_EXTENSION_CONSTRAINT}, or lower its maxLifetimeSeconds in the broker policy to ${DEFAULT_LIFETIME_SECONDS}.`,
      upstreamBody: { status, message: message.slice(0, 500) },
    },
  );
}

/**
 * The broker's JSON API on the wire (docs/contract.md, "Requests", "Responses"
 * and "Token exchange"): request and response bodies, and the closed list of
 * error codes. Types and constant lists only (the rules both sides apply are
 * in `rules.ts`), importing nothing else, so that the server, the client and
 * its own npm package share one definition.
 */

import type { AccountRef } from './rules.js';

export type { AccountRef } from './rules.js';

/** Longest `minLifetimeSeconds` the broker accepts: no Google token lasts longer than an hour. */
export const MAX_MIN_LIFETIME_SECONDS = 3300;

/**
 * Longest `lifetimeSeconds` a `token` request may ask: 12 hours, which Google
 * allows only for keyless accounts that the organisation policy
 * `constraints/iam.allowServiceAccountCredentialLifetimeExtension` lists, and
 * only up to the account's `maxLifetimeSeconds` in the broker's policy.
 * @public
 */
export const MAX_LIFETIME_SECONDS = 43_200;

/** `POST /token`: an OAuth 2.0 access token. */
export type TokenRequestBody = AccountRef & {
  /** Required, non-empty; the broker drops duplicates and ignores the order. */
  scopes: string[];
  /** The user to act as (domain-wide delegation). */
  subject?: string;
  /** Integer from 0 to MAX_MIN_LIFETIME_SECONDS: the token served has at least this much life left. */
  minLifetimeSeconds?: number;
  /**
   * Integer from 1 to MAX_LIFETIME_SECONDS: how long the token must last, asked of Google as the
   * lifetime of a new one (keyless accounts only past 3600, up to the account's `maxLifetimeSeconds`).
   * A cached token serves the request when it covers that life (docs/contract.md).
   */
  lifetimeSeconds?: number;
};

/** `POST /jwt`: a self-signed JWT for exactly one of `audience` or `scopes`. */
export type JwtRequestBody = AccountRef &
  ({ audience: string; scopes?: never } | { scopes: string[]; audience?: never }) & {
    minLifetimeSeconds?: number;
  };

/** `POST /idtoken`: a Google-signed ID token for `audience` (an https URL). */
export type IdTokenRequestBody = AccountRef & { audience: string; minLifetimeSeconds?: number };

/** `POST /admin/purge`: drops cached tokens of an account, a tenant, or all of them. */
export type PurgeRequestBody = { serviceAccount: string } | { tenant: string } | { all: true };

/** `token`'s 200 answer, an RFC 6749 §5.1 token response. */
export interface TokenResponseBody {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  /** Epoch seconds. */
  expires_at: number;
  scope: string;
}

/** `jwt`'s 200 answer. */
export interface JwtResponseBody {
  token: string;
  token_type: 'Bearer';
  expires_in: number;
  /** Epoch seconds. */
  expires_at: number;
}

/** `idtoken`'s 200 answer. */
export interface IdTokenResponseBody {
  id_token: string;
  expires_in: number;
  /** Epoch seconds. */
  expires_at: number;
}

/** `admin /purge`'s 200 answer. */
export interface PurgeResponseBody {
  purged: string[] | 'all';
  dropped_local_entries: number;
  /** Every instance (through the shared cache), or only the process that answered (no shared cache). */
  reach: 'all_instances' | 'this_instance';
  /**
   * With `all_instances`: every instance stops serving the purged tokens within this many seconds,
   * even one that cannot reach the shared cache (docs/contract.md, "Purge").
   */
  within_seconds?: number;
  /** With `this_instance`: what was not purged, in words. */
  note?: string;
}

/** RFC 8693 token exchange, as Google's auth libraries send it. */
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** Subject token types the `sts` endpoint accepts: the caller's Google ID token. */
export const SUBJECT_TOKEN_TYPES = [
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:ietf:params:oauth:token-type:id_token',
] as const;
export type SubjectTokenType = (typeof SUBJECT_TOKEN_TYPES)[number];
/** The one token type the `sts` endpoint issues. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** `POST /sts`, an `application/x-www-form-urlencoded` body; other parameters are ignored. */
export interface StsRequestForm {
  grant_type: typeof TOKEN_EXCHANGE_GRANT_TYPE;
  subject_token: string;
  subject_token_type: SubjectTokenType;
  audience: string;
  /** Space-separated scopes. */
  scope: string;
  requested_token_type?: typeof ACCESS_TOKEN_TYPE;
}

/** `sts`'s 200 answer (RFC 8693 §2.2.1). */
export interface StsResponseBody {
  access_token: string;
  issued_token_type: typeof ACCESS_TOKEN_TYPE;
  token_type: 'Bearer';
  expires_in: number;
}

/** Error codes of the JSON endpoints (`token`, `jwt`, `idtoken`, `admin`). */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_token',
  'access_denied',
  'not_found',
  'method_not_allowed',
  'request_too_large',
  'unsupported_media_type',
  'rate_limited',
  'upstream_rejected',
  'upstream_unavailable',
  'internal_error',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Error codes only `sts` answers with (RFC 8693 §2.2.2, RFC 6749 §5.2); it also uses `invalid_request` and the JSON endpoints' codes for 405, 413, 415, 429, 502 and 503. */
export const TOKEN_EXCHANGE_ERROR_CODES = [
  'unsupported_grant_type',
  'invalid_grant',
  'invalid_target',
] as const;
export type TokenExchangeErrorCode = (typeof TOKEN_EXCHANGE_ERROR_CODES)[number];

/** Every `error` code the broker answers with. */
export const WIRE_ERROR_CODES: readonly (ErrorCode | TokenExchangeErrorCode)[] = [
  ...ERROR_CODES,
  ...TOKEN_EXCHANGE_ERROR_CODES,
];
export type WireErrorCode = ErrorCode | TokenExchangeErrorCode;

/** The JSON body of every error answer. */
export interface ErrorResponseBody {
  error: WireErrorCode;
  error_description: string;
  /** On a 502: Google's `error` code, or IAM's `status`. */
  upstream_error?: string;
}

import { SCOPE, TENANT_ID } from '../packages/wire/rules.js';
import {
  type IdTokenRequestBody,
  type JwtRequestBody,
  MAX_LIFETIME_SECONDS,
  MAX_MIN_LIFETIME_SECONDS,
  type PurgeRequestBody,
  type TokenRequestBody,
} from '../packages/wire/wire.js';
import { canonicalEmail } from './email.js';
import { invalidRequest as invalid } from './errors.js';

/** Who a request asks a token for, validated: a service account by canonical email, or a tenant by id. */
export type AccountRef = { readonly serviceAccount: string } | { readonly tenant: string };

/** A validated `token` request; scopes are de-duplicated and sorted. */
export interface TokenRequest {
  readonly kind: 'token';
  readonly for: AccountRef;
  readonly scopes: readonly string[];
  readonly subject: string | undefined;
  readonly minLifetimeSeconds: number;
  /**
   * How long the token must live, from 1 to 43200 (docs/contract.md,
   * "Long-lived tokens"): asked of IAM as the lifetime of a new token, and
   * what a cached token must cover. Undefined: Google's default hour.
   */
  readonly lifetimeSeconds?: number | undefined;
}

/** A validated `jwt` request: exactly one of `audience` or `scopes`. */
export interface JwtRequest {
  readonly kind: 'jwt';
  readonly for: AccountRef;
  readonly audience: string | undefined;
  readonly scopes: readonly string[];
  readonly minLifetimeSeconds: number;
}

/** A validated `idtoken` request. */
export interface IdTokenRequest {
  readonly kind: 'idtoken';
  readonly for: AccountRef;
  readonly audience: string;
  /** Always empty: an ID token carries an audience, not scopes. */
  readonly scopes: readonly string[];
  readonly minLifetimeSeconds: number;
}

export type MintRequest = TokenRequest | JwtRequest | IdTokenRequest;

/** A validated `admin /purge` request. */
export type PurgeRequest = { readonly all: true } | AccountRef;

const MAX_SCOPES = 50;
const URL_TEXT = /^[\x21-\x7e]{1,2048}$/;

type Body = Record<string, unknown>;
/** Every field name of a wire body, across the variants of its union. */
type AllKeys<T> = T extends unknown ? keyof T & string : never;

/** Validates a `token` request body. Throws BrokerError `invalid_request` naming the bad field. */
export function parseTokenRequest(body: unknown): TokenRequest {
  const obj = object<TokenRequestBody>(body, [
    'serviceAccount',
    'tenant',
    'scopes',
    'subject',
    'minLifetimeSeconds',
    'lifetimeSeconds',
  ]);
  const scopes = parseScopes(obj['scopes']);
  if (scopes === undefined) throw invalid('"scopes" is required: a non-empty array of OAuth scopes');
  const minLifetimeSeconds = parseMinLifetime(obj['minLifetimeSeconds']);
  const lifetimeSeconds = parseLifetime(obj['lifetimeSeconds']);
  if (lifetimeSeconds !== undefined && minLifetimeSeconds > lifetimeSeconds)
    throw invalid('"minLifetimeSeconds" cannot be more than "lifetimeSeconds"');
  return {
    kind: 'token',
    for: parseAccountRef(obj),
    scopes,
    subject: optionalEmail(obj, 'subject'),
    minLifetimeSeconds,
    lifetimeSeconds,
  };
}

/** Validates a `jwt` request body. Throws BrokerError `invalid_request` naming the bad field. */
export function parseJwtRequest(body: unknown): JwtRequest {
  const obj = object<JwtRequestBody>(body, [
    'serviceAccount',
    'tenant',
    'audience',
    'scopes',
    'minLifetimeSeconds',
  ]);
  const account = parseAccountRef(obj);
  const scopes = parseScopes(obj['scopes']);
  const audience = obj['audience'] === undefined ? undefined : parseAudience(obj['audience']);
  if ((audience === undefined) === (scopes === undefined)) {
    throw invalid('give exactly one of "audience" (e.g. "https://firestore.googleapis.com/") or "scopes"');
  }
  return {
    kind: 'jwt',
    for: account,
    audience,
    scopes: scopes ?? [],
    minLifetimeSeconds: parseMinLifetime(obj['minLifetimeSeconds']),
  };
}

/** Validates an `idtoken` request body. Throws BrokerError `invalid_request` naming the bad field. */
export function parseIdTokenRequest(body: unknown): IdTokenRequest {
  const obj = object<IdTokenRequestBody>(body, [
    'serviceAccount',
    'tenant',
    'audience',
    'minLifetimeSeconds',
  ]);
  const account = parseAccountRef(obj);
  if (obj['audience'] === undefined)
    throw invalid('"audience" is required: the https URL the ID token is for');
  return {
    kind: 'idtoken',
    for: account,
    audience: parseAudience(obj['audience']),
    scopes: [],
    minLifetimeSeconds: parseMinLifetime(obj['minLifetimeSeconds']),
  };
}

/** Validates an `admin /purge` body: one of `serviceAccount`, `tenant` or `all: true`. */
export function parsePurgeRequest(body: unknown): PurgeRequest {
  const obj = object<PurgeRequestBody>(body, ['serviceAccount', 'tenant', 'all']);
  if (obj['all'] !== undefined) {
    if (obj['all'] !== true) throw invalid('"all" must be true when given');
    if (obj['serviceAccount'] !== undefined || obj['tenant'] !== undefined) {
      throw invalid('give one of "serviceAccount", "tenant" or "all": true');
    }
    return { all: true };
  }
  return parseAccountRef(obj);
}

/** Checks `body` is an object with no field outside `allowed`, the wire body's own fields. */
function object<W>(body: unknown, allowed: readonly AllKeys<W>[]): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('the body must be a JSON object');
  }
  for (const key of Object.keys(body)) {
    if (!(allowed as readonly string[]).includes(key))
      throw invalid(`unknown field ${JSON.stringify(key.slice(0, 64))}; allowed: ${allowed.join(', ')}`);
  }
  return body as Body;
}

function parseAccountRef(obj: Body): AccountRef {
  const sa = obj['serviceAccount'];
  const tenant = obj['tenant'];
  if ((sa === undefined) === (tenant === undefined)) {
    throw invalid('give exactly one of "serviceAccount" (an email) or "tenant" (a tenant id)');
  }
  if (sa !== undefined) {
    const email = canonicalEmail(sa);
    if (email === undefined) throw invalid('"serviceAccount" must be a service-account email');
    return { serviceAccount: email };
  }
  if (typeof tenant !== 'string' || !TENANT_ID.test(tenant)) {
    throw invalid(
      '"tenant" must be a tenant id: lower-case letters, digits, "-" or "_", at most 63 characters',
    );
  }
  return { tenant };
}

function parseScopes(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0)
    throw invalid('"scopes" must be a non-empty array of strings');
  if (value.length > MAX_SCOPES) throw invalid(`"scopes" holds more than ${MAX_SCOPES} scopes`);
  const set = new Set<string>();
  for (const [i, scope] of value.entries()) {
    if (typeof scope !== 'string' || !SCOPE.test(scope)) {
      throw invalid(`"scopes[${i}]" must be one scope: no whitespace, no comma, printable ASCII`);
    }
    set.add(scope);
  }
  return [...set].sort();
}

function optionalEmail(obj: Body, field: string): string | undefined {
  const value = obj[field];
  if (value === undefined) return undefined;
  const email = canonicalEmail(value);
  if (email === undefined) throw invalid(`"${field}" must be one plain email address`);
  return email;
}

function parseAudience(value: unknown): string {
  if (
    typeof value !== 'string' ||
    !URL_TEXT.test(value) ||
    !URL.canParse(value) ||
    new URL(value).protocol !== 'https:'
  ) {
    throw invalid('"audience" must be an https URL');
  }
  return value;
}

function parseMinLifetime(value: unknown): number {
  if (value === undefined) return 0;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 0 ||
    value > MAX_MIN_LIFETIME_SECONDS
  ) {
    throw invalid(`"minLifetimeSeconds" must be an integer from 0 to ${MAX_MIN_LIFETIME_SECONDS}`);
  }
  return value;
}

/** `lifetimeSeconds`: an integer from 1 to MAX_LIFETIME_SECONDS; whether the account allows it is checked after the policy. */
function parseLifetime(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIFETIME_SECONDS) {
    throw invalid(`"lifetimeSeconds" must be an integer from 1 to ${MAX_LIFETIME_SECONDS}`);
  }
  return value;
}
